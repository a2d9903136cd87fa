package controller

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/lockstep-sched/lockstep/pkg/numa"
)

// A member kubelet refused at admission is reported on its PodGroup once,
// naming node, pod and kubelet's words; other failures are not.
func TestRejectionReportedOnce(t *testing.T) {
	pods := gang("w", 3, "n1", corev1.PodRunning)
	pods[1].UID, pods[2].UID = types.UID("rejected"), types.UID("crashed")
	pods[1].Status = corev1.PodStatus{Phase: corev1.PodFailed, Reason: numa.ReasonTopologyAffinity,
		Message: "Pod was rejected: Resources cannot be allocated with Topology locality"}
	pods[2].Status = corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Error"}
	h := newHarness(t, append(podObjects(pods), newGroup("g", 3))...)

	h.reconcile(t, "g")
	var rejected []string
	for _, e := range h.events() {
		if strings.Contains(e, "RejectedByKubelet") {
			rejected = append(rejected, e)
		}
	}
	if len(rejected) != 1 || !strings.Contains(rejected[0], "kubelet on node n1 rejected member w-1 (TopologyAffinityError: Pod was rejected: Resources cannot be allocated with Topology locality)") {
		t.Fatalf("want one report of w-1, got %q", rejected)
	}
	h.reconcile(t, "g")
	for _, e := range h.events() {
		if strings.Contains(e, "RejectedByKubelet") {
			t.Fatalf("reported again: %s", e)
		}
	}
}
