package integration

import (
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// An ordinary pod of high priority preempts ordinary pods of lower
// priority, as with the default scheduler, but never a gang member: taking
// one would leave its gang running without its quorum. Where only gang
// members could make room, the pod waits.
func TestOrdinaryPreemptionSparesGangs(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 3, nodeSpec{cpu: "4", mem: "16Gi"})
	e.startScheduler()
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
