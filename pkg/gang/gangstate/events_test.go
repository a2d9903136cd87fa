package gangstate

import (
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// Cluster and informer events that change nothing a gang is placed by, and
// timers, leave no gang stuck, out of line or holding room it cannot use.

// waitApplied returns the first effects a timer applied that satisfy ok.
func (f *fixture) waitApplied(t *testing.T, what string, ok func(Effects) bool) Effects {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case eff := <-f.applied:
			if ok(eff) {
				return eff
			}
		case <-deadline:
			t.Fatalf("no timer did %s", what)
		}
	}
}

// A gang whose plan failed only because a member avoids a node (its
// Filter refused it there) is tried again when the avoidance ends: no
// cluster event marks that moment, and the cached failure would otherwise
// stand until some unrelated change.
func TestFailedPlanRetriedWhenAvoidanceEnds(t *testing.T) {
	f, pods := newFixture(t, 2, 2, 2)
	// No head reservation: its own timer would also retry the gang.
	f.c.cfg.HeadEnabled = false
	g := f.c.gangs
	if v, _ := f.c.PreFilter(pods[0], f.pg, f.nodes); v.Code != fwk.Success {
		t.Fatalf("first plan: %+v", v)
	}
	// The member's Filter refuses n0 and n1: it avoids both, and the plan
	// is dropped.
	f.c.mu.Lock()
	now := f.clock.Now()
	gg := g["ns/g"]
	f.c.avoidLocked(gg, pods[0].UID, "n0", now)
	f.c.avoidLocked(gg, pods[0].UID, "n1", now)
	var eff Effects
	f.c.dropPlanLocked(gg, "test: member refused", &eff)
	f.c.mu.Unlock()
	if v, _ := f.c.PreFilter(pods[0], f.pg, f.nodes); v.Code == fwk.Success {
		t.Fatalf("planned though g-0 avoids every node: %+v", v)
	}
	if v, _ := f.c.PreFilter(pods[1], f.pg, f.nodes); v.Code == fwk.Success {
		t.Fatalf("the cached failure should stand while g-0 avoids every node: %+v", v)
	}
	f.clock.Step(time.Minute) // the gang's timeout: the avoidance ends
	f.waitApplied(t, "wake the gang when its avoidance ended", func(e Effects) bool {
		return e.Activate["ns/g-0"] != nil && e.Activate["ns/g-1"] != nil
	})
	if v, _ := f.c.PreFilter(pods[0], f.pg, f.nodes); v.Code != fwk.Success {
		t.Fatalf("not planned again once the avoidance ended: %+v", v)
	}
}

// A head gang left with fewer members than it needs (one deleted) stops
// holding room, and what it kept out is woken.
func TestHeadWithTooFewMembersHoldsNothing(t *testing.T) {
	f, pods := newFixture(t, 3, 3, 3)
	occupant := st.MakePod().Name("occupant").Namespace("ns").UID("occupant").Node("n2").Req(map[v1.ResourceName]string{v1.ResourceCPU: "4"}).Obj()
	f.nodes[2].(*framework.NodeInfo).AddPod(occupant)
	if v, _ := f.c.PreFilter(pods[0], f.pg, f.nodes); v.Code == fwk.Success {
		t.Fatalf("the gang cannot fit beside the occupant, got %+v", v)
	}
	if len(f.c.gangs["ns/g"].reserve) != 2 {
		t.Fatalf("the head should reserve the two free nodes, got %v", f.c.gangs["ns/g"].reserve)
	}
	_ = f.pods.Delete(pods[2])
	f.c.PodDeleted(pods[2])
	other := st.MakePod().Name("o").Namespace("ns").UID("o").Obj()
	other.CreationTimestamp = metav1.NewTime(epoch.Add(time.Hour))
	v, _ := f.c.PreFilterOrdinary(other, f.nodes)
	if len(v.Held) != 0 || len(f.c.gangs["ns/g"].reserve) != 0 {
		t.Fatalf("a gang of 2 members for a quorum of 3 still holds room: %v", v.Held)
	}
}

// A gang that was head without holding room, and lost its place, starts
// its head time afresh when it is head again: it is not told its
// reservation timed out.
func TestFormerHeadStartsAfresh(t *testing.T) {
	f, pods := newFixture(t, 2, 2, 2)
	// Both nodes are full: the gang is head, with nothing to reserve.
	for i, ni := range f.nodes {
		name := fmt.Sprintf("occupant-%d", i)
		ni.(*framework.NodeInfo).AddPod(st.MakePod().Name(name).Namespace("ns").UID(name).Node(ni.Node().Name).Req(map[v1.ResourceName]string{v1.ResourceCPU: "4"}).Obj())
	}
	for range 2 { // blocked at the first cycle, head from the next
		if v, _ := f.c.PreFilter(pods[0], f.pg, f.nodes); v.Code == fwk.Success {
			t.Fatalf("planned on a full node: %+v", v)
		}
	}
	g := f.c.gangs["ns/g"]
	if g.headSince.IsZero() {
		t.Fatal("the blocked gang is not head")
	}
	// An older gang becomes head.
	older, olderPods := f.otherGang("older", 1, 1, "4")
	older.CreationTimestamp = metav1.NewTime(epoch.Add(-time.Hour))
	f.clock.Step(50 * time.Second)
	for range 2 {
		if v, _ := f.c.PreFilter(olderPods[0], older, f.nodes); v.Code == fwk.Success {
			t.Fatalf("planned on a full node: %+v", v)
		}
	}
	if !g.headSince.IsZero() {
		t.Fatal("the former head keeps its time as head")
	}
	// The older gang goes; ours is head again, 50 s after it first was,
	// and must get its whole timeout.
	_ = f.pods.Delete(olderPods[0])
	f.c.PodGroupDeleted("ns/older", older.UID)
	f.clock.Step(20 * time.Second)
	_, eff := f.c.PreFilter(pods[0], f.pg, f.nodes)
	for _, e := range eff.Events {
		if e.Reason == "ReservationTimedOut" {
			t.Fatalf("a gang head again for a moment was told its reservation timed out: %s", e.Message)
		}
	}
	if g.headSince.IsZero() || !g.headSince.Equal(f.clock.Now()) {
		t.Fatalf("head since %v, want now (%v)", g.headSince, f.clock.Now())
	}
}

// A gang ranks by its highest member, whichever member's cycle runs: a
// launcher of lower priority than its workers does not lower it.
func TestGangRankIsItsHighestMember(t *testing.T) {
	f, pods := newFixture(t, 2, 2, 1)
	f.nodes[0].(*framework.NodeInfo).AddPod(st.MakePod().Name("occupant").Namespace("ns").UID("occupant").Node("n0").Req(map[v1.ResourceName]string{v1.ResourceCPU: "4"}).Obj())
	worker := pods[1].DeepCopy()
	worker.Spec.Priority = new(int32(100))
	_ = f.pods.Update(worker)
	f.c.PreFilter(worker, f.pg, f.nodes)
	f.c.PreFilter(pods[0], f.pg, f.nodes) // the launcher, priority 0
	if got := f.c.gangs["ns/g"].rank.priority; got != 100 {
		t.Fatalf("the gang ranks at %d after its launcher's cycle, want its worker's 100", got)
	}
}

// A released member deleted while binding frees its place in the bind
// budget at once: the gang in line behind it goes.
func TestDeletedBindingMemberFreesTheBudget(t *testing.T) {
	f, a := newFixture(t, 3, 3, 5)
	f.c.cfg.BindBudget = 3
	pgB, b := f.otherGang("h", 2, 2, "4")
	for _, p := range a {
		f.placeIn(t, f.pg, p)
	}
	f.placeIn(t, pgB, b[0])
	if d, _ := f.placeIn(t, pgB, b[1]); d.Allow {
		t.Fatal("the second gang should wait for the first one's bindings")
	}
	// g-0 binds: 2 binding + 2 still exceed the budget of 3.
	bound := a[0].DeepCopy()
	bound.Spec.NodeName = "n0"
	_ = f.pods.Update(bound)
	if eff := f.c.PodBound(bound); len(eff.Allow) != 0 {
		t.Fatalf("allowed %v past the budget", eff.Allow)
	}
	// g-1 is deleted while binding and its binding fails; g-2 still binds.
	_ = f.pods.Delete(a[1])
	eff := f.c.Unreserve(a[1])
	if len(eff.Allow) != 2 || f.c.Phase("ns/h") != Binding {
		t.Fatalf("1 binding + 2 fit the budget of 3, yet the gang in line waits: allowed %v, phase %s", eff.Allow, f.c.Phase("ns/h"))
	}
}

// The delete of a PodGroup that was created again under its name, seen
// after the new one, leaves the new gang be.
func TestLateDeleteOfAReplacedPodGroup(t *testing.T) {
	f, pods := newFixture(t, 2, 2, 2)
	f.place(t, pods[0])
	if eff := f.c.PodGroupDeleted("ns/g", "the-old-uid"); len(eff.Reject) != 0 || f.c.Phase("ns/g") != Planned {
		t.Fatalf("the old PodGroup's delete undid the new one's gang: rejected %v, phase %s", uids(eff.Reject), f.c.Phase("ns/g"))
	}
	if eff := f.c.PodGroupDeleted("ns/g", f.pg.UID); !uids(eff.Reject).Has("g-0") {
		t.Fatalf("its own delete must release it: rejected %v", uids(eff.Reject))
	}
}

// A member bound by someone else (the scheduler that led before) that
// completes the quorum lets the members waiting at Permit go.
func TestQuorumCompletedByAnotherBinder(t *testing.T) {
	f, pods := newFixture(t, 2, 2, 2)
	if d, _ := f.place(t, pods[0]); d.Allow {
		t.Fatalf("one of two allowed: %+v", d)
	}
	other := pods[1].DeepCopy()
	other.Spec.NodeName = "n1"
	_ = f.pods.Update(other)
	eff := f.c.PodBound(other)
	if len(eff.Allow) != 1 || eff.Allow[0] != pods[0].UID || f.c.Phase("ns/g") != Binding {
		t.Fatalf("the waiting member was not let go: allowed %v, phase %s", eff.Allow, f.c.Phase("ns/g"))
	}
}

// A gang whose plan was dropped while it waited in line, planned again,
// goes at its new place, behind those that queued meanwhile.
func TestNoOldPlaceInLine(t *testing.T) {
	f, a := newFixture(t, 2, 2, 8)
	f.c.cfg.BindBudget = 2
	pgX, x := f.otherGang("x", 2, 2, "4")
	pgY, y := f.otherGang("y", 2, 2, "4")
	pgZ, z := f.otherGang("z", 2, 2, "4")
	place := func(pg *v1alpha1.PodGroup, pods []*v1.Pod) {
		for _, p := range pods {
			f.placeIn(t, pg, p)
		}
	}
	bind := func(pods []*v1.Pod) {
		for _, p := range pods {
			b := p.DeepCopy()
			b.Spec.NodeName = "n0"
			_ = f.pods.Update(b)
			f.c.PodBound(b)
		}
	}
	place(f.pg, a) // binding: the budget is full
	place(pgY, y)  // in line: y
	place(pgX, x)  // in line: y, x
	// x's plan is dropped (a member failed, the other rejected with it),
	// z gets in line, then x again: y, z, x.
	f.c.Unreserve(x[0])
	f.c.Unreserve(x[1])
	if f.c.Phase("ns/x") != Waiting {
		t.Fatalf("x's plan was not dropped: %s", f.c.Phase("ns/x"))
	}
	place(pgZ, z)
	place(pgX, x)
	bind(a)
	if f.c.Phase("ns/y") != Binding {
		t.Fatalf("y, first in line, is %s", f.c.Phase("ns/y"))
	}
	bind(y)
	if f.c.Phase("ns/z") != Binding || f.c.Phase("ns/x") != Planned {
		t.Fatalf("after y bound: z %s, x %s; z queued before x's second turn", f.c.Phase("ns/z"), f.c.Phase("ns/x"))
	}
}

// A head that loses its place to a higher gang gives up the room it held,
// and the pods kept out of that room are woken to try it.
func TestRoomOfAFormerHeadWakesWhomItKeptOut(t *testing.T) {
	f, pods := newFixture(t, 3, 3, 3)
	occupant := st.MakePod().Name("occupant").Namespace("ns").UID("occupant").Node("n2").Req(map[v1.ResourceName]string{v1.ResourceCPU: "4"}).Obj()
	f.nodes[2].(*framework.NodeInfo).AddPod(occupant)
	for range 2 { // blocked, then head
		f.c.PreFilter(pods[0], f.pg, f.nodes)
	}
	if len(f.c.gangs["ns/g"].reserve) != 2 {
		t.Fatalf("the head should reserve the two free nodes, got %v", f.c.gangs["ns/g"].reserve)
	}
	kept := st.MakePod().Name("kept-out").Namespace("ns").UID("kept-out").Obj()
	f.c.Park(kept)
	// A gang of higher priority, too big for the cluster as it is, becomes
	// head.
	high, highPods := f.otherGang("high", 3, 3, "4")
	for _, p := range highPods {
		p.Spec.Priority = new(int32(1000))
	}
	woken := map[string]bool{}
	for range 2 {
		_, eff := f.c.PreFilter(highPods[0], high, f.nodes)
		for k := range eff.Activate {
			woken[k] = true
		}
	}
	if !f.c.gangs["ns/high"].headSince.Equal(f.clock.Now()) || len(f.c.gangs["ns/g"].reserve) != 0 {
		t.Fatalf("the higher gang is not head, or the former head still holds %v", f.c.gangs["ns/g"].reserve)
	}
	if !woken["ns/kept-out"] {
		t.Fatalf("the pod kept out of the former head's room was not woken: %v", woken)
	}
}
