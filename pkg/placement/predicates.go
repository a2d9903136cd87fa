package placement

import (
	"encoding/json"
	"fmt"
	"reflect"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	v1helper "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
)

// Reasons a node refuses a member, worded like the scheduler's own plugins
// so that Events read the same as kube-scheduler's.
const (
	ReasonUnschedulable = "node(s) were unschedulable"
	ReasonAffinity      = "node(s) didn't match Pod's node affinity/selector"
	ReasonTaint         = "node(s) had untolerated taint"
	ReasonNoNode        = "node(s) had no Node object"
	ReasonAvoided       = "node(s) refused this member in an earlier attempt"
	ReasonNUMA          = "node(s) had no single NUMA zone with room (single-numa-node policy)"
)

// Options tune the predicates to the scheduler's feature gates.
type Options struct {
	// EnableTaintComparisonOperators mirrors the TaintTolerationComparisonOperators gate.
	EnableTaintComparisonOperators bool
}

// constraints are the node predicates a member brings, checked once per node
// for all members that share them (members of a gang usually share one
// template, so a 256-member gang costs one pass over the nodes).
type constraints struct {
	pod      *v1.Pod
	avoid    sets.Set[string]
	affinity nodeaffinity.RequiredNodeAffinity
	// verdict per node index: 0 unknown, 1 fits, 2 refused. reason says
	// why, for refused nodes; it is allocated on the first refusal, as most
	// gangs are refused by few nodes or none.
	verdict []uint8
	reason  []string
}

// constraintKey identifies pods whose node predicates are identical.
func constraintKey(pod *v1.Pod, avoid sets.Set[string]) string {
	aff := nodeAffinityOf(pod)
	if len(pod.Spec.NodeSelector) == 0 && aff == nil && len(pod.Spec.Tolerations) == 0 && avoid.Len() == 0 {
		return ""
	}
	b, err := json.Marshal(struct {
		S map[string]string
		A *v1.NodeAffinity
		T []v1.Toleration
		V []string
	}{pod.Spec.NodeSelector, aff, pod.Spec.Tolerations, sets.List(avoid)})
	if err != nil {
		// Unmarshalable specs cannot share a verdict with anything.
		return fmt.Sprintf("%p", pod)
	}
	return string(b)
}

// samePredicates reports whether two members bring the same node
// predicates, so that they may share constraints. Members of a gang usually
// come from one template, and real pods carry tolerations (the default
// not-ready and unreachable ones): comparing a member with the one before it
// is much cheaper than encoding its key.
func samePredicates(a, b *Member) bool {
	// DeepEqual is handed pointers: a slice passed by value would be
	// copied to the heap on every call.
	sa, sb := &a.Pod.Spec, &b.Pod.Spec
	return a.Avoid.Equal(b.Avoid) &&
		reflect.DeepEqual(sa.NodeSelector, sb.NodeSelector) &&
		reflect.DeepEqual(nodeAffinityOf(a.Pod), nodeAffinityOf(b.Pod)) &&
		reflect.DeepEqual(&sa.Tolerations, &sb.Tolerations)
}

func nodeAffinityOf(pod *v1.Pod) *v1.NodeAffinity {
	if pod.Spec.Affinity == nil {
		return nil
	}
	return pod.Spec.Affinity.NodeAffinity
}

func newConstraints(pod *v1.Pod, avoid sets.Set[string], nodes int) *constraints {
	return &constraints{
		pod:      pod,
		avoid:    avoid,
		affinity: nodeaffinity.GetRequiredNodeAffinity(pod),
		verdict:  make([]uint8, nodes),
	}
}

// admits reports whether node i passes the member's static predicates:
// unschedulable nodes, taints, node selector and required node affinity.
func (c *constraints) admits(i int, node *v1.Node, opts Options) bool {
	switch c.verdict[i] {
	case 1:
		return true
	case 2:
		return false
	}
	r := staticReason(c.pod, c.affinity, node, opts)
	if r == "" && node != nil && c.avoid.Has(node.Name) {
		r = ReasonAvoided
	}
	if r == "" {
		c.verdict[i] = 1
		return true
	}
	if c.reason == nil {
		c.reason = make([]string, len(c.verdict))
	}
	c.verdict[i], c.reason[i] = 2, r
	return false
}

var unschedulableTaint = v1.Taint{Key: v1.TaintNodeUnschedulable, Effect: v1.TaintEffectNoSchedule}

func staticReason(pod *v1.Pod, aff nodeaffinity.RequiredNodeAffinity, node *v1.Node, opts Options) string {
	if node == nil {
		return ReasonNoNode
	}
	logger := klog.Background()
	if node.Spec.Unschedulable && !v1helper.TolerationsTolerateTaint(logger, pod.Spec.Tolerations, &unschedulableTaint, opts.EnableTaintComparisonOperators) {
		return ReasonUnschedulable
	}
	if _, untolerated := v1helper.FindMatchingUntoleratedTaint(logger, node.Spec.Taints, pod.Spec.Tolerations, doNotSchedule, opts.EnableTaintComparisonOperators); untolerated {
		return ReasonTaint
	}
	if ok, _ := aff.Match(node); !ok {
		return ReasonAffinity
	}
	return ""
}

func doNotSchedule(t *v1.Taint) bool {
	return t.Effect == v1.TaintEffectNoSchedule || t.Effect == v1.TaintEffectNoExecute
}
