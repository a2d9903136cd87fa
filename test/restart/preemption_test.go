//go:build linux

package restart

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/controller"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
	"github.com/lockstep-sched/lockstep/test/teststand"
)

// The preemption kill point's cluster: four victim gangs fill it, and the
// preemptor needs the room of two of them.
const (
	preemptNodes        = 4
	victimGangs         = 4
	victimSize          = 4
	victimCPU           = 2
	preemptorSize       = 8
	preemptorCPU        = 2
	lowPriority   int32 = 10
	highPriority  int32 = 1000
)

// TestKillDuringPreemption kills the scheduler hard while it evicts the
// victims of a gang's preemption: the claim on the room they free dies
// with it. A new scheduler must place the preemptor, and no victim gang
// may be left partial: one the dead scheduler had begun to evict goes
// whole, by the new scheduler's choice or by its disruption mode (All) in
// lockstep-controller, which runs here.
func TestKillDuringPreemption(t *testing.T) {
	e := newEnv(t)
	e.addNodes(preemptNodes)
	e.startController()
	low, high := e.priorityClass(lowPriority), e.priorityClass(highPriority)

	first := e.startScheduler("first")
	var victims []string
	for g := range victimGangs {
		name := fmt.Sprintf("victim-%d", g)
		e.createClassGang(name, victimSize, victimCPU, low, podgroup.DisruptionAll)
		victims = append(victims, name)
	}
	e.waitFor("every victim gang bound and seen started by the controller", doneTimeout, func() bool {
		counts := gangCounts(e.boundPods())
		for _, g := range victims {
			pg, err := e.pgs.SchedulingV1alpha1().PodGroups(e.ns).Get(e.ctx, g, metav1.GetOptions{})
			if err != nil || counts[g] != victimSize || (pg.Status.Phase != podgroup.PhaseScheduled && pg.Status.Phase != v1alpha1.PodGroupRunning) {
				return false
			}
		}
		return true
	})

	e.createClassGang("high", preemptorSize, preemptorCPU, high, "")
	e.waitFor("the first victim's eviction", killTimeout, func() bool { return len(e.terminating()) > 0 })
	first.kill(t)
	atKill := e.terminating()
	if n := gangCounts(e.boundPods())["high"]; n > 0 {
		t.Fatalf("%d members of the preemptor were bound before the kill: the kill was not during the preemption", n)
	}
	t.Logf("killed while evicting: %d victims terminating at the kill: %v", len(atKill), atKill)

	// The kubelet's part: evicted pods go.
	e.finishDeletions()
	second := e.startScheduler("second")
	e.waitFor("the preemptor bound whole by the second scheduler", doneTimeout, func() bool {
		return gangCounts(e.boundPods())["high"] == preemptorSize
	})
	e.waitFor("no victim gang partial", doneTimeout, func() bool {
		live := e.liveCounts()
		for _, g := range victims {
			if n := live[g]; n != 0 && n != victimSize {
				return false
			}
		}
		return true
	})
	live := e.liveCounts()
	whole := 0
	for _, g := range victims {
		if live[g] == victimSize {
			whole++
		}
	}
	t.Logf("after the restart: preemptor bound, %d of %d victim gangs left whole, the rest gone whole", whole, victimGangs)
	if whole == victimGangs {
		t.Errorf("every victim gang is whole, yet the preemptor needed the room of %d", preemptorSize*preemptorCPU/(victimSize*victimCPU))
	}
	select {
	case <-second.exited:
		t.Errorf("the second scheduler exited: %v", second.err)
	default:
	}
	second.checkLog(t)
}

// waitFor polls cond until it holds or timeout passes.
func (e *env) waitFor(what string, timeout time.Duration, cond func() bool) {
	e.t.Helper()
	if err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	}); err != nil {
		e.t.Fatalf("waiting for %s: %v; bound per gang: %v", what, err, gangCounts(e.boundPods()))
	}
}

// priorityClass creates (once) a PriorityClass of the given value.
func (e *env) priorityClass(value int32) string {
	e.t.Helper()
	name := fmt.Sprintf("lockstep-restart-%d", value)
	pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value}
	if _, err := e.client.SchedulingV1().PriorityClasses().Create(e.ctx, pc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatal(err)
	}
	return name
}

// createClassGang creates a PodGroup of minMember size, in disruption mode
// mode ("" for the default), and its members <name>-<i> of cpu CPUs in
// PriorityClass class.
func (e *env) createClassGang(name string, size int, cpu int64, class string, mode podgroup.DisruptionMode) {
	e.t.Helper()
	pg := &v1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec:       v1alpha1.PodGroupSpec{MinMember: int32(size)},
	}
	if mode != "" {
		pg.Annotations = map[string]string{podgroup.AnnotationDisruptionMode: string(mode)}
	}
	if _, err := e.pgs.SchedulingV1alpha1().PodGroups(e.ns).Create(e.ctx, pg, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	for i := range size {
		pod := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", name, i), Namespace: e.ns, Labels: map[string]string{podgroup.Label: name}},
			Spec: v1.PodSpec{
				SchedulerName:     schedulerName,
				PriorityClassName: class,
				Containers: []v1.Container{{Name: "main", Image: "registry.invalid/worker:latest",
					Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: *resource.NewQuantity(cpu, resource.DecimalSI)}}}},
			},
		}
		if _, err := e.client.CoreV1().Pods(e.ns).Create(e.ctx, pod, metav1.CreateOptions{}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// terminating lists the pods being deleted.
func (e *env) terminating() []string {
	e.t.Helper()
	list, err := e.client.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil {
			out = append(out, p.Name)
		}
	}
	sort.Strings(out)
	return out
}

// liveCounts counts, per gang, the bound members not being deleted.
func (e *env) liveCounts() map[string]int {
	e.t.Helper()
	list, err := e.client.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]int{}
	for _, p := range list.Items {
		if p.Spec.NodeName != "" && p.DeletionTimestamp == nil {
			out[p.Labels[podgroup.Label]]++
		}
	}
	return out
}

// finishDeletions plays the kubelet's part in a deletion: evicted pods go.
func (e *env) finishDeletions() { teststand.FinishDeletions(e.ctx, e.t, e.client, e.ns) }

// startController runs lockstep-controller in this process until the test
// ends: it writes the PodGroups' phases and handles disrupted gangs.
func (e *env) startController() {
	teststand.StartController(e.ctx, e.t, cp.Config, controller.Options{})
}
