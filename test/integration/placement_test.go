package integration

import (
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

const rackLabel = "topology.kubernetes.io/rack"

func rack(name string) nodeSpec {
	return nodeSpec{cpu: "8", mem: "32Gi", labels: map[string]string{rackLabel: name, "topology.kubernetes.io/zone": "z1"}}
}

// fill binds one ordinary pod of cpu on each named node.
func (e *env) fill(nodes []string, cpu string) {
	e.t.Helper()
	for i, n := range nodes {
		e.createPod(fmt.Sprintf("filler-%s-%d", e.ns[:3], i), "", podSpec{cpu: cpu, mutate: func(p *v1.Pod) { p.Spec.NodeName = n }})
	}
}

func racksUsed(e *env, gang string) map[string]bool {
	out := map[string]bool{}
	for _, p := range e.pods() {
		if p.Labels[podgroup.Label] == gang && p.Spec.NodeName != "" {
			out[rackOfNode(e, p.Spec.NodeName)] = true
		}
	}
	return out
}

func rackOfNode(e *env, node string) string {
	n, err := e.client.CoreV1().Nodes().Get(e.ctx, node, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return n.Labels[rackLabel]
}

// Contract 4: the gang goes to the rack it fills best, even when another
// rack has more free room.
func TestGangLandsInTightestRack(t *testing.T) {
	e := newEnv(t)
	r1 := e.addNodes("ra", 4, rack("ra"))
	e.addNodes("rb", 4, rack("rb"))
	e.fill(r1, "4") // ra: 16 CPU free, rb: 32 CPU free
	e.createGang("job", 4, 4, podSpec{cpu: "4"})
	e.waitGangBound("job", 4, bindBy)
	if got := racksUsed(e, "job"); len(got) != 1 || !got["ra"] {
		t.Fatalf("want the 16-CPU gang in rack ra, which it fills exactly; got racks %v", got)
	}
	e.waitEvent("PodGroup", "job", "in rack ra", 30*time.Second)
}

// A gang that must fit one rack waits, says so, and goes when a rack frees.
func TestRequiredRackWaitsForRoom(t *testing.T) {
	e := newEnv(t)
	ra := e.addNodes("ra", 3, rack("ra"))
	rb := e.addNodes("rb", 3, rack("rb"))
	e.fill([]string{ra[0], rb[0]}, "8") // 16 CPU free per rack, 32 in all
	e.createPodGroup("job", 3, func(pg *v1alpha1.PodGroup) {
		pg.Annotations = map[string]string{podgroup.AnnotationRequiredTopology: rackLabel}
	})
	for i := range 3 {
		e.createPod(fmt.Sprintf("job-%d", i), "job", podSpec{cpu: "8"})
	}
	e.waitEvent("PodGroup", "job", "no single rack of the 2 holds the gang", 30*time.Second)
	e.holdsFor("nothing bound", time.Second, func() bool { return e.bound()["job"] == 0 })
	e.deletePods(fmt.Sprintf("filler-%s-0", e.ns[:3]))
	e.waitGangBound("job", 3, bindBy)
	if got := racksUsed(e, "job"); len(got) != 1 || !got["ra"] {
		t.Fatalf("want the gang in the rack that freed (ra), got %v", got)
	}
}

// A bad topology annotation is reported, not ignored.
func TestUnknownTopologyLevelIsReported(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 1, rack("ra"))
	e.createPodGroup("job", 1, func(pg *v1alpha1.PodGroup) {
		pg.Annotations = map[string]string{podgroup.AnnotationRequiredTopology: "example.com/row"}
	})
	e.createPod("job-0", "job", podSpec{cpu: "1"})
	e.waitEvent("PodGroup", "job", `"example.com/row" is not a topology level`, 30*time.Second)
	if e.bound()["job"] != 0 {
		t.Fatal("a gang with an invalid constraint must not be placed")
	}
}

// Gangs pack onto the ideal number of nodes where sizes divide evenly.
func TestGangUsesIdealNodeCount(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 8, nodeSpec{cpu: "16", mem: "64Gi"})
	e.createGang("job", 12, 12, podSpec{cpu: "4"}) // 48 CPU: 3 nodes of 16
	e.waitGangBound("job", 12, bindBy)
	nodes := map[string]bool{}
	for _, p := range e.pods() {
		nodes[p.Spec.NodeName] = true
	}
	if len(nodes) != 3 {
		t.Fatalf("want 3 nodes for 48 CPU on 16-CPU nodes, got %d", len(nodes))
	}
}

// With single-numa-node, a Guaranteed pod that fits the node's free CPU but
// no single zone's is never placed there; a node takes exactly as many such
// pods as its zones hold. The NRT objects are created after the scheduler
// started; a node without one is placed by capacity alone.
func TestSingleNUMANodeNeverGetsPodKubeletWouldReject(t *testing.T) {
	e := newEnv(t)
	numa := e.addNodes("numa", 1, nodeSpec{cpu: "16", mem: "64Gi"})
	e.addNRT(numa[0], 2, "8", "single-numa-node")
	time.Sleep(time.Second) // let the informer see it
	for i := range 3 {
		e.createPod(fmt.Sprintf("g-%d", i), "", podSpec{cpu: "5", mem: "1Gi", guaranteed: true})
	}
	e.waitFor("two pods bound", bindBy, func() bool { return e.bound()[""] == 2 })
	e.holdsFor("the third 5-CPU pod stays off the node (3 CPU left per zone)", 2*time.Second, func() bool { return e.bound()[""] == 2 })

	// A node without NRT takes it by capacity.
	plain := e.addNodes("plain", 1, nodeSpec{cpu: "16", mem: "64Gi"})
	e.waitFor("third pod bound", bindBy, func() bool { return e.bound()[""] == 3 })
	if n := e.nodeOf(); n["g-0"] == plain[0] && n["g-1"] == plain[0] || (n["g-0"] != plain[0] && n["g-1"] != plain[0] && n["g-2"] != plain[0]) {
		t.Fatalf("want exactly the pod that did not fit a zone on the plain node: %v", n)
	}

	// A gang of such pods plans by zone: 2 per NUMA node, so 4 members
	// take both zones of two fresh nodes.
	fresh := e.addNodes("numa2", 2, nodeSpec{cpu: "16", mem: "64Gi"})
	for _, n := range fresh {
		e.addNRT(n, 2, "8", "single-numa-node")
	}
	time.Sleep(time.Second)
	e.createGang("mpi", 4, 4, podSpec{cpu: "6", mem: "1Gi", guaranteed: true})
	e.waitGangBound("mpi", 4, bindBy)
	perNode := map[string]int{}
	for _, p := range e.pods() {
		if p.Labels[podgroup.Label] == "mpi" {
			perNode[p.Spec.NodeName]++
		}
	}
	for n, c := range perNode {
		if c > 2 {
			t.Fatalf("node %s got %d pods of 6 CPU with two 8-CPU zones: kubelet would reject one", n, c)
		}
	}
}
