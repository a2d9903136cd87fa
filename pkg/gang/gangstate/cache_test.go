package gangstate

import (
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fixture is a cache over an in-memory pod indexer and a fake clock, with
// no scheduler: transitions are driven by hand.
type fixture struct {
	c     *Cache
	pods  cache.Indexer
	clock *clocktesting.FakeClock
	nodes []fwk.NodeInfo
	pg    *v1alpha1.PodGroup
	// applied collects what timers decided.
	applied chan Effects
}

func newFixture(t *testing.T, min int32, members int, nodes int) (*fixture, []*v1.Pod) {
	logger, _ := ktesting.NewTestContext(t)
	f := &fixture{
		pods:    cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{GangIndex: IndexByGang}),
		clock:   clocktesting.NewFakeClock(epoch),
		applied: make(chan Effects, 16),
	}
	f.c = New(Config{Clock: f.clock, Pods: f.pods, Schedulers: sets.New("lockstep"), DefaultTimeout: time.Minute,
		HeadEnabled: true, Logger: logger, Apply: func(e Effects) { f.applied <- e }})
	for i := range nodes {
		ni := framework.NewNodeInfo()
		ni.SetNode(st.MakeNode().Name(fmt.Sprintf("n%d", i)).Capacity(map[v1.ResourceName]string{v1.ResourceCPU: "4", v1.ResourcePods: "10"}).Obj())
		f.nodes = append(f.nodes, ni)
	}
	f.pg = &v1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: "ns", UID: "pg-uid", CreationTimestamp: metav1.NewTime(epoch)},
		Spec: v1alpha1.PodGroupSpec{MinMember: min}}
	var pods []*v1.Pod
	for i := range members {
		p := st.MakePod().Name(fmt.Sprintf("g-%d", i)).Namespace("ns").UID(fmt.Sprintf("g-%d", i)).SchedulerName("lockstep").
			Label(podgroup.Label, "g").Req(map[v1.ResourceName]string{v1.ResourceCPU: "4"}).Obj()
		_ = f.pods.Add(p)
		pods = append(pods, p)
	}
	return f, pods
}

// otherGang adds a second gang to the fixture: a PodGroup of minMember min
// and members pods of cpu CPUs each, named <name>-<i>.
func (f *fixture) otherGang(name string, min int32, members int, cpu string) (*v1alpha1.PodGroup, []*v1.Pod) {
	pg := f.pg.DeepCopy()
	pg.Name, pg.UID, pg.Spec.MinMember = name, types.UID("pg-"+name), min
	var pods []*v1.Pod
	for i := range members {
		p := st.MakePod().Name(fmt.Sprintf("%s-%d", name, i)).Namespace("ns").UID(fmt.Sprintf("%s-%d", name, i)).SchedulerName("lockstep").
			Label(podgroup.Label, name).Req(map[v1.ResourceName]string{v1.ResourceCPU: cpu}).Obj()
		_ = f.pods.Add(p)
		pods = append(pods, p)
	}
	return pg, pods
}

// place runs PreFilter, Reserve and Permit for a member on its planned node.
func (f *fixture) place(t *testing.T, p *v1.Pod) (PermitDecision, Effects) {
	t.Helper()
	v, _ := f.c.PreFilter(p, f.pg, f.nodes)
	if v.Code != fwk.Success || v.Node == "" {
		t.Fatalf("%s: PreFilter %v %q", p.Name, v.Code, v.Reason)
	}
	f.c.Reserve(p, v.Node)
	return f.c.Permit(p, f.pg)
}

// placeIn runs PreFilter, Reserve and Permit for a member of gang pg on
// its planned node.
func (f *fixture) placeIn(t *testing.T, pg *v1alpha1.PodGroup, p *v1.Pod) (PermitDecision, Effects) {
	t.Helper()
	v, _ := f.c.PreFilter(p, pg, f.nodes)
	if v.Node == "" {
		t.Fatalf("%s: %+v", p.Name, v)
	}
	f.c.Reserve(p, v.Node)
	return f.c.Permit(p, pg)
}

func uids(rs []Rejection) sets.Set[types.UID] {
	out := sets.New[types.UID]()
	for _, r := range rs {
		out.Insert(r.UID)
	}
	return out
}

func TestTransitions(t *testing.T) {
	t.Run("Planned to Binding at quorum: every waiting member allowed", func(t *testing.T) {
		f, pods := newFixture(t, 3, 3, 3)
		for _, p := range pods[:2] {
			if d, _ := f.place(t, p); d.Wait == 0 {
				t.Fatalf("%s: want to wait, got %+v", p.Name, d)
			}
		}
		d, eff := f.place(t, pods[2])
		if !d.Allow || !sets.New(eff.Allow...).Equal(sets.New[types.UID]("g-0", "g-1")) {
			t.Fatalf("got %+v, allowed %v", d, eff.Allow)
		}
		if f.c.Phase("ns/g") != Binding {
			t.Fatalf("phase %s", f.c.Phase("ns/g"))
		}
	})
	t.Run("Planned to Waiting when a member fails: the others are rejected; their stale Unreserve changes nothing", func(t *testing.T) {
		f, pods := newFixture(t, 3, 3, 3)
		f.place(t, pods[0])
		f.place(t, pods[1])
		eff := f.c.Unreserve(pods[1])
		if !uids(eff.Reject).Equal(sets.New[types.UID]("g-0")) || f.c.Phase("ns/g") != Waiting {
			t.Fatalf("rejected %v, phase %s", uids(eff.Reject), f.c.Phase("ns/g"))
		}
		// A new plan, then the rejected member's late Unreserve.
		if v, _ := f.c.PreFilter(pods[2], f.pg, f.nodes); v.Node == "" {
			t.Fatalf("replan: %+v", v)
		}
		if eff := f.c.Unreserve(pods[0]); len(eff.Reject) != 0 || f.c.Phase("ns/g") != Planned {
			t.Fatalf("a stale Unreserve broke the new plan: %+v, phase %s", eff, f.c.Phase("ns/g"))
		}
	})
	t.Run("Binding: a failed bind holds the member's place", func(t *testing.T) {
		f, pods := newFixture(t, 2, 2, 2)
		f.place(t, pods[0])
		f.place(t, pods[1])
		eff := f.c.Unreserve(pods[0])
		if len(eff.Reject) != 0 || eff.Activate["ns/g-0"] == nil {
			t.Fatalf("want g-0 reactivated and nobody rejected, got %+v", eff)
		}
		other, _ := f.c.PreFilterOrdinary(st.MakePod().Name("o").Namespace("ns").Obj(), f.nodes)
		if len(other.Held) != 1 {
			t.Fatalf("the failed member's room is not held: %v", other.Held)
		}
		if d, _ := f.place(t, pods[0]); !d.Allow {
			t.Fatalf("retry: %+v", d)
		}
	})
	t.Run("Binding to Running when every member is bound", func(t *testing.T) {
		f, pods := newFixture(t, 2, 2, 2)
		f.place(t, pods[0])
		f.place(t, pods[1])
		for _, p := range pods {
			b := p.DeepCopy()
			b.Spec.NodeName = "n0"
			_ = f.pods.Update(b)
			f.c.PodBound(b)
		}
		if f.c.Phase("ns/g") != Running {
			t.Fatalf("phase %s", f.c.Phase("ns/g"))
		}
	})
	t.Run("Binding past its deadline with a member unbound: reported incomplete", func(t *testing.T) {
		f, pods := newFixture(t, 2, 2, 2)
		f.place(t, pods[0])
		f.place(t, pods[1])
		b := pods[1].DeepCopy()
		b.Spec.NodeName = "n1"
		_ = f.pods.Update(b)
		f.c.PodBound(b)
		f.c.Unreserve(pods[0])
		f.clock.Step(time.Minute)
		eff := <-f.applied
		if len(eff.Events) == 0 || eff.Events[0].Reason != "GangIncomplete" || !strings.Contains(eff.Events[0].Message, "g-0") {
			t.Fatalf("want a GangIncomplete Event naming g-0, got %+v", eff.Events)
		}
	})
	t.Run("Planned: minMember raised drops the plan", func(t *testing.T) {
		f, pods := newFixture(t, 2, 3, 3)
		f.place(t, pods[0])
		old := f.pg
		f.pg = old.DeepCopy()
		f.pg.Spec.MinMember = 3
		eff := f.c.PodGroupUpdated(old, f.pg)
		if !uids(eff.Reject).Has("g-0") || f.c.Phase("ns/g") != Waiting {
			t.Fatalf("rejected %v, phase %s", uids(eff.Reject), f.c.Phase("ns/g"))
		}
	})
	t.Run("Planned: annotations it is not placed by keep the plan (the scheduler's own report first), a topology change drops it", func(t *testing.T) {
		f, pods := newFixture(t, 2, 3, 3)
		f.place(t, pods[0])
		for _, k := range []string{podgroup.AnnotationWaiting, podgroup.AnnotationIncomplete, podgroup.AnnotationEvicting, podgroup.AnnotationDisruptionMode, "example.com/owner"} {
			old := f.pg
			f.pg = old.DeepCopy()
			f.pg.Annotations = map[string]string{k: "reported"}
			if eff := f.c.PodGroupUpdated(old, f.pg); len(eff.Reject) != 0 || len(eff.Activate) != 0 || f.c.Phase("ns/g") != Planned {
				t.Fatalf("%s written: rejected %v, woke %d pods, phase %s", k, uids(eff.Reject), len(eff.Activate), f.c.Phase("ns/g"))
			}
		}
		old := f.pg
		f.pg = old.DeepCopy()
		f.pg.Annotations[podgroup.AnnotationRequiredTopology] = "kubernetes.io/hostname"
		if eff := f.c.PodGroupUpdated(old, f.pg); !uids(eff.Reject).Has("g-0") || f.c.Phase("ns/g") != Waiting {
			t.Fatalf("topology changed: rejected %v, phase %s", uids(eff.Reject), f.c.Phase("ns/g"))
		}
	})
	t.Run("Planned: minMember lowered to what is assumed releases the gang", func(t *testing.T) {
		f, pods := newFixture(t, 3, 3, 3)
		f.place(t, pods[0])
		f.place(t, pods[1])
		old := f.pg
		f.pg = old.DeepCopy()
		f.pg.Spec.MinMember = 2
		eff := f.c.PodGroupUpdated(old, f.pg)
		if len(eff.Allow) != 2 || f.c.Phase("ns/g") != Binding {
			t.Fatalf("allowed %v, phase %s", eff.Allow, f.c.Phase("ns/g"))
		}
	})
	t.Run("PodGroup deleted: waiting members rejected, the gang forgotten", func(t *testing.T) {
		f, pods := newFixture(t, 2, 2, 2)
		f.place(t, pods[0])
		eff := f.c.PodGroupDeleted("ns/g", f.pg.UID)
		if !uids(eff.Reject).Has("g-0") {
			t.Fatalf("rejected %v", uids(eff.Reject))
		}
		if d, _ := f.c.Permit(pods[0], f.pg); d.Reject == "" {
			t.Fatalf("a member of a deleted gang must be rejected at Permit, got %+v", d)
		}
	})
	t.Run("Running to Waiting when members are gone", func(t *testing.T) {
		f, pods := newFixture(t, 2, 2, 2)
		for _, p := range pods {
			b := p.DeepCopy()
			b.Spec.NodeName = "n0"
			_ = f.pods.Update(b)
		}
		if v, _ := f.c.PreFilter(pods[0], f.pg, f.nodes); v.Node != "" || f.c.Phase("ns/g") != Running {
			t.Fatalf("restarted with a bound quorum: %+v, phase %s", v, f.c.Phase("ns/g"))
		}
		for _, p := range pods {
			_ = f.pods.Delete(p)
		}
		fresh := st.MakePod().Name("g-9").Namespace("ns").UID("g-9").SchedulerName("lockstep").Label(podgroup.Label, "g").Obj()
		_ = f.pods.Add(fresh)
		v, eff := f.c.PreFilter(fresh, f.pg, f.nodes)
		if v.Code == fwk.Success || f.c.Phase("ns/g") != Waiting || len(eff.Events) == 0 || eff.Events[0].Reason != "BelowQuorum" {
			t.Fatalf("a lone new member: %+v, phase %s, events %+v", v, f.c.Phase("ns/g"), eff.Events)
		}
	})
}

// A gang whose quorum is assumed waits in line while earlier gangs' members
// are binding beyond the budget, and goes as they bind; at its deadline it
// goes anyway.
func TestBindPacing(t *testing.T) {
	t.Run("in line", func(t *testing.T) { testBindPacing(t, false) })
	t.Run("deadline", func(t *testing.T) { testBindPacing(t, true) })
}

func testBindPacing(t *testing.T, deadline bool) {
	f, a := newFixture(t, 2, 2, 4)
	f.c.cfg.BindBudget = 2
	pgB, b := f.otherGang("h", 2, 2, "4")
	f.placeIn(t, f.pg, a[0])
	if d, _ := f.placeIn(t, f.pg, a[1]); !d.Allow {
		t.Fatalf("first gang: %+v", d)
	}
	f.placeIn(t, pgB, b[0])
	d, eff := f.placeIn(t, pgB, b[1])
	if d.Allow || d.Wait == 0 || len(eff.Allow) != 0 || f.c.Phase("ns/h") != Planned {
		t.Fatalf("second gang must wait for the first one's bindings: %+v %+v, phase %s", d, eff.Allow, f.c.Phase("ns/h"))
	}
	// Updates of its PodGroup (its status, the scheduler's own report, a
	// minMember lowered) do not let it jump the line.
	updated := pgB.DeepCopy()
	updated.Status.Phase = v1alpha1.PodGroupScheduling
	updated.Annotations = map[string]string{podgroup.AnnotationWaiting: "Reserving: ..."}
	if eff := f.c.PodGroupUpdated(pgB, updated); len(eff.Allow) != 0 || f.c.Phase("ns/h") != Planned {
		t.Fatalf("a PodGroup update released the gang in line: allowed %v, phase %s", eff.Allow, f.c.Phase("ns/h"))
	}
	lowered := updated.DeepCopy()
	lowered.Spec.MinMember = 1
	if eff := f.c.PodGroupUpdated(updated, lowered); len(eff.Allow) != 0 || f.c.Phase("ns/h") != Planned {
		t.Fatalf("minMember lowered released the gang in line: allowed %v, phase %s", eff.Allow, f.c.Phase("ns/h"))
	}
	if deadline {
		// At its deadline a gang in line goes rather than being dropped.
		f.clock.Step(time.Minute)
		for {
			select {
			case eff := <-f.applied:
				if len(eff.Allow) == 2 && f.c.Phase("ns/h") == Binding {
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("the gang in line was not released at its deadline; phase %s", f.c.Phase("ns/h"))
			}
		}
	}
	bind := func(p *v1.Pod) Effects {
		bound := p.DeepCopy()
		bound.Spec.NodeName = "n0"
		_ = f.pods.Update(bound)
		return f.c.PodBound(bound)
	}
	if eff := bind(a[0]); len(eff.Allow) != 0 {
		t.Fatalf("1 binding + 2 members exceed the budget of 2, yet allowed %v", eff.Allow)
	}
	eff = bind(a[1])
	if len(eff.Allow) != 2 || f.c.Phase("ns/h") != Binding {
		t.Fatalf("the first gang bound leaves room for the second: allowed %v, phase %s", eff.Allow, f.c.Phase("ns/h"))
	}
	if len(eff.Events) == 0 || !strings.HasPrefix(eff.Events[0].Message, "placed 2 pods") {
		t.Fatalf("want the second gang's Placed Event counting its 2 pods, got %+v", eff.Events)
	}

	g, c := newFixture(t, 2, 2, 4)
	g.c.cfg.BindBudget = 1
	g.place(t, c[0])
	g.place(t, c[1]) // 2 members > budget 1, nothing else binding: goes
	if g.c.Phase("ns/g") != Binding {
		t.Fatalf("a gang larger than the budget goes when nothing else binds: %s", g.c.Phase("ns/g"))
	}
}

// A gang larger than the budget goes once fewer than the budget are
// binding, overlapping the tail of the gang before it.
func TestBindPacingLargeGang(t *testing.T) {
	f, a := newFixture(t, 2, 2, 8)
	f.c.cfg.BindBudget = 2
	pgB, b := f.otherGang("big", 3, 3, "4")
	for _, p := range a {
		f.place(t, p)
	}
	var last PermitDecision
	for _, p := range b {
		v, _ := f.c.PreFilter(p, pgB, f.nodes)
		f.c.Reserve(p, v.Node)
		last, _ = f.c.Permit(p, pgB)
	}
	if last.Allow || f.c.Phase("ns/big") != Planned {
		t.Fatalf("with the budget full the big gang must wait: %+v, phase %s", last, f.c.Phase("ns/big"))
	}
	bound := a[0].DeepCopy()
	bound.Spec.NodeName = "n0"
	_ = f.pods.Update(bound)
	if eff := f.c.PodBound(bound); len(eff.Allow) != 3 || f.c.Phase("ns/big") != Binding {
		t.Fatalf("one binding left, under the budget: the big gang goes; allowed %v, phase %s", eff.Allow, f.c.Phase("ns/big"))
	}
}

// Ordinary pods take their turn under the bind budget: each is one unit,
// going at once while the budget has room and nothing waits in line, and
// otherwise waiting in line behind the gangs before it. A binding counts
// until PostBind, or until the informer shows the pod bound.
func TestBindPacingOrdinaryPods(t *testing.T) {
	f, g := newFixture(t, 2, 2, 4)
	f.c.cfg.BindBudget = 2
	ordinary := func(name string) *v1.Pod {
		p := st.MakePod().Name(name).Namespace("ns").UID(name).SchedulerName("lockstep").
			Req(map[v1.ResourceName]string{v1.ResourceCPU: "1"}).Obj()
		_ = f.pods.Add(p)
		return p
	}
	o1, o2, o3, o4 := ordinary("o1"), ordinary("o2"), ordinary("o3"), ordinary("o4")
	allowed := func(eff Effects) sets.Set[types.UID] { return sets.New(eff.Allow...) }

	for _, p := range []*v1.Pod{o1, o2} {
		if d := f.c.PermitOrdinary(p); !d.Allow {
			t.Fatalf("%s: the budget has room and nothing waits, yet %+v", p.Name, d)
		}
	}
	f.place(t, g[0])
	if d, _ := f.place(t, g[1]); d.Allow || f.c.Phase("ns/g") != Planned {
		t.Fatalf("two ordinary pods binding fill the budget of 2: the gang must wait, got %+v, phase %s", d, f.c.Phase("ns/g"))
	}
	if eff := f.c.PostBind(o1); len(eff.Allow) != 0 {
		t.Fatalf("1 binding + the gang's 2 exceed the budget: %v", eff.Allow)
	}
	// The budget has room for one, but the gang waits in line first.
	d := f.c.PermitOrdinary(o3)
	if d.Allow || d.Wait <= 0 || d.Reason == "" {
		t.Fatalf("an ordinary pod behind a gang in line must wait with a reason: %+v", d)
	}
	d = f.c.PermitOrdinary(o4)
	if d.Allow {
		t.Fatalf("o4 is behind the gang and o3: %+v", d)
	}
	// o4 fails (its wait timed out, or its node went): the line skips it.
	if eff := f.c.OrdinaryDone(o4); len(eff.Allow) != 0 {
		t.Fatalf("nothing may go before the gang: %v", eff.Allow)
	}
	// The informer shows o2 bound (no PostBind): the gang goes, o3 not yet.
	if eff := f.c.OrdinaryDone(o2); !allowed(eff).Equal(sets.New[types.UID]("g-0", "g-1")) || f.c.Phase("ns/g") != Binding {
		t.Fatalf("the budget freed: the gang goes whole, first in line; allowed %v, phase %s", eff.Allow, f.c.Phase("ns/g"))
	}
	if eff := f.c.PostBind(o1); len(eff.Allow) != 0 {
		t.Fatalf("a second PostBind for o1 counted again: %v", eff.Allow)
	}
	if eff := f.c.PostBind(g[0]); !allowed(eff).Equal(sets.New[types.UID]("o3")) {
		t.Fatalf("a member's binding answered leaves room for o3, next in line: %v", eff.Allow)
	}
	// The informer then shows the member bound: it is not counted twice.
	bound := g[0].DeepCopy()
	bound.Spec.NodeName = "n0"
	_ = f.pods.Update(bound)
	f.c.PodBound(bound)
	if n := f.c.bindingLocked(); n != 2 {
		t.Fatalf("g-1 and o3 are binding, counted %d", n)
	}
	// An ordinary pod deleted while binding frees its place.
	f.c.PodDeleted(o3)
	if n := f.c.bindingLocked(); n != 1 {
		t.Fatalf("o3 was deleted: 1 binding left, counted %d", n)
	}

	// With pacing off, ordinary pods are not tracked at all.
	h, _ := newFixture(t, 2, 2, 4)
	if d := h.c.PermitOrdinary(o1); !d.Allow || len(h.c.ordinary) != 0 {
		t.Fatalf("budget 0: %+v, tracked %v", d, h.c.ordinary)
	}
}

// The Placed Event names every released member by node, in order, and
// stays under the Event API's message limit for a big gang.
func TestAssignments(t *testing.T) {
	slots := map[types.UID]*slot{}
	add := func(name, node string, state slotState) {
		slots[types.UID(name)] = &slot{pod: &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}, node: node, state: state}
	}
	add("w-1", "b", slotAssumed)
	add("w-0", "b", slotBound)
	add("w-2", "a", slotAssumed)
	add("w-3", "c", slotPlanned) // not placed yet: not named
	if got, want := assignments(slots), "a: w-2; b: w-0, w-1"; got != want {
		t.Errorf("assignments = %q, want %q", got, want)
	}
	slots = map[types.UID]*slot{}
	for i := range 256 {
		add(fmt.Sprintf("worker-%03d", i), fmt.Sprintf("node-%02d", i/8), slotAssumed)
	}
	got := assignments(slots)
	if len(got) > maxAssignmentsLen+40 || !strings.HasPrefix(got, "node-00: worker-000, worker-001") || !strings.Contains(got, " more") {
		t.Errorf("assignments of 256 members (%d bytes): %q", len(got), got)
	}
	var n int
	fmt.Sscanf(got[strings.LastIndex(got, "and ")+4:], "%d", &n)
	if named := strings.Count(got, "worker-"); named+n != 256 {
		t.Errorf("%d named + %d more != 256 members: %q", named, n, got)
	}
}

// The head of the queue recomputes its reservation when room may have
// freed, not at every other pod's assume, which only takes room it does not
// hold; a periodic recomputation catches what the cache is not told of.
func TestHeadReservationRecomputedWhenRoomFrees(t *testing.T) {
	f, pods := newFixture(t, 3, 3, 3)
	logger, _ := ktesting.NewTestContext(t)
	occupant := st.MakePod().Name("occupant").Namespace("ns").UID("occupant").Node("n2").Req(map[v1.ResourceName]string{v1.ResourceCPU: "4"}).Obj()
	n2 := f.nodes[2].(*framework.NodeInfo)
	n2.AddPod(occupant)
	if v, _ := f.c.PreFilter(pods[0], f.pg, f.nodes); v.Code == fwk.Success {
		t.Fatalf("the gang cannot fit beside the occupant, got %+v", v)
	}
	head := f.c.gangs["ns/g"]
	if len(head.reserve) != 2 {
		t.Fatalf("the head should reserve the two free nodes, got %v", head.reserve)
	}
	computed := head.reservedAt
	reservations := func() int64 { return head.reservedGen }
	before := reservations()

	// Another pod assumed: the snapshot changed, the reservation stands.
	n2.AddPod(st.MakePod().Name("tiny").Namespace("ns").UID("tiny").Node("n2").Obj())
	other := st.MakePod().Name("o").Namespace("ns").Obj()
	other.CreationTimestamp = metav1.NewTime(epoch.Add(time.Hour)) // younger than the gang
	if v, _ := f.c.PreFilterOrdinary(other, f.nodes); len(v.Held) != 2 {
		t.Fatalf("held for the head: %v", v.Held)
	}
	if reservations() != before || !head.reservedAt.Equal(computed) {
		t.Fatal("the reservation was recomputed after an assume that freed nothing")
	}

	// After headRefresh, a changed snapshot is looked at again anyway.
	f.clock.Step(headRefresh)
	f.c.PreFilterOrdinary(other, f.nodes)
	if reservations() == before {
		t.Fatal("the reservation was not recomputed after headRefresh")
	}
	before = reservations()

	// The occupant goes: the head sees the room at the next cycle and its
	// members are woken, now that the whole gang fits.
	if err := n2.RemovePod(logger, occupant); err != nil {
		t.Fatal(err)
	}
	f.c.PodDeleted(occupant)
	_, eff := f.c.PreFilterOrdinary(other, f.nodes)
	if reservations() == before || len(head.reserve) != 3 {
		t.Fatalf("after the occupant left: reservation %v", head.reserve)
	}
	for _, p := range pods {
		if eff.Activate["ns/"+p.Name] == nil {
			t.Errorf("%s not woken though the gang now fits: %v", p.Name, eff.Activate)
		}
	}
}

// A released member whose binding failed keeps its place, unless its node
// is lost: then the place goes, and the member is woken to go as a member
// of a started gang. Members already bound, or on other nodes, are left be.
func TestNodeLostAfterRelease(t *testing.T) {
	f, pods := newFixture(t, 2, 2, 2)
	v0, _ := f.c.PreFilter(pods[0], f.pg, f.nodes)
	f.place(t, pods[0])
	f.place(t, pods[1])
	f.c.Unreserve(pods[0]) // its binding failed: its place is held
	other := st.MakePod().Name("o").Namespace("ns").Obj()
	if v, _ := f.c.PreFilterOrdinary(other, f.nodes); v.Held[v0.Node].MilliCPU == 0 {
		t.Fatalf("the failed member's place on %s is not held: %v", v0.Node, v.Held)
	}
	all := func(*v1.Pod) bool { return true }
	if eff := f.c.NodeLost("elsewhere", "was deleted", all); !eff.Empty() {
		t.Fatalf("a node the gang does not use changed something: %+v", eff)
	}
	eff := f.c.NodeLost(v0.Node, "was deleted", all)
	if eff.Activate["ns/g-0"] == nil {
		t.Fatalf("the member whose place was lost was not woken: %+v", eff)
	}
	if v, _ := f.c.PreFilterOrdinary(other, f.nodes); v.Held[v0.Node].MilliCPU != 0 {
		t.Fatalf("room still held on the lost node: %v", v.Held)
	}
	if f.c.Phase("ns/g") != Binding {
		t.Fatalf("phase %s, want Binding: the other member is still binding", f.c.Phase("ns/g"))
	}
}

// A bound member being deleted (evicted with its gang) no longer counts
// toward the quorum: a new member is planned as part of a gang again, not
// let go as if the gang were whole.
func TestTerminatingMembersDoNotCount(t *testing.T) {
	f, pods := newFixture(t, 2, 3, 2)
	for i, p := range pods[:2] {
		b := p.DeepCopy()
		b.Spec.NodeName = fmt.Sprintf("n%d", i)
		if i == 1 {
			b.DeletionTimestamp = ptr.To(metav1.NewTime(epoch))
		}
		_ = f.pods.Update(b)
	}
	v, _ := f.c.PreFilter(pods[2], f.pg, f.nodes)
	if v.Code != fwk.Success || v.Node == "" {
		t.Fatalf("the new member should follow a plan for the one member missing, got %+v", v)
	}
}

// A member beyond the quorum that comes while the quorum waits at Permit for
// the bind budget waits too: the gang has not started, and its held members
// must stay in line to be let go together (not be orphaned at Permit by a
// gang marked Running).
func TestExtraMemberWhileQuorumWaitsForBudget(t *testing.T) {
	f, a := newFixture(t, 2, 2, 4)
	f.c.cfg.BindBudget = 2
	pgB, b := f.otherGang("h", 2, 3, "1")
	f.place(t, a[0])
	f.place(t, a[1]) // released: 2 binding, the budget is full
	for _, p := range b[:2] {
		v, _ := f.c.PreFilter(p, pgB, f.nodes)
		f.c.Reserve(p, v.Node)
		f.c.Permit(p, pgB)
	}
	if f.c.Phase("ns/h") != Planned {
		t.Fatalf("the second gang should wait in line, phase %s", f.c.Phase("ns/h"))
	}
	// The extra member either waits, or follows the place the plan gave it
	// and waits in line at Permit with the others.
	v, _ := f.c.PreFilter(b[2], pgB, f.nodes)
	if f.c.Phase("ns/h") != Planned || v.Code == fwk.Success && v.Node == "" {
		t.Fatalf("the extra member went ahead of its waiting quorum: %+v, phase %s", v, f.c.Phase("ns/h"))
	}
	held := 2
	if v.Node != "" {
		f.c.Reserve(b[2], v.Node)
		if d, _ := f.c.Permit(b[2], pgB); d.Allow {
			t.Fatalf("the extra member was let go ahead of its quorum: %+v", d)
		}
		held = 3
	}
	var allowed []types.UID
	woken := map[string]bool{}
	for _, p := range a {
		bound := p.DeepCopy()
		bound.Spec.NodeName = "n0"
		_ = f.pods.Update(bound)
		eff := f.c.PodBound(bound)
		allowed = append(allowed, eff.Allow...)
		for k := range eff.Activate {
			woken[k] = true
		}
	}
	if len(allowed) != held || f.c.Phase("ns/h") != Binding {
		t.Fatalf("the waiting members were not let go together once the budget freed: allowed %v of %d, phase %s", allowed, held, f.c.Phase("ns/h"))
	}
	if held == 2 {
		// Refused while the quorum waited, the extra member is woken at the
		// release and goes now.
		if !woken["ns/h-2"] {
			t.Errorf("the extra member was not woken at the release: %v", woken)
		}
		if v, _ := f.c.PreFilter(b[2], pgB, f.nodes); v.Code != fwk.Success {
			t.Fatalf("the extra member of a started gang: %+v", v)
		}
	}
}
