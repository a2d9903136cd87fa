package gangstate

import (
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/utils/clock"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/placement"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// Phase is where a gang is in its lifecycle.
//
//	Waiting  --plan found-->            Planned
//	Planned  --quorum assumed-->        Binding   (members allowed at Permit)
//	Planned  --member failed, pod gone,
//	           plan expired-->          Waiting   (waiting members rejected)
//	Binding  --every planned member bound,
//	           or the deadline passed-->Running
//	Running  --members left < minMember-->Waiting (new members form a gang again)
type Phase string

const (
	// Waiting: no plan. Too few members exist, or there is no room yet.
	Waiting Phase = "Waiting"
	// Planned: a plan holds room for the members; those placed wait at
	// Permit until the quorum is assumed.
	Planned Phase = "Planned"
	// Binding: the quorum was released to binding. Room stays held for
	// planned members not bound yet, so that a member whose binding failed
	// gets its place back.
	Binding Phase = "Binding"
	// Running: at least minMember members are bound; members beyond the
	// quorum go as they come.
	Running Phase = "Running"
)

// slotState is where one planned member is.
type slotState int

const (
	// slotPlanned: the member's room is held for it on its node.
	slotPlanned slotState = iota
	// slotAssumed: the scheduler assumed the member on its node; the
	// scheduler's own cache accounts for its room.
	slotAssumed
	// slotBound: the informer shows the member bound.
	slotBound
)

// slot is one member's place in a plan.
type slot struct {
	pod     *v1.Pod
	node    string
	request placement.Resources
	zones   []string
	state   slotState
	// answered is set once the apiserver bound an assumed member (its
	// PostBind): its binding no longer counts against the bind budget.
	answered bool
}

// plan is a whole-gang placement that members follow one cycle each.
type plan struct {
	id    uint64
	slots map[types.UID]*slot
	nodes int
	// needed is how many of its members make the quorum, with those bound
	// before it; firstBound is when the first was seen bound, and
	// quorumBound is set once needed were (metrics).
	needed      int
	firstBound  time.Time
	quorumBound bool
	// nodeMilliCPU is the largest allocatable CPU of the plan's nodes,
	// read from the cycle's snapshot when the plan was made: the size of
	// node the gang's ideal node count is measured in.
	nodeMilliCPU int64
	domain       placement.Domain
	deadline     time.Time
	timer        clock.Timer
}

// held reports whether a slot's room is held against everyone else.
func (s *slot) held() bool { return s.state == slotPlanned }

// gang is everything the cache holds for one PodGroup.
type gang struct {
	key       string
	namespace string
	name      string
	uid       types.UID
	// pg is the PodGroup as last seen; never mutated.
	pg      *v1alpha1.PodGroup
	phase   Phase
	rank    rank
	timeout time.Duration

	plan *plan
	// assumed maps members this scheduler assumed onto a node and has not
	// seen bound yet to that node.
	assumed map[types.UID]string
	// avoid lists, per member, nodes where the member's full Filter chain
	// refused it although a plan chose them, until when to avoid them.
	avoid map[types.UID]map[string]time.Time

	// ready is set while the gang's quorum is assumed and it waits in line
	// for the bind budget (pacing.go).
	ready bool

	// blocked is set while the gang waits for room; blocked gangs compete
	// to be the head of the queue.
	blocked   bool
	headSince time.Time
	headTimer clock.Timer
	coolUntil time.Time
	// reserve is the head's reservation: room it holds per node as it frees.
	reserve    map[string]placement.Resources
	reserveKey headKey
	// reservedAt is when the reservation was last computed.
	reservedAt  time.Time
	reservedGen int64

	// agentWaitUntil ends the gang's wait for node agents to count the pods
	// kubelet has yet to admit (see waitForAgentLocked); awaitingAgent is
	// set while it waits.
	agentWaitUntil time.Time
	awaitingAgent  bool
	// pinned is the most CPUs one of the gang's unbound pods pins to a
	// NUMA zone, computed when it had pinnedPods pods.
	pinned     int64
	pinnedPods int
	// neverFits is set when the gang's last plan found it could not fit
	// even an empty cluster: it waits for no room, and holds none.
	neverFits bool
	// preempting is what the gang evicted to make room, while it waits
	// for those pods to go.
	preempting *preemption
	// refusedUnits are victim units whose eviction was refused, not chosen
	// again until the time given.
	refusedUnits map[string]time.Time
	// retryAt is when a failed plan is tried again by itself: the first
	// moment a node avoided or a victim unit refused stops counting, which
	// no cluster event marks.
	retryAt time.Time
	// mayPreempt is set when the gang's members may preempt: a claim of a
	// lower-priority gang is not held from it.
	mayPreempt bool
	// profile is the scheduler profile of the member that planned last.
	profile string

	// failKey and failVerdict remember the last failed planning attempt, so
	// the gang's other members are refused without planning again until
	// something changed.
	failKey     snapshotKey
	failVerdict *Verdict
}

// snapshotKey identifies what a planning attempt saw.
type snapshotKey struct {
	generation int64
	nodes      int
	epoch      uint64
	pending    int
}

// headKey identifies what the head's reservation was computed from.
type headKey struct {
	freed uint64
	epoch uint64
	nodes int
}

// minMember is the gang's quorum.
func (g *gang) minMember() int { return podgroup.MinMember(g.pg) }

// avoidNow returns the nodes each member must still avoid.
func (g *gang) avoidNow(now time.Time) map[types.UID]sets.Set[string] {
	if len(g.avoid) == 0 {
		return nil
	}
	out := map[types.UID]sets.Set[string]{}
	for uid, nodes := range g.avoid {
		for node, until := range nodes {
			if now.Before(until) {
				if out[uid] == nil {
					out[uid] = sets.New[string]()
				}
				out[uid].Insert(node)
			} else {
				delete(nodes, node)
			}
		}
		if len(nodes) == 0 {
			delete(g.avoid, uid)
		}
	}
	return out
}

// exclusionsEnd is the first moment one of the gang's exclusions (nodes
// its members avoid, victim units refused) ends; zero for none.
func (g *gang) exclusionsEnd(now time.Time) time.Time {
	var first time.Time
	note := func(until time.Time) {
		if now.Before(until) && (first.IsZero() || until.Before(first)) {
			first = until
		}
	}
	for _, nodes := range g.avoid {
		for _, until := range nodes {
			note(until)
		}
	}
	for _, until := range g.refusedUnits {
		note(until)
	}
	return first
}

// census is a count of a gang's members as the scheduler sees them.
type census struct {
	// scheduled members: bound in the informer or assumed by the scheduler.
	scheduled int
	// nodes the scheduled members are on.
	nodes sets.Set[string]
	// pending members this scheduler will place: unbound, unassumed, ungated.
	pending []*v1.Pod
	gated   int
	// foreign members name a scheduler that is not this one.
	foreign []string
}

func (c census) exist() int { return c.scheduled + len(c.pending) }
