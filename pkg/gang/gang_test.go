package gang

import (
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pglisters "sigs.k8s.io/scheduler-plugins/pkg/generated/listers/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/placement"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fixture is a manager over in-memory indexers, without a scheduler.
type fixture struct {
	m     *manager
	pods  cache.Indexer
	pgs   cache.Indexer
	clock *manualClock
}

// manualClock is a fake clock whose timers only fire when the test says:
// the manager's timer callbacks take its lock and set new timers.
type manualClock struct {
	*clocktesting.FakeClock
	timers []func()
}

func (c *manualClock) AfterFunc(_ time.Duration, f func()) clock.Timer {
	c.timers = append(c.timers, f)
	return clocktesting.NewFakeClock(c.Now()).NewTimer(time.Hour)
}

func newFixture() *fixture {
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{gangIndex: indexByGang})
	pgs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	clock := &manualClock{FakeClock: clocktesting.NewFakeClock(epoch)}
	lister := pglisters.NewPodGroupLister(pgs)
	m := &manager{
		gangs:          map[string]*gangState{},
		parked:         map[types.UID]*v1.Pod{},
		clock:          clock,
		pgLister:       lister,
		podIndexer:     pods,
		schedulers:     sets.New("lockstep"),
		defaultTimeout: time.Minute,
		headEnabled:    true,
		events:         newEventer(nil, lister, clock),
	}
	return &fixture{m: m, pods: pods, pgs: pgs, clock: clock}
}

func (f *fixture) podGroup(name string, min int32, created time.Time) *v1alpha1.PodGroup {
	pg := &v1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", CreationTimestamp: metav1.NewTime(created)},
		Spec:       v1alpha1.PodGroupSpec{MinMember: min},
	}
	_ = f.pgs.Add(pg)
	return pg
}

func member(gang string, i int, node string) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-%d", gang, i), Namespace: "ns", UID: types.UID(fmt.Sprintf("%s-%d", gang, i)),
			Labels: map[string]string{podgroup.Label: gang}, CreationTimestamp: metav1.NewTime(epoch),
		},
		Spec: v1.PodSpec{SchedulerName: "lockstep", NodeName: node, Containers: []v1.Container{{
			Name: "c", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("2")}},
		}}},
	}
	return p
}

func TestCensusCountsEachMemberOnce(t *testing.T) {
	f := newFixture()
	_ = f.pods.Add(member("g", 0, "n1")) // bound
	_ = f.pods.Add(member("g", 1, ""))   // pending
	_ = f.pods.Add(member("g", 2, ""))   // assumed below
	gated := member("g", 3, "")
	gated.Spec.SchedulingGates = []v1.PodSchedulingGate{{Name: "hold"}}
	_ = f.pods.Add(gated)
	foreign := member("g", 4, "")
	foreign.Spec.SchedulerName = "default-scheduler"
	_ = f.pods.Add(foreign)
	done := member("g", 5, "n1")
	done.Status.Phase = v1.PodSucceeded
	_ = f.pods.Add(done)
	_ = f.pods.Add(member("other", 0, "")) // another gang

	g := f.m.gang("ns/g", "ns", "g")
	g.assumed["g-2"] = assumedPod{name: "g-2", node: "n2"}
	g.assumed["g-0"] = assumedPod{name: "g-0", node: "n1"}   // now seen bound: forgotten
	g.assumed["gone"] = assumedPod{name: "gone", node: "n1"} // deleted: forgotten
	c := f.m.censusLocked(g)
	if c.scheduled != 2 || len(c.pending) != 1 || c.pending[0].Name != "g-1" || c.gated != 1 || len(c.foreign) != 1 {
		t.Fatalf("unexpected census: scheduled=%d pending=%d gated=%d foreign=%v", c.scheduled, len(c.pending), c.gated, c.foreign)
	}
	if len(g.assumed) != 1 {
		t.Fatalf("assumed members seen bound or gone must be forgotten, left %v", g.assumed)
	}
}

func TestHeldCountsOtherPlansAndOutrankingHead(t *testing.T) {
	f := newFixture()
	two := placement.Resources{MilliCPU: 2000, Pods: 1}
	planned := f.m.gang("ns/planned", "ns", "planned")
	planned.plan = &gangPlan{
		nodeOf:  map[types.UID]string{"a": "n1", "b": "n1", "c": "n2"},
		request: map[types.UID]placement.Resources{"a": two, "b": two, "c": two},
	}
	planned.assumed["c"] = assumedPod{name: "c", node: "n2"} // already in the node's usage
	head := f.m.gang("ns/head", "ns", "head")
	head.rank = rank{created: epoch}
	head.reserve = map[string]placement.Resources{"n3": {MilliCPU: 8000, Pods: 1}}

	young := rank{created: epoch.Add(time.Hour), key: "ns/young"}
	held := f.m.heldLocked("ns/young", young)
	if held["n1"].MilliCPU != 4000 || held["n1"].Pods != 2 {
		t.Errorf("two unassumed planned members on n1 must be held, got %+v", held["n1"])
	}
	if _, ok := held["n2"]; ok {
		t.Errorf("an assumed member is no longer held: %+v", held["n2"])
	}
	if held["n3"].MilliCPU != 8000 {
		t.Errorf("the head's reservation binds a younger gang, got %+v", held["n3"])
	}

	old := rank{created: epoch.Add(-time.Hour), key: "ns/old"}
	if _, ok := f.m.heldLocked("ns/old", old)["n3"]; ok {
		t.Error("an older gang is not bound by a younger head's reservation")
	}
	if _, ok := f.m.heldLocked("ns/planned", young)["n1"]; ok {
		t.Error("a gang is not held off its own plan")
	}
}

func TestHeadIsOldestBlockedGangAndExpires(t *testing.T) {
	f := newFixture()
	logger := klog.Background()
	for i, name := range []string{"b", "a", "c"} {
		g := f.m.gang("ns/"+name, "ns", name)
		g.blocked, g.timeout = true, 10*time.Second
		g.rank = rank{created: epoch.Add(time.Duration(i) * time.Second), key: "ns/" + name}
	}
	f.m.gangs["ns/a"].rank.priority = 10 // priority before age

	head := f.m.headLocked(logger, f.clock.Now())
	if head == nil || head.name != "a" {
		t.Fatalf("want the highest-priority gang a at the head, got %v", head)
	}
	head.reserve = map[string]placement.Resources{"n1": {MilliCPU: 1}}

	f.clock.Step(11 * time.Second)
	next := f.m.headLocked(logger, f.clock.Now())
	if next == nil || next.name != "b" {
		t.Fatalf("after a's timeout the next head is the oldest, b; got %v", next)
	}
	if f.m.gangs["ns/a"].reserve != nil {
		t.Fatal("a timed-out head keeps no reservation")
	}
	if !f.m.gangs["ns/a"].coolUntil.After(f.clock.Now()) {
		t.Fatal("a timed-out head must step aside for a while")
	}
	f.clock.Step(11 * time.Second)
	// b timed out too; a's cool-down is over, so a leads again.
	if again := f.m.headLocked(logger, f.clock.Now()); again == nil || again.name != "a" {
		t.Fatalf("want a back at the head after its cool-down, got %v", again)
	}
}

func TestFailReturnsWaitingMembersAndDropsPlan(t *testing.T) {
	f := newFixture()
	g := f.m.gang("ns/g", "ns", "g")
	g.plan = &gangPlan{nodeOf: map[types.UID]string{"x": "n1"}}
	g.assumed["x"] = assumedPod{name: "x", node: "n1"}
	g.assumed["y"] = assumedPod{name: "y", node: "n1"}
	before := f.m.epoch
	waiting := f.m.failLocked(g)
	wake := f.m.releaseLocked()
	if g.plan != nil || len(waiting) != 2 {
		t.Fatalf("plan must be dropped and both waiting members returned: %v %v", g.plan, waiting)
	}
	if f.m.epoch == before {
		t.Fatal("a release must invalidate cached planning failures")
	}
	_ = wake
}

func queued(pod *v1.Pod, ts time.Time) fwk.QueuedEntityInfo {
	pi, _ := framework.NewPodInfo(pod)
	return &framework.QueuedPodInfo{PodInfo: pi, QueueingParams: framework.QueueingParams{Timestamp: ts}}
}

func TestLessKeepsGangMembersTogether(t *testing.T) {
	f := newFixture()
	f.podGroup("old", 2, epoch)
	f.podGroup("new", 2, epoch.Add(time.Minute))
	pl := &Gang{m: f.m}
	oldMember := member("old", 1, "")
	newMember := member("new", 0, "")
	ordinary := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"}}
	urgent := member("new", 1, "")
	urgent.Spec.Priority = ptr.To[int32](100)

	// A member of the older gang goes before a member of the newer one,
	// even when it entered the queue later.
	if !pl.Less(queued(oldMember, epoch.Add(time.Hour)), queued(newMember, epoch)) {
		t.Error("older gang first")
	}
	// Members of one gang sort by name, whatever their queue time.
	if !pl.Less(queued(member("old", 0, ""), epoch.Add(time.Hour)), queued(oldMember, epoch)) {
		t.Error("members of a gang in name order")
	}
	// Priority first.
	if !pl.Less(queued(urgent, epoch.Add(time.Hour)), queued(oldMember, epoch)) {
		t.Error("priority before age")
	}
	// An ordinary pod that entered the queue between the two gangs' creation
	// sits between them.
	if !pl.Less(queued(oldMember, epoch), queued(ordinary, epoch.Add(30*time.Second))) ||
		!pl.Less(queued(ordinary, epoch.Add(30*time.Second)), queued(newMember, epoch)) {
		t.Error("ordinary pods are ordered by their queue time among gangs")
	}
	// Within the second a gang was created, an ordinary pod goes first,
	// whatever the names; ordinary pods among themselves by queue time.
	late := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "zzz", Namespace: "ns"}}
	if !pl.Less(queued(late, epoch.Add(900*time.Millisecond)), queued(oldMember, epoch)) {
		t.Error("an ordinary pod queued in the gang's second goes first")
	}
	if !pl.Less(queued(ordinary, epoch.Add(100*time.Millisecond)), queued(late, epoch.Add(900*time.Millisecond))) {
		t.Error("ordinary pods in one second keep their queue order")
	}
}

func TestPodHints(t *testing.T) {
	pl := &Gang{}
	logger := klog.Background()
	pod := member("g", 0, "")
	if h, _ := pl.sameGangPod(logger, pod, nil, member("g", 1, "")); h != fwk.Queue {
		t.Error("a new member of the same gang requeues")
	}
	if h, _ := pl.sameGangPod(logger, pod, nil, member("x", 1, "")); h != fwk.QueueSkip {
		t.Error("a pod of another gang does not")
	}
	ordinary := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"}}
	if h, _ := pl.sameGangPod(logger, ordinary, nil, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web2", Namespace: "ns"}}); h != fwk.QueueSkip {
		t.Error("ordinary pods do not wait for members")
	}
}
