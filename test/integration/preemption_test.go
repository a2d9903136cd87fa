package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/lockstep-sched/lockstep/test/teststand"
)

// An ordinary pod of high priority preempts ordinary pods of lower
// priority, as with the default scheduler, but never a gang member: taking
// one would leave its gang running without its quorum. Where only gang
// members could make room, the pod waits.
func TestOrdinaryPreemptionSparesGangs(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 3, nodeSpec{cpu: "4", mem: "16Gi"})
	low := podSpec{cpu: "4", priority: 100}
	e.createGang("gang", 2, 2, low)
	e.waitGangBound("gang", 2, bindBy)
	e.createPod("bystander", "", low)
	e.waitFor("the low ordinary pod bound", bindBy, func() bool { return e.bound()[""] == 1 })

	// The cluster is full. The first high pod's only eligible victim is
	// the ordinary pod.
	high := podSpec{cpu: "4", priority: 1000}
	e.createPod("high-1", "", high)
	e.waitFor("the bystander preempted", bindBy, func() bool {
		p, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, "bystander", metav1.GetOptions{})
		return err != nil || p.DeletionTimestamp != nil
	})
	// No kubelet runs here to finish the deletion.
	e.deletePods("bystander")
	e.waitFor("high-1 bound in the bystander's place", bindBy, func() bool {
		p, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, "high-1", metav1.GetOptions{})
		return err == nil && p.Spec.NodeName != ""
	})

	// The second one could only take a gang member: it waits, and the
	// gang stays whole.
	e.createPod("high-2", "", high)
	e.waitFor("high-2 found unschedulable", bindBy, func() bool {
		p, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, "high-2", metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range p.Status.Conditions {
			if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && strings.Contains(c.Message, "Insufficient cpu") {
				return true
			}
		}
		return false
	})
	e.holdsFor("the gang whole beside a high-priority pod that cannot fit", settle, func() bool {
		for _, p := range e.pods() {
			if p.Labels["scheduling.x-k8s.io/pod-group"] == "gang" && (p.DeletionTimestamp != nil || p.Spec.NodeName == "") {
				return false
			}
		}
		return e.bound()["gang"] == 2
	})
}

// finishDeletions plays the kubelet's part in a deletion: pods given a
// grace period (preemption's evictions) go at once. No kubelet runs here.
func (e *env) finishDeletions() { teststand.FinishDeletions(e.ctx, e.t, e.client, e.ns) }

// gone lists which of the named pods no longer exist.
func (e *env) gone(names ...string) []string {
	var out []string
	for _, n := range names {
		if _, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, n, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			out = append(out, n)
		}
	}
	return out
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// A gang of higher priority takes the room of lower-priority pods, the
// fewest that make its quorum fit, and a gang above it takes a whole
// lower gang, never part of one: a preemption chain, high over mid over
// low.
func TestGangPreemptionChain(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 4, nodeSpec{cpu: "4", mem: "16Gi"})
	e.finishDeletions()
	low := names("low", 8)
	for _, n := range low {
		e.createPod(n, "", podSpec{cpu: "2", priority: 100})
	}
	e.waitFor("the low pods bound", bindBy, func() bool { return e.bound()[""] == 8 })

	// The mid gang needs two whole nodes: four low pods, no more.
	start := time.Now()
	e.createGang("mid", 2, 2, podSpec{cpu: "4", priority: 500})
	e.waitGangBound("mid", 2, bindBy)
	t.Logf("mid gang bound %s after its creation, preempting %d pods (minimum 4)", time.Since(start).Round(time.Millisecond), len(e.gone(low...)))
	if g := e.gone(low...); len(g) != 4 {
		t.Errorf("the mid gang took %d low pods (%v), the fewest is 4", len(g), g)
	}
	e.waitEvent("PodGroup", "mid", "preempting 4 pods of lower priority", bindBy)

	// The high gang needs every node: the whole mid gang and the rest of
	// the low pods go.
	start = time.Now()
	e.createGang("high", 4, 4, podSpec{cpu: "4", priority: 1000})
	e.waitGangBound("high", 4, bindBy)
	t.Logf("high gang bound %s after its creation, preempting %d pods (minimum 6)", time.Since(start).Round(time.Millisecond), len(e.gone(append(low, names("mid", 2)...)...))-4)
	if g := e.gone(names("mid", 2)...); len(g) != 2 {
		t.Errorf("the mid gang lost %v, want both members: no victim gang is left partial", g)
	}
	if g := e.gone(low...); len(g) != 8 {
		t.Errorf("%d low pods gone, want all 8", len(g))
	}
	e.waitEvent("PodGroup", "mid", "preempted by gang", bindBy)
	e.waitEvent("Pod", "low-0", "Preempted", bindBy)
}

// Preemption keeps PodDisruptionBudgets, honours preemptionPolicy: Never,
// and never evicts for a gang that would not fit even with every
// lower-priority pod gone.
func TestGangPreemptionRefusals(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 4, nodeSpec{cpu: "4", mem: "16Gi"})
	e.finishDeletions()
	protected := func(p *v1.Pod) { p.Labels["app"] = "protected" }
	e.createPod("kept-0", "", podSpec{cpu: "4", priority: 100, mutate: protected})
	e.createPod("kept-1", "", podSpec{cpu: "4", priority: 100, mutate: protected})
	e.createPod("vip", "", podSpec{cpu: "4", priority: 2000})
	e.createPod("free", "", podSpec{cpu: "4", priority: 10})
	e.waitFor("the four pods bound", bindBy, func() bool { return e.bound()[""] == 4 })
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "protected", Namespace: e.ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(0)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "protected"}}},
	}
	if _, err := e.client.PolicyV1().PodDisruptionBudgets(e.ns).Create(e.ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No disruption controller runs here: write what it would.
	e.waitFor("the PDB status written", bindBy, func() bool {
		cur, err := e.client.PolicyV1().PodDisruptionBudgets(e.ns).Get(e.ctx, "protected", metav1.GetOptions{})
		if err != nil {
			return false
		}
		cur.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: cur.Generation, DisruptionsAllowed: 0, CurrentHealthy: 2, DesiredHealthy: 2, ExpectedPods: 2}
		_, err = e.client.PolicyV1().PodDisruptionBudgets(e.ns).UpdateStatus(e.ctx, cur, metav1.UpdateOptions{})
		return err == nil
	})

	// Would fit in place of "free", but its class says Never.
	e.createPodGroup("polite", 1)
	e.createPod("polite-0", "polite", podSpec{cpu: "4", mutate: func(p *v1.Pod) { p.Spec.PriorityClassName = e.priorityClassNever(900) }})
	e.waitEvent("PodGroup", "polite", "does not fit yet", bindBy)

	// Would fit in place of "free" and one protected pod.
	e.createGang("blocked", 2, 2, podSpec{cpu: "4", priority: 1000})
	e.waitEvent("PodGroup", "blocked", "PodDisruptionBudget protects", bindBy)

	// Needs every node, vip's too: no preemption can place it.
	e.createGang("huge", 4, 4, podSpec{cpu: "4", priority: 1000})
	e.waitEvent("PodGroup", "huge", "does not fit yet", bindBy)

	e.holdsFor("nothing evicted", settle, func() bool {
		return len(e.gone("kept-0", "kept-1", "vip", "free")) == 0
	})
	for _, g := range []string{"blocked", "polite", "huge"} {
		for _, ev := range e.events("PodGroup", g) {
			if strings.Contains(ev, "Preempting") || g == "huge" && strings.Contains(ev, "PodDisruptionBudget") {
				t.Errorf("gang %s: %s", g, ev)
			}
		}
	}
}

// A victim gang goes whole even where one of its members would make
// room: the rest of it could not run below its quorum.
func TestGangPreemptionTakesVictimGangsWhole(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 2, nodeSpec{cpu: "4", mem: "16Gi"})
	e.finishDeletions()
	e.createGang("mid", 2, 2, podSpec{cpu: "4", priority: 500})
	e.waitGangBound("mid", 2, bindBy)
	e.createGang("high", 1, 1, podSpec{cpu: "4", priority: 1000})
	e.waitGangBound("high", 1, bindBy)
	e.waitFor("both mid members gone", bindBy, func() bool { return len(e.gone("mid-0", "mid-1")) == 2 })
}

// The room a preemptor frees is its own until it binds: a gang of higher
// rank waiting at the head of the queue, which may not preempt, does not
// take it, or the preemptor would evict again and again on its behalf.
func TestGangPreemptionClaimsTheRoomItFrees(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 3, nodeSpec{cpu: "4", mem: "16Gi"})
	e.finishDeletions()
	low := names("low", 3)
	for _, n := range low {
		e.createPod(n, "", podSpec{cpu: "4", priority: 10})
	}
	e.waitFor("the low pods bound", bindBy, func() bool { return e.bound()[""] == 3 })
	e.createPodGroup("head", 3)
	for i := range 3 {
		e.createPod(fmt.Sprintf("head-%d", i), "head", podSpec{cpu: "4", mutate: func(p *v1.Pod) { p.Spec.PriorityClassName = e.priorityClassNever(2000) }})
	}
	e.waitEvent("PodGroup", "head", "does not fit yet", bindBy)

	e.createGang("taker", 1, 1, podSpec{cpu: "4", priority: 1000})
	e.waitGangBound("taker", 1, bindBy)
	e.holdsFor("one low pod taken, the others kept", settle, func() bool {
		return len(e.gone(low...)) == 1 && e.bound()["head"] == 0
	})
}

// denyEvictions makes the apiserver refuse evicting this namespace's pods
// whose name ends with suffix, and waits until it does.
func (e *env) denyEvictions(suffix string) {
	e.t.Helper()
	e.denyCreate("pods/eviction", suffix, "eviction refused by the test", func(probe string) error {
		return e.client.PolicyV1().Evictions(e.ns).Evict(e.ctx, &policyv1.Eviction{
			ObjectMeta:    metav1.ObjectMeta{Name: probe, Namespace: e.ns},
			DeleteOptions: &metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}},
		})
	})
}

// An eviction the apiserver refuses (tried as a dry run first) ends the
// preemption without evicting anything, and the gang chooses other
// victims.
func TestGangPreemptionAfterARefusedEviction(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 2, nodeSpec{cpu: "4", mem: "16Gi"})
	e.finishDeletions()
	e.denyEvictions("-kept")
	e.createPod("low-kept", "", podSpec{cpu: "4", priority: 10})
	e.createPod("higher", "", podSpec{cpu: "4", priority: 20})
	e.waitFor("both bound", bindBy, func() bool { return e.bound()[""] == 2 })

	e.createGang("g", 1, 1, podSpec{cpu: "4", priority: 1000})
	e.waitGangBound("g", 1, bindBy)
	if g := e.gone("low-kept", "higher"); len(g) != 1 || g[0] != "higher" {
		t.Errorf("gone: %v, want only the pod whose eviction is allowed", g)
	}
	e.waitEvent("PodGroup", "g", "EvictionRefused", bindBy)
}
