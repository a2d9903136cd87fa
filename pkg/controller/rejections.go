package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/numa"
)

// admissionReasons are kubelet's reasons for refusing a pod at admission
// for want of aligned resources.
var admissionReasons = map[string]bool{
	numa.ReasonTopologyAffinity: true,
	numa.ReasonUnexpected:       true,
	"SMTAlignmentError":         true,
}

var nrtGVK = schema.GroupVersionKind{Group: "topology.node.k8s.io", Version: "v1alpha2", Kind: "NodeResourceTopology"}

// rejections remembers the members reported, so that each is reported
// once per controller.
type rejections struct {
	mu   sync.Mutex
	seen map[types.UID]bool
}

func (r *rejections) first(uid types.UID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[uid] {
		return false
	}
	if r.seen == nil || len(r.seen) > 10000 {
		r.seen = map[types.UID]bool{}
	}
	r.seen[uid] = true
	return true
}

// reportRejections tells a gang's PodGroup which members kubelet refused
// at admission, on which node, and what the node's agent publishes of its
// NUMA zones: the scheduler places pods only where kubelet admits them, so
// a rejection means the zones were not what the agent said, or another
// component placed pods there. What it means for the gang is its
// disruption mode's to say, as for any member lost.
func (r *reconciler) reportRejections(ctx context.Context, pg *v1alpha1.PodGroup, pods []corev1.Pod) {
	for i := range pods {
		pod := &pods[i]
		if pod.Status.Phase != corev1.PodFailed || !admissionReasons[pod.Status.Reason] || pod.Spec.NodeName == "" || !r.rejected.first(pod.UID) {
			continue
		}
		asks := "no exclusive CPUs"
		if n := numa.NeedsOf(pod); n != nil {
			asks = fmt.Sprintf("%d exclusive CPUs", n.Pod.CPUs())
		}
		msg := fmt.Sprintf("kubelet on node %s rejected member %s (%s: %s); it asks %s; %s",
			pod.Spec.NodeName, pod.Name, pod.Status.Reason, pod.Status.Message, asks, r.zonesOf(ctx, pod.Spec.NodeName))
		r.recorder.Eventf(pg, pod, corev1.EventTypeWarning, "RejectedByKubelet", eventAction, "%s", msg)
		log.FromContext(ctx).Info("Kubelet rejected a gang member", "pod", pod.Name, "node", pod.Spec.NodeName, "reason", pod.Status.Reason)
	}
}

// zonesOf describes a node's NUMA zones as its NodeResourceTopology says.
func (r *reconciler) zonesOf(ctx context.Context, node string) string {
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(nrtGVK)
	if err := r.client.Get(ctx, client.ObjectKey{Name: node}, obj); err != nil {
		return fmt.Sprintf("its NodeResourceTopology could not be read: %v", err)
	}
	attrs := map[string]string{}
	list, _, _ := unstructured.NestedSlice(obj.Object, "attributes")
	for _, a := range list {
		if m, ok := a.(map[string]any); ok {
			name, _ := m["name"].(string)
			value, _ := m["value"].(string)
			attrs[name] = value
		}
	}
	var zones []string
	list, _, _ = unstructured.NestedSlice(obj.Object, "zones")
	for _, z := range list {
		m, ok := z.(map[string]any)
		if !ok || m["type"] != "Node" {
			continue
		}
		res, _, _ := unstructured.NestedSlice(m, "resources")
		for _, rr := range res {
			if ri, ok := rr.(map[string]any); ok && ri["name"] == string(corev1.ResourceCPU) {
				zones = append(zones, fmt.Sprintf("%v %v of %v CPUs", m["name"], ri["available"], ri["allocatable"]))
			}
		}
	}
	if len(zones) == 0 {
		return "the node publishes no NUMA zones"
	}
	return fmt.Sprintf("its node agent publishes %s policy, %s scope, available: %s",
		orDefault(attrs["topologyManagerPolicy"], "no"), orDefault(attrs["topologyManagerScope"], "no"), strings.Join(zones, ", "))
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
