package gang

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/gang/gangstate"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

const rackLabel = "topology.kubernetes.io/rack"

func ordinary(name, cpu string) *v1.Pod {
	p := member("", 0, cpu)
	p.Name, p.UID = name, types.UID("uid-"+name)
	return p
}

// preFilter runs the framework's PreFilter for a pod.
func (h *harness) preFilter(p *v1.Pod) (fwk.CycleState, *fwk.PreFilterResult, *fwk.Status) {
	cs := framework.NewCycleState()
	res, s, _ := h.fw.RunPreFilterPlugins(h.ctx, cs, p)
	return cs, res, s
}

func TestPreFilter(t *testing.T) {
	for _, tc := range []struct {
		name      string
		nodes     []*v1.Node
		min       int32
		pods      int
		cpu       string
		wantCode  fwk.Code
		wantNodes sets.Set[string]
		wantMsg   string
	}{
		{name: "plans the whole gang and sends the member to its node", nodes: []*v1.Node{node("n1", "4"), node("n2", "8")}, min: 2, pods: 2, cpu: "4",
			wantCode: fwk.Success, wantNodes: sets.New("n2")},
		{name: "a gang that fits only by the sum of free room is refused", nodes: []*v1.Node{node("n1", "3"), node("n2", "3")}, min: 2, pods: 2, cpu: "4",
			wantCode: fwk.UnschedulableAndUnresolvable, wantMsg: "can never fit"},
		{name: "too few members", nodes: []*v1.Node{node("n1", "8")}, min: 3, pods: 2, cpu: "1",
			wantCode: fwk.UnschedulableAndUnresolvable, wantMsg: "2/3 members exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.nodes...)
			pods := h.gang("g", tc.min, tc.pods, tc.cpu)
			_, res, s := h.preFilter(pods[0])
			if s.Code() != tc.wantCode || !strings.Contains(s.Message(), tc.wantMsg) {
				t.Fatalf("status %v, want %v containing %q", s, tc.wantCode, tc.wantMsg)
			}
			if tc.wantNodes != nil {
				if res == nil {
					t.Fatal("no PreFilterResult")
				}
				if diff := cmp.Diff(tc.wantNodes, res.NodeNames); diff != "" {
					t.Errorf("NodeNames (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// A pod may arrive with a nominated node from an earlier leader: Filter
// refuses any node but the one the plan gives the member.
func TestFilterRefusesNodeOtherThanPlanned(t *testing.T) {
	h := newHarness(t, node("n1", "8"), node("n2", "8"))
	pods := h.gang("g", 2, 2, "4")
	cs, res, s := h.preFilter(pods[0])
	if !s.IsSuccess() || res == nil || res.NodeNames.Len() != 1 {
		t.Fatalf("want a planned node, got %v %v", res, s)
	}
	planned := res.NodeNames.UnsortedList()[0]
	for _, ni := range mustList(t, h) {
		got := h.fw.RunFilterPlugins(h.ctx, cs, pods[0], ni)
		if want := ni.Node().Name == planned; got.IsSuccess() != want {
			t.Errorf("Filter on %s: %v (planned %s)", ni.Node().Name, got, planned)
		}
	}
}

func mustList(t *testing.T, h *harness) []fwk.NodeInfo {
	infos, err := h.lister.NodeInfos().List()
	if err != nil {
		t.Fatal(err)
	}
	return infos
}

// Filter without the state its PreFilter writes is an error, not a pass.
func TestFilterWithoutCycleStateFails(t *testing.T) {
	h := newHarness(t, node("n1", "8"))
	pods := h.gang("g", 1, 1, "1")
	s := h.pl.Filter(h.ctx, framework.NewCycleState(), pods[0], mustList(t, h)[0])
	if s.Code() != fwk.Error {
		t.Fatalf("want Error, got %v", s)
	}
}

// Refusals of planned nodes by the full Filter chain make members avoid
// those nodes for a while, never make the gang "unplaceable for ever".
func TestTransientRefusalsDoNotMakeGangUnplaceable(t *testing.T) {
	h := newHarness(t, node("n1", "4"), node("n2", "4"))
	pods := h.gang("g", 2, 2, "4")
	for round := 0; round < 2; round++ {
		p := pods[round]
		cs, res, s := h.preFilter(p)
		if !s.IsSuccess() || res == nil {
			t.Fatalf("round %d: want a plan, got %v", round, s)
		}
		// The member's own cycle found its planned node refused.
		if _, s := h.fw.RunPostFilterPlugins(h.ctx, cs, p, framework.NewDefaultNodeToStatus()); s.IsSuccess() {
			t.Fatal("PostFilter must not succeed for a gang member")
		}
	}
	h.waitEvent("Replanning")
	for _, p := range pods {
		_, _, s := h.preFilter(p)
		if strings.Contains(s.Message(), "never") {
			t.Fatalf("%s: transient refusals made the gang unplaceable: %v", p.Name, s)
		}
	}
	// Once the refusals are old, the gang plans on those nodes again.
	h.step(gangTimeout)
	if _, res, s := h.preFilter(pods[0]); !s.IsSuccess() || res == nil {
		t.Fatalf("after the refusals expired: %v", s)
	}
}

// Room planned for a member that is deleted is released at once, and a
// plan's room is released at its deadline though no member of its gang
// runs another cycle.
func TestPlannedRoomIsReleased(t *testing.T) {
	t.Run("member deleted", func(t *testing.T) {
		h := newHarness(t, node("n1", "4"), node("n2", "4"), node("n3", "4"))
		pods := h.gang("g", 3, 3, "4")
		if _, s := h.schedule(pods[0]); !s.IsWait() {
			t.Fatal(s)
		}
		other := h.pods(ordinary("other", "4"))[0]
		if _, _, s := h.preFilter(other); !s.IsSuccess() {
			t.Fatal(s)
		}
		if n, s := h.schedule(other); s.IsSuccess() {
			t.Fatalf("ordinary pod took planned room on %s", n)
		}
		h.deletePod(pods[2])
		if s := h.outcome(pods[0]); s.IsSuccess() {
			t.Fatal("the waiting member was let go after its plan broke")
		}
		if n, s := h.schedule(other); !s.IsSuccess() {
			t.Fatalf("room of a broken plan still held: %v %s", s, n)
		}
	})
	t.Run("plan deadline", func(t *testing.T) {
		h := newHarness(t, node("n1", "4"), node("n2", "4"))
		pods := h.gang("g", 2, 2, "4")
		if _, s := h.schedule(pods[0]); !s.IsWait() {
			t.Fatal(s)
		}
		other := h.pods(ordinary("other", "4"))[0]
		if _, s := h.schedule(other); s.IsSuccess() {
			t.Fatal("ordinary pod took planned room")
		}
		h.step(gangTimeout)
		h.outcome(pods[0])
		if _, s := h.schedule(other); !s.IsSuccess() {
			t.Fatalf("room of an expired plan still held: %v", s)
		}
	})
}

// The head of the queue whose required level no node carries any more
// reserves nothing, and nothing panics.
func TestHeadWhoseRequiredLevelVanished(t *testing.T) {
	h := newHarness(t, node("a1", "4", rackLabel, "a"), node("a2", "4", rackLabel, "a"))
	h.podGroup("big", 2, func(pg *v1alpha1.PodGroup) {
		pg.Annotations = map[string]string{podgroup.AnnotationRequiredTopology: rackLabel}
	})
	big := h.pods(member("big", 0, "4"), member("big", 1, "4"))
	filler := h.pods(ordinary("filler", "4"))[0]
	if _, s := h.schedule(filler); !s.IsSuccess() {
		t.Fatal(s)
	}
	h.bind(filler, "a1")
	if _, _, s := h.preFilter(big[0]); !strings.Contains(s.Message(), "does not fit yet") {
		t.Fatalf("want the gang to wait for room, got %v", s)
	}
	// The nodes lose their rack label.
	h.mu.Lock()
	h.nodes = []*v1.Node{node("a1", "4"), node("a2", "4")}
	h.mu.Unlock()
	h.refresh()
	if _, s := h.schedule(ordinary("small", "1")); !s.IsSuccess() {
		t.Fatalf("ordinary pod: %v", s)
	}
}

// A gang that must fit one rack stays in the rack of its bound members:
// after a restart the rest of its quorum is planned there, and members
// beyond the quorum go there too.
func TestRequiredTopologyAnchorsToBoundMembers(t *testing.T) {
	nodes := []*v1.Node{
		node("a1", "4", rackLabel, "a"), node("a2", "4", rackLabel, "a"), node("a3", "4", rackLabel, "a"),
		node("b1", "3", rackLabel, "b"), node("b2", "3", rackLabel, "b"),
	}
	h := newHarness(t, nodes...)
	h.podGroup("g", 4, func(pg *v1alpha1.PodGroup) {
		pg.Annotations = map[string]string{podgroup.AnnotationRequiredTopology: rackLabel}
	})
	bound := []*v1.Pod{member("g", 0, "2"), member("g", 1, "2")}
	for _, p := range bound {
		p.Spec.NodeName = "a1"
	}
	h.pods(bound...)
	// Rack b is the tighter fit for two more members of 3 CPUs (one per
	// node, nothing left over); the gang is in rack a.
	rest := h.pods(member("g", 2, "3"), member("g", 3, "3"))
	for _, p := range rest {
		n, s := h.schedule(p)
		if !s.IsSuccess() && !s.IsWait() {
			t.Fatalf("%s: %v", p.Name, s)
		}
		if !strings.HasPrefix(n, "a") {
			t.Fatalf("%s went to %s, outside its gang's rack", p.Name, n)
		}
	}
	// An extra member, once the gang started.
	extra := h.pods(member("g", 4, "1"))[0]
	_, res, s := h.preFilter(extra)
	if !s.IsSuccess() || res == nil {
		t.Fatalf("extra member: %v %v", res, s)
	}
	for n := range res.NodeNames {
		if !strings.HasPrefix(n, "a") {
			t.Fatalf("extra member may go to %v, want rack a only", sets.List(res.NodeNames))
		}
	}
	if got := h.pl.s.cache.Phase("ns/g"); got != gangstate.Binding && got != gangstate.Running {
		t.Fatalf("phase %s", got)
	}
}
