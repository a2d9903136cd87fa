package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	nrtclientset "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/generated/clientset/versioned"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/numa"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/cpumanager"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/kubelet"
)

// numaCluster adds count nodes of zones NUMA zones of zoneCPUs each under
// a Topology Manager policy, with the sandbox's kubelet admitting pods on
// them as kubelet does and its node agent publishing their NRT objects. It
// returns the CPU manager, which knows each pod's zones.
//
// The kubelet admits a node's pods in the worst order for the scheduler:
// it holds back pods of half a zone or more, so that the small pods bound
// with them take the lowest numbered zones first.
//
// Options may change that: see numaFault.
func (e *env) numaCluster(prefix string, count, zones, zoneCPUs int, policy numa.Policy, faults ...numaFault) *cpumanager.Manager {
	e.t.Helper()
	var fault numaFault
	for _, f := range faults {
		fault = f
	}
	realCPUs := zoneCPUs
	if fault.kubeletZoneCPUs > 0 {
		realCPUs = fault.kubeletZoneCPUs
	}
	names := e.addNodes(prefix, count, nodeSpec{cpu: fmt.Sprint(zones * zoneCPUs), mem: "512Gi"})
	cpus := cpumanager.New()
	for _, n := range names {
		e.addNRT(n, zones, fmt.Sprint(zoneCPUs), string(policy))
		node := numa.Node{Policy: policy, Scope: numa.ScopeContainer}
		for z := range zones {
			node.Names = append(node.Names, fmt.Sprintf("node-%d", z))
			node.Capacity = append(node.Capacity, int64(realCPUs))
		}
		cpus.AddNode(n, node)
	}
	nrts, err := nrtclientset.NewForConfig(jsonConfig())
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	bigLast := func(p *v1.Pod) time.Duration {
		if p.Spec.Containers[0].Resources.Requests.Cpu().Value()*2 >= int64(zoneCPUs) {
			return bigPodsAdmittedAfter
		}
		return 0
	}
	kl := kubelet.New(e.client, kubelet.Options{Nodes: names, DefaultRunTime: time.Hour, Admitter: cpus, AdmitAfter: bigLast})
	done := make(chan struct{}, 2)
	go func() { _ = kl.Run(ctx); done <- struct{}{} }()
	go func() {
		if !fault.noAgent {
			cpus.RunAgent(ctx, nrts, 100*time.Millisecond)
		}
		done <- struct{}{}
	}()
	e.t.Cleanup(func() { cancel(); <-done; <-done })
	return cpus
}

// numaFault is what goes wrong in a numaCluster.
type numaFault struct {
	// kubeletZoneCPUs is the zones' real size, which the NRT objects then
	// misstate: kubelet rejects what the scheduler was told fits.
	kubeletZoneCPUs int
	// noAgent: no node agent publishes, so no pod is ever counted.
	noAgent bool
}

// bigPodsAdmittedAfter is how long the sandbox kubelet holds back large
// pods: long enough for the small pods bound in the same step to go first.
const bigPodsAdmittedAfter = 300 * time.Millisecond

// rejected lists the pods kubelet refused at admission.
func (e *env) rejected() []string {
	var out []string
	for _, p := range e.pods() {
		if p.Status.Phase == v1.PodFailed && p.Status.Reason != "" {
			out = append(out, p.Name+": "+p.Status.Reason)
		}
	}
	return out
}

// numaGang is a gang of Guaranteed pods with whole CPUs.
type numaGang struct {
	name     string
	members  int
	cpu      string
	priority int32
}

func (e *env) createNUMAGang(g numaGang) {
	e.t.Helper()
	e.createGang(g.name, int32(g.members), g.members, podSpec{cpu: g.cpu, mem: "1Gi", guaranteed: true, priority: g.priority})
}

// running counts each gang's running members.
func (e *env) running() map[string]int {
	out := map[string]int{}
	for _, p := range e.pods() {
		if p.Status.Phase == v1.PodRunning {
			out[p.Labels[podgroup.Label]]++
		}
	}
	return out
}

// waitRunning waits until the gangs run whole, failing at once if kubelet
// rejects a pod.
func (e *env) waitRunning(gangs ...numaGang) {
	e.t.Helper()
	defer func() {
		if e.t.Failed() {
			e.dumpPods()
		}
	}()
	e.waitFor(fmt.Sprintf("%d gangs running, or a pod rejected", len(gangs)), bindBy, func() bool {
		if len(e.rejected()) > 0 {
			return true
		}
		running := e.running()
		for _, g := range gangs {
			if running[g.name] < g.members {
				return false
			}
		}
		return true
	})
	if r := e.rejected(); len(r) > 0 {
		e.t.Fatalf("kubelet rejected %v; bound per gang %v", r, e.bound())
	}
}

func (e *env) dumpPods() {
	for _, p := range e.pods() {
		e.t.Logf("%s node=%s phase=%s reason=%s", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Reason)
	}
}

// zonesFull checks that every zone holds exactly zoneCPUs, by the zones
// kubelet (the sandbox's) chose, not by what the scheduler planned.
func (e *env) zonesFull(cpus *cpumanager.Manager, zoneCPUs int64) {
	e.t.Helper()
	perZone := map[string]int64{}
	for _, p := range e.pods() {
		if p.Status.Phase != v1.PodRunning {
			continue
		}
		zones := cpus.Zones(&p)
		if len(zones) != 1 {
			e.t.Fatalf("pod %s got zones %v", p.Name, zones)
		}
		perZone[p.Spec.NodeName+"/"+zones[0]] += p.Spec.Containers[0].Resources.Requests.Cpu().Value()
	}
	for z, c := range perZone {
		if c != zoneCPUs {
			e.t.Errorf("zone %s holds %d CPUs; the mix fills every zone exactly: %v", z, c, perZone)
		}
	}
}

// TestNUMAPackableMixPlacedWithoutRejections: gangs of Guaranteed pods of
// 12 and 4 CPUs, which pair exactly into 16-CPU zones, fill 6 nodes of two
// zones exactly. In every arrival order in which a perfect packing can
// exist, all gangs run, each zone holds a 12 and a 4, and kubelet (the
// sandbox's, which admits as kubelet does) rejects no pod.
//
// No order admits all the small pods first: kubelet gives a pod the lowest
// numbered zone with room, so a second small pod joins the first in zone 0
// while zone 0 has room, and that zone can no longer take a large one.
// That case is TestNUMASmallPodsFirstWaitWithoutRejections.
func TestNUMAPackableMixPlacedWithoutRejections(t *testing.T) {
	large := func(i int) numaGang { return numaGang{name: fmt.Sprintf("large-%d", i), members: 4, cpu: "12"} }
	small := func(i int) numaGang { return numaGang{name: fmt.Sprintf("small-%d", i), members: 4, cpu: "4"} }
	all := []numaGang{large(0), large(1), large(2), small(0), small(1), small(2)}
	// All pending at once, as a batch framework submits them: the
	// scheduler starts after every pod exists.
	allAtOnce := func(e *env, gangs []numaGang) {
		e.stopScheduler()
		for _, g := range gangs {
			e.createNUMAGang(g)
		}
		e.startScheduler()
	}
	// packs runs gangs submitted all at once on 6 nodes of two 16-CPU
	// zones, and checks that each zone ends with a 12 and a 4.
	packs := func(t *testing.T, gangs []numaGang) {
		e := newEnv(t)
		cpus := e.numaCluster("numa", 6, 2, 16, numa.PolicySingleNUMANode)
		allAtOnce(e, gangs)
		e.waitRunning(gangs...)
		e.zonesFull(cpus, 16)
	}
	t.Run("all at once, large gangs created first", func(t *testing.T) { packs(t, all) })
	t.Run("all at once, created alternately", func(t *testing.T) {
		// Small gangs planned between large ones go into the room beside
		// the large pods, waiting for the node agent to count those, and
		// leave whole zones to the large gangs still waiting. Created in
		// the same second, gangs are queued by name: these names keep the
		// alternation.
		var gangs []numaGang
		for i := range 3 {
			l, s := large(i), small(i)
			l.name, s.name = fmt.Sprintf("g%d-%s", 2*i, l.name), fmt.Sprintf("g%d-%s", 2*i+1, s.name)
			gangs = append(gangs, l, s)
		}
		packs(t, gangs)
	})
	t.Run("all at once, small gangs created first, large gangs of higher priority", func(t *testing.T) {
		var gangs []numaGang
		for i := range 3 {
			l := large(i)
			l.priority = 100
			gangs = append(gangs, small(i), l)
		}
		packs(t, gangs)
	})
	t.Run("one gang at a time, the large ones first", func(t *testing.T) {
		e := newEnv(t)
		cpus := e.numaCluster("numa", 6, 2, 16, numa.PolicySingleNUMANode)
		for _, g := range all {
			e.createNUMAGang(g)
			e.waitRunning(g)
		}
		e.zonesFull(cpus, 16)
	})
	t.Run("four zones of 8, restricted", func(t *testing.T) {
		// 6 + 2 pairs into an 8-CPU zone; 3 nodes of 4 zones hold 12 pairs.
		e := newEnv(t)
		cpus := e.numaCluster("numa", 3, 4, 8, numa.PolicyRestricted)
		gangs := []numaGang{
			{name: "six-0", members: 6, cpu: "6"}, {name: "six-1", members: 6, cpu: "6"},
			{name: "two-0", members: 6, cpu: "2"}, {name: "two-1", members: 6, cpu: "2"},
		}
		allAtOnce(e, gangs)
		e.waitRunning(gangs...)
		e.zonesFull(cpus, 8)
	})
}

// TestNUMAGangsOfMixedSizesNeverRejected: each gang is two 12-CPU and two
// 4-CPU pods, 32 CPUs, as much as a node holds. On one node kubelet would
// reject a large pod whenever the small ones are admitted first (as this
// kubelet does), so no gang may go to one node; every gang runs anyway.
func TestNUMAGangsOfMixedSizesNeverRejected(t *testing.T) {
	e := newEnv(t)
	e.numaCluster("numa", 6, 2, 16, numa.PolicySingleNUMANode)
	var gangs []numaGang
	e.stopScheduler()
	for i := range 3 {
		g := numaGang{name: fmt.Sprintf("mixed-%d", i), members: 4}
		gangs = append(gangs, g)
		e.createPodGroup(g.name, 4)
		for m, cpu := range []string{"12", "12", "4", "4"} {
			e.createPod(fmt.Sprintf("%s-%d", g.name, m), g.name, podSpec{cpu: cpu, mem: "1Gi", guaranteed: true})
		}
	}
	e.startScheduler()
	e.waitRunning(gangs...)
}

// TestNUMARunningPodsCountedOnceAfterRestart: a scheduler that starts
// finds pods running that the node agent has already counted, in objects
// written the very second they started. It must not count them again: the
// gang that needs the rest of each node would wait for an agent update
// that never comes.
func TestNUMARunningPodsCountedOnceAfterRestart(t *testing.T) {
	e := newEnv(t)
	e.stopScheduler()
	e.numaCluster("numa", 2, 2, 16, numa.PolicySingleNUMANode)
	nrts, err := nrtclientset.NewForConfig(jsonConfig())
	if err != nil {
		t.Fatal(err)
	}
	for i, node := range e.nodes {
		e.createPod(fmt.Sprintf("running-%d", i), "", podSpec{cpu: "16", mem: "1Gi", guaranteed: true,
			mutate: func(p *v1.Pod) { p.Spec.NodeName = node }})
	}
	e.waitFor("both pods running and published", bindBy, func() bool {
		if e.running()[""] != 2 {
			return false
		}
		for _, node := range e.nodes {
			obj, err := nrts.TopologyV1alpha2().NodeResourceTopologies().Get(e.ctx, node, metav1.GetOptions{})
			if err != nil || obj.Zones[0].Resources[0].Available.Value() != 0 {
				return false
			}
		}
		return true
	})
	e.startScheduler()
	g := numaGang{name: "rest", members: 2, cpu: "16"}
	e.createNUMAGang(g)
	e.waitRunning(g)
}

// TestKubeletRejectionReportedAndDisrupts: when kubelet rejects a member
// anyway (here the node agent misstates the zones: 16 CPUs each where
// kubelet has 8), the PodGroup says which node rejected whom and what the
// scheduler knew of its zones, and the gang's disruption mode applies: in
// mode All the members left are evicted, for the job to start whole again.
func TestKubeletRejectionReportedAndDisrupts(t *testing.T) {
	e := newEnv(t)
	e.startController()
	e.numaCluster("numa", 1, 2, 16, numa.PolicySingleNUMANode, numaFault{kubeletZoneCPUs: 8})
	e.createPodGroup("lied", 3, func(pg *v1alpha1.PodGroup) {
		pg.Annotations = map[string]string{podgroup.AnnotationDisruptionMode: "All"}
	})
	e.createPod("lied-0", "lied", podSpec{cpu: "12", mem: "1Gi", guaranteed: true})
	e.createPod("lied-1", "lied", podSpec{cpu: "1"})
	e.createPod("lied-2", "lied", podSpec{cpu: "1"})
	e.waitEvent("PodGroup", "lied", "RejectedByKubelet: kubelet on node "+e.nodes[0]+" rejected member lied-0 (TopologyAffinityError", bindBy)
	var msg string
	for _, ev := range e.events("PodGroup", "lied") {
		if strings.HasPrefix(ev, "RejectedByKubelet") {
			msg = ev
		}
	}
	for _, want := range []string{"it asks 12 exclusive CPUs", "node-0 16 of 16 CPUs", "node-1 16 of 16 CPUs", "single-numa-node policy", "Resources cannot be allocated with Topology locality"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the Event does not say %q: %s", want, msg)
		}
	}
	e.waitEvent("PodGroup", "lied", "disruption mode All: evicting the 2 remaining members", bindBy)
	e.waitFor("the members left evicted", bindBy, func() bool {
		got := e.evicted("lied")
		return got["lied-1"] && got["lied-2"]
	})
}

// uncountedBeside runs a gang of two 12-CPU pods on one of 3 nodes of two
// 16-CPU zones whose agent never publishes (so those pods are never
// counted), then submits gangs together.
func uncountedBeside(t *testing.T, gangs ...numaGang) *env {
	e := newEnv(t)
	e.numaCluster("numa", 3, 2, 16, numa.PolicySingleNUMANode, numaFault{noAgent: true})
	first := numaGang{name: "first", members: 2, cpu: "12"}
	e.createNUMAGang(first)
	e.waitRunning(first)
	e.stopScheduler()
	for _, g := range gangs {
		e.createNUMAGang(g)
	}
	e.startScheduler()
	return e
}

// TestNUMAWaitForAgentIsBounded: a small pinned gang, with a larger one
// waiting, holds back to go beside pods the node agent has yet to count;
// an agent that never publishes must not hold it for ever.
func TestNUMAWaitForAgentIsBounded(t *testing.T) {
	// 5 pods of 12 CPUs fit the 4 whole zones left only once the first
	// gang is gone: that gang waits, at the head of the queue, and holds
	// room only against gangs of no higher priority than its own.
	small := numaGang{name: "small", members: 2, cpu: "4", priority: 100}
	e := uncountedBeside(t, numaGang{name: "large", members: 5, cpu: "12"}, small)
	e.waitEvent("PodGroup", "small", "WaitingForNodeAgent", bindBy)
	e.waitRunning(small)
	if n := e.bound()["large"]; n != 0 {
		t.Fatalf("the large gang cannot fit yet, and %d of its pods are bound", n)
	}
}

// TestNUMANeverFittingGangClaimsNoZones: a gang that could not fit even an
// empty cluster waits for no room, so smaller gangs do not hold back to
// leave whole zones to it.
func TestNUMANeverFittingGangClaimsNoZones(t *testing.T) {
	small := numaGang{name: "small", members: 2, cpu: "4"}
	e := uncountedBeside(t, numaGang{name: "huge", members: 7, cpu: "12"}, small) // 7 pods, 6 zones
	e.waitEvent("PodGroup", "huge", "gang can never fit this cluster", bindBy)
	e.waitRunning(small)
	for _, ev := range e.events("PodGroup", "small") {
		if strings.HasPrefix(ev, "WaitingForNodeAgent") {
			t.Fatalf("the small gang held back for a gang that can never fit: %s", ev)
		}
	}
}

// TestNUMASmallPodsFirstWaitWithoutRejections: when small pods are admitted
// first no perfect packing exists (kubelet fills zone 0 with them), so not
// every gang fits. The ones that do run; the others wait, whole and with a
// reason, and no pod is ever sent to a kubelet that rejects it. Once the
// small gangs finish, the large ones run.
func TestNUMASmallPodsFirstWaitWithoutRejections(t *testing.T) {
	e := newEnv(t)
	e.numaCluster("numa", 6, 2, 16, numa.PolicySingleNUMANode)
	var smalls, larges []numaGang
	for i := range 3 {
		smalls = append(smalls, numaGang{name: fmt.Sprintf("small-%d", i), members: 4, cpu: "4", priority: 100})
		larges = append(larges, numaGang{name: fmt.Sprintf("large-%d", i), members: 4, cpu: "12"})
	}
	for _, g := range smalls {
		e.createNUMAGang(g)
	}
	e.waitRunning(smalls...)
	for _, g := range larges {
		e.createNUMAGang(g)
	}
	minOf := map[string]int{}
	for _, g := range append(smalls, larges...) {
		minOf[g.name] = g.members
	}
	e.waitFor("two large gangs running", bindBy, func() bool {
		r := e.running()
		n := 0
		for _, g := range larges {
			if r[g.name] == g.members {
				n++
			}
		}
		return n == 2 && len(e.rejected()) == 0
	})
	e.holdsFor("no partial gang, no rejection, the third large gang waiting", 2*time.Second, func() bool {
		return e.noPartialGangs(minOf)() && len(e.rejected()) == 0
	})
	waiting := ""
	for _, g := range larges {
		if e.bound()[g.name] == 0 {
			waiting = g.name
		}
	}
	if waiting == "" {
		t.Fatalf("12 large pods cannot all fit beside 12 small ones admitted first; bound %v", e.bound())
	}
	e.waitEvent("PodGroup", waiting, "WaitingForRoom", bindBy)
	for _, g := range smalls {
		e.deleteGangPods(g.name)
	}
	e.waitRunning(larges...)
}
