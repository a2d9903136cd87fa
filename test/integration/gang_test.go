package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

const (
	settle = 3 * time.Second // window in which nothing must change
	bindBy = time.Minute     // generous bound for things that must happen
)

// Contract 1: all or nothing, and a gang that fits is bound completely.
func TestGangThatFitsIsBoundCompletely(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 4, nodeSpec{cpu: "8", mem: "32Gi"})
	e.createGang("mpi", 8, 8, podSpec{cpu: "4"})
	e.waitGangBound("mpi", 8, bindBy)
	e.waitEvent("PodGroup", "mpi", "placed 8 pods on 4 nodes", 30*time.Second)
}

// Contract 1 and 5: a gang one pod too big binds nothing, says why, and
// completes when a node is added.
func TestGangOnePodTooBigWaitsForNode(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 2, nodeSpec{cpu: "8", mem: "32Gi"})
	e.createGang("big", 5, 5, podSpec{cpu: "4"})
	e.waitEvent("PodGroup", "big", "only 4 of the 5 members needed can be placed at once", 30*time.Second)
	e.holdsFor("nothing bound", settle, func() bool { return e.bound()["big"] == 0 })
	e.addNodes("extra", 1, nodeSpec{cpu: "8", mem: "32Gi"})
	e.waitGangBound("big", 5, bindBy)
}

// Contract 3: no member goes ahead of the quorum; the last member's arrival
// releases all of them.
func TestNoMemberBindsBeforeQuorum(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 2, nodeSpec{cpu: "16", mem: "32Gi"})
	e.createPodGroup("job", 4)
	for i := range 3 {
		e.createPod(fmt.Sprintf("job-%d", i), "job", podSpec{cpu: "2"})
	}
	e.waitEvent("PodGroup", "job", "3/4 members exist", 30*time.Second)
	e.holdsFor("no member bound", settle, func() bool { return e.bound()["job"] == 0 })
	e.createPod("job-3", "job", podSpec{cpu: "2"})
	e.waitGangBound("job", 4, bindBy)
}

// Contract 2: gangs compete for room for only some of them, pods created
// interleaved: whole gangs are bound, the others hold nothing, and they
// complete in queue order as room frees.
func TestCompetingGangsBindWholeOrNothingInQueueOrder(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 4, nodeSpec{cpu: "8", mem: "32Gi"})
	gangs := []string{"g0", "g1", "g2", "g3"}
	minOf := map[string]int{}
	for _, g := range gangs {
		e.createPodGroup(g, 4)
		minOf[g] = 4
	}
	for i := range 4 {
		for _, g := range gangs {
			e.createPod(fmt.Sprintf("%s-%d", g, i), g, podSpec{cpu: "4"})
		}
	}
	// Room for two gangs of 16 CPU in 32.
	e.waitFor("two whole gangs bound", bindBy, func() bool {
		b := e.bound()
		full := 0
		for _, g := range gangs {
			if b[g] == 4 {
				full++
			}
		}
		return full == 2
	})
	e.holdsFor("no partial gang", settle, e.noPartialGangs(minOf))
	b := e.bound()
	if b["g0"] != 4 || b["g1"] != 4 {
		t.Fatalf("want the two oldest gangs g0 and g1 placed first, got %v", b)
	}
	e.deleteGangPods("g0")
	e.waitGangBound("g2", 4, bindBy)
	if e.bound()["g3"] != 0 {
		t.Fatalf("g3 must still hold nothing: %v", e.bound())
	}
	e.deleteGangPods("g1")
	e.waitGangBound("g3", 4, bindBy)
	e.holdsFor("no partial gang", time.Second, e.noPartialGangs(minOf))
}

// Contract 2: the head of the queue reserves room as it frees, so a stream
// of younger small gangs cannot starve a big one; no small gang is left
// partial.
func TestBigGangNotStarvedByYoungerSmallGangs(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 4, nodeSpec{cpu: "8", mem: "32Gi"})
	minOf := map[string]int{"big": 4}
	for i := range 4 {
		name := fmt.Sprintf("old%d", i)
		e.createGang(name, 2, 2, podSpec{cpu: "4"})
		minOf[name] = 2
	}
	for i := range 4 {
		e.waitGangBound(fmt.Sprintf("old%d", i), 2, bindBy)
	}
	e.createGang("big", 4, 4, podSpec{cpu: "8"})
	e.waitEvent("PodGroup", "big", "first in line", 30*time.Second)
	// Make sure every younger gang is younger by the PodGroup clock.
	time.Sleep(1100 * time.Millisecond)
	for i := range 4 {
		young := fmt.Sprintf("young%d", i)
		e.createGang(young, 2, 2, podSpec{cpu: "4"})
		minOf[young] = 2
		e.deleteGangPods(fmt.Sprintf("old%d", i))
		e.holdsFor("younger gangs take no reserved room", time.Second, func() bool {
			b := e.bound()
			for j := 0; j <= i; j++ {
				if b[fmt.Sprintf("young%d", j)] != 0 {
					return false
				}
			}
			return true
		})
	}
	e.waitGangBound("big", 4, bindBy)
	e.holdsFor("no partial gang", time.Second, e.noPartialGangs(minOf))
	e.deleteGangPods("big")
	for i := range 4 {
		e.waitGangBound(fmt.Sprintf("young%d", i), 2, bindBy)
	}
}

// Contract 5: a gang that holds room past its scheduleTimeoutSeconds lets
// it go, says so, and younger gangs get it; the gang itself holds nothing.
func TestTimeoutReleasesReservedRoom(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 2, nodeSpec{cpu: "8", mem: "32Gi"})
	e.createGang("old", 1, 1, podSpec{cpu: "8"})
	e.waitGangBound("old", 1, bindBy)
	e.createPodGroup("big", 2, func(pg *v1alpha1.PodGroup) { pg.Spec.ScheduleTimeoutSeconds = ptr.To[int32](4) })
	for i := range 2 {
		e.createPod(fmt.Sprintf("big-%d", i), "big", podSpec{cpu: "8"})
	}
	e.waitEvent("PodGroup", "big", "first in line", 30*time.Second)
	time.Sleep(1100 * time.Millisecond)
	// The free node is reserved for "big": a younger gang waits...
	e.createGang("young", 1, 1, podSpec{cpu: "8"})
	e.holdsFor("young waits behind the reservation", 2*time.Second, func() bool { return e.bound()["young"] == 0 })
	// ...until the reservation times out.
	e.waitEvent("PodGroup", "big", "released the room it reserved", 30*time.Second)
	e.waitGangBound("young", 1, bindBy)
	if e.bound()["big"] != 0 {
		t.Fatalf("the timed-out gang must hold nothing: %v", e.bound())
	}
}

// Contract 6: after a restart, members already bound count toward the quorum.
func TestRestartCountsBoundMembers(t *testing.T) {
	e := newEnv(t)
	nodes := e.addNodes("n", 2, nodeSpec{cpu: "8", mem: "32Gi"})
	e.stopScheduler()
	e.createPodGroup("job", 4)
	for i := range 2 {
		e.createPod(fmt.Sprintf("job-%d", i), "job", podSpec{cpu: "4", mutate: func(p *v1.Pod) { p.Spec.NodeName = nodes[0] }})
	}
	for i := 2; i < 4; i++ {
		e.createPod(fmt.Sprintf("job-%d", i), "job", podSpec{cpu: "4"})
	}
	e.startScheduler()
	e.waitGangBound("job", 4, bindBy)
	for _, p := range e.pods() {
		if p.Name == "job-2" || p.Name == "job-3" {
			if p.Spec.NodeName != nodes[1] {
				t.Errorf("%s went to %q, want the free node %s", p.Name, p.Spec.NodeName, nodes[1])
			}
		}
	}
}

// Contract 7: pods beyond minMember schedule as room allows once the gang
// started, and a lowered minMember lets a waiting gang go.
func TestElasticGang(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 2, nodeSpec{cpu: "6", mem: "32Gi"})
	// Room for 2 pods of 4 CPU (one per node); minMember 2 of 3 pods.
	e.createGang("elastic", 2, 3, podSpec{cpu: "4"})
	e.waitGangBound("elastic", 2, bindBy)
	e.holdsFor("the extra member waits for room", settle, func() bool { return e.bound()["elastic"] == 2 })
	e.addNodes("more", 1, nodeSpec{cpu: "6", mem: "32Gi"})
	e.waitGangBound("elastic", 3, bindBy)
	e.checkScheduledEvents("elastic", 3)
	// A gang whose members all went away is a gang again: a job that
	// recreates its workers under the same PodGroup gets them placed
	// together, not one by one.
	e.deleteGangPods("elastic")
	e.waitFor("elastic members gone", bindBy, func() bool { return e.bound()["elastic"] == 0 })
	e.createPod("elastic-late-0", "elastic", podSpec{cpu: "4"})
	e.holdsFor("a lone new member waits for its sibling", settle, func() bool { return e.bound()["elastic"] == 0 })
	e.createPod("elastic-late-1", "elastic", podSpec{cpu: "4"})
	e.waitGangBound("elastic", 2, bindBy)

	e.createGang("shrink", 3, 2, podSpec{cpu: "1"})
	e.waitEvent("PodGroup", "shrink", "2/3 members exist", 30*time.Second)
	pg, err := e.pgs.SchedulingV1alpha1().PodGroups(e.ns).Get(e.ctx, "shrink", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pg.Spec.MinMember = 2
	if _, err := e.pgs.SchedulingV1alpha1().PodGroups(e.ns).Update(e.ctx, pg, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitGangBound("shrink", 2, bindBy)
}

// Contract 8: ordinary pods keep scheduling beside waiting gangs, on both
// profiles.
func TestOrdinaryPodsScheduleBesideGangs(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 2, nodeSpec{cpu: "8", mem: "32Gi"})
	e.createGang("never", 3, 3, podSpec{cpu: "8"}) // can never fit 2 nodes
	e.createGang("fits", 2, 2, podSpec{cpu: "2"})
	for i := range 4 {
		e.createPod(fmt.Sprintf("web-%d", i), "", podSpec{cpu: "1"})
		e.createPod(fmt.Sprintf("ray-%d", i), "", podSpec{cpu: "1", scheduler: "scheduler-plugins-scheduler"})
	}
	e.waitFor("ordinary pods bound", bindBy, func() bool { return e.bound()[""] == 8 })
	e.waitGangBound("fits", 2, bindBy)
	e.waitEvent("PodGroup", "never", "can never fit", 30*time.Second)
	if e.bound()["never"] != 0 {
		t.Fatal("a gang that cannot fit must hold nothing")
	}
}

// Pods that arrive before their PodGroup wait, say so, and go once it exists.
func TestPodsBeforePodGroup(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 1, nodeSpec{cpu: "8", mem: "32Gi"})
	for i := range 2 {
		e.createPod(fmt.Sprintf("early-%d", i), "early", podSpec{cpu: "1"})
	}
	e.waitEvent("Pod", "early-0", "waiting for PodGroup "+e.ns+"/early (podgroups.scheduling.x-k8s.io) to exist", 30*time.Second)
	e.holdsFor("nothing bound", time.Second, func() bool { return e.bound()["early"] == 0 })
	e.createPodGroup("early", 2)
	e.waitGangBound("early", 2, bindBy)
}

// Scheduling-gated pods do not count toward the quorum.
func TestGatedPodsDoNotCount(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 1, nodeSpec{cpu: "8", mem: "32Gi"})
	e.createPodGroup("gated", 3)
	e.createPod("gated-0", "gated", podSpec{cpu: "1"})
	e.createPod("gated-1", "gated", podSpec{cpu: "1"})
	e.createPod("gated-2", "gated", podSpec{cpu: "1", mutate: func(p *v1.Pod) {
		p.Spec.SchedulingGates = []v1.PodSchedulingGate{{Name: "example.com/hold"}}
	}})
	e.waitEvent("PodGroup", "gated", "2/3 members exist (1 more scheduling-gated)", 30*time.Second)
	e.holdsFor("nothing bound", time.Second, func() bool { return e.bound()["gated"] == 0 })
	p, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, "gated-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Spec.SchedulingGates = nil
	if _, err := e.client.CoreV1().Pods(e.ns).Update(e.ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitGangBound("gated", 3, bindBy)
}

// PodGroups of the same name in different namespaces are different gangs.
func TestSameNameInOtherNamespaceIsAnotherGang(t *testing.T) {
	a := newEnv(t)
	a.addNodes("n", 1, nodeSpec{cpu: "8", mem: "32Gi"})
	b := &env{t: t, ctx: a.ctx, client: a.client, pgs: a.pgs, ns: a.ns + "-b"}
	if _, err := a.client.CoreV1().Namespaces().Create(a.ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: b.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.cleanup)
	a.createGang("job", 2, 2, podSpec{cpu: "1"})
	b.createPodGroup("job", 2)
	b.createPod("job-0", "job", podSpec{cpu: "1"})
	a.waitGangBound("job", 2, bindBy)
	b.holdsFor("the other namespace's gang waits for its own members", time.Second, func() bool { return b.bound()["job"] == 0 })
	b.createPod("job-1", "job", podSpec{cpu: "1"})
	b.waitGangBound("job", 2, bindBy)
}

// A gang that fits only by the sum of free room, not by placement, is
// refused and holds nothing.
func TestGangThatFitsOnlyBySumIsRefused(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 4, nodeSpec{cpu: "4", mem: "32Gi"})
	// Fill 1 CPU on every node: 12 CPU free in total, 3 per node.
	for i := range 4 {
		e.createPod(fmt.Sprintf("filler-%d", i), "", podSpec{cpu: "1"})
	}
	e.waitFor("fillers bound", bindBy, func() bool { return e.bound()[""] == 4 })
	e.createGang("wide", 3, 3, podSpec{cpu: "4"})
	e.waitEvent("PodGroup", "wide", "4 Insufficient cpu", 30*time.Second)
	e.holdsFor("nothing bound", time.Second, func() bool { return e.bound()["wide"] == 0 })
	// Nothing is held for it: an ordinary pod still takes free room.
	e.createPod("late", "", podSpec{cpu: "3"})
	e.waitFor("ordinary pod bound", bindBy, func() bool { return e.bound()[""] == 5 })
}

// A PodGroup deleted while its gang holds room releases that room.
func TestDeletedPodGroupReleasesRoom(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 2, nodeSpec{cpu: "8", mem: "32Gi"})
	e.createGang("old", 1, 1, podSpec{cpu: "8"})
	e.waitGangBound("old", 1, bindBy)
	e.createGang("big", 2, 2, podSpec{cpu: "8"})
	e.waitEvent("PodGroup", "big", "first in line", 30*time.Second)
	time.Sleep(1100 * time.Millisecond)
	e.createPod("younger", "", podSpec{cpu: "8"})
	e.holdsFor("the ordinary pod waits behind the reservation", 2*time.Second, func() bool { return e.bound()[""] == 0 })
	if err := e.pgs.SchedulingV1alpha1().PodGroups(e.ns).Delete(e.ctx, "big", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor("ordinary pod bound", bindBy, func() bool { return e.bound()[""] == 1 })
	e.waitEvent("Pod", "big-0", "waiting for PodGroup", 30*time.Second)
	if e.bound()["big"] != 0 {
		t.Fatal("members of a deleted PodGroup must not be placed")
	}
}

// Invalid plugin args stop the scheduler with the field named.
func TestInvalidArgsRefuseToStart(t *testing.T) {
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"defaultScheduleTimeoutSeconds": -5}, "defaultScheduleTimeoutSeconds"},
		{map[string]any{"scheduleTimeout": 5}, `unknown field "scheduleTimeout"`},
	} {
		e := &env{t: t, args: tc.args}
		_, err := cp.StartScheduler(t.Context(), e.schedulerConfig())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("args %v: want an error naming %q, got %v", tc.args, tc.want, err)
		}
	}
}

var _ = podgroup.Label

// The plan checks the predicates that decide most placements, not all of
// them: a member's own cycle runs the full Filter chain on its planned node.
// When that refuses (here NodePorts, which the planner does not model), the
// plan is dropped, waiting members are released, and the gang replans
// without that node for that member until it fits.
func TestFilterFailureOnPlannedNodeReplans(t *testing.T) {
	e := newEnv(t)
	withPort := func(p *v1.Pod) {
		p.Spec.Containers[0].Ports = []v1.ContainerPort{{ContainerPort: 9000, HostPort: 9000, Protocol: v1.ProtocolTCP}}
	}
	busy := e.addNodes("busy", 1, nodeSpec{cpu: "4", mem: "32Gi"}) // tightest: the planner's first choice
	e.addNodes("free", 2, nodeSpec{cpu: "16", mem: "32Gi"})
	e.createPod("holder", "", podSpec{cpu: "1", mutate: func(p *v1.Pod) { withPort(p); p.Spec.NodeName = busy[0] }})
	e.createGang("ported", 2, 2, podSpec{cpu: "1", mutate: withPort})
	e.waitGangBound("ported", 2, 2*bindBy)
	e.waitEvent("PodGroup", "ported", "replanning the gang", 30*time.Second)
	nodes := map[string]bool{}
	for _, p := range e.pods() {
		if p.Labels[podgroup.Label] == "ported" {
			if p.Spec.NodeName == busy[0] {
				t.Fatalf("%s placed where its host port is taken", p.Name)
			}
			nodes[p.Spec.NodeName] = true
		}
	}
	if len(nodes) != 2 {
		t.Fatalf("two members with the same host port need two nodes, got %v", nodes)
	}
}

// checkScheduledEvents checks where the placements of a gang's pods were
// reported: the members released together in the PodGroup's Placed Event
// and not each on its own pod, a member placed after the gang started in
// kube-scheduler's Scheduled Event on the pod.
func (e *env) checkScheduledEvents(gang string, pods int) {
	e.t.Helper()
	e.waitEvent("PodGroup", gang, "placed ", 30*time.Second)
	var placed string
	for _, ev := range e.events("PodGroup", gang) {
		if strings.HasPrefix(ev, "Placed: ") {
			placed = ev
		}
	}
	var inPlaced, alone []string
	for i := range pods {
		name := fmt.Sprintf("%s-%d", gang, i)
		if strings.Contains(placed, name) {
			inPlaced = append(inPlaced, name)
		} else {
			alone = append(alone, name)
		}
	}
	if len(inPlaced) == 0 || len(alone) == 0 {
		e.t.Fatalf("want members both in the Placed Event and placed alone; Placed Event %q", placed)
	}
	// The Scheduled Events of members placed alone come after those that
	// the released members would have had: once they show, the others'
	// absence is not a matter of waiting longer.
	for _, name := range alone {
		e.waitEvent("Pod", name, "Successfully assigned", 30*time.Second)
	}
	for _, name := range inPlaced {
		for _, ev := range e.events("Pod", name) {
			if strings.HasPrefix(ev, "Scheduled: ") {
				e.t.Errorf("member %s named in the Placed Event also got %q", name, ev)
			}
		}
	}
}

// A PodGroup's minResources, which the operators fill in, is not what
// Lockstep decides by: the PodGroup says so, and a gang whose minResources
// exceed the cluster is placed all the same when its members fit.
func TestMinResourcesNotUsedSaysSo(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 1, nodeSpec{cpu: "8", mem: "32Gi"})
	e.createPodGroup("mr", 2, func(pg *v1alpha1.PodGroup) {
		pg.Spec.MinResources = v1.ResourceList{v1.ResourceCPU: resource.MustParse("64")}
	})
	e.createPod("mr-0", "mr", podSpec{cpu: "2"})
	e.createPod("mr-1", "mr", podSpec{cpu: "2"})
	e.waitGangBound("mr", 2, bindBy)
	e.waitEvent("PodGroup", "mr", "MinResourcesNotUsed: minResources (cpu: 64) is not used", bindBy)
}
