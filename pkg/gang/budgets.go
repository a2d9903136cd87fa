package gang

import (
	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	policylisters "k8s.io/client-go/listers/policy/v1"
)

// budgets reads PodDisruptionBudgets for gang preemption.
type budgets struct {
	lister policylisters.PodDisruptionBudgetLister
}

// Allow reports whether the Eviction API would let every one of pods go,
// evicted together: each PodDisruptionBudget that selects some of them
// allows that many disruptions, and none of them is selected by more than
// one budget (which the Eviction API refuses). An empty selector selects
// every pod of its namespace, as the Eviction API reads it.
func (b budgets) Allow(pods []*v1.Pod) bool {
	taken := map[*policyv1.PodDisruptionBudget]int32{}
	for _, p := range pods {
		pdbs, err := b.lister.PodDisruptionBudgets(p.Namespace).List(labels.Everything())
		if err != nil {
			return false
		}
		matched := 0
		for _, pdb := range pdbs {
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			if err != nil || !sel.Matches(labels.Set(p.Labels)) {
				continue
			}
			if matched++; matched > 1 || pdb.Status.ObservedGeneration < pdb.Generation {
				// Two budgets, or one whose status is stale: the
				// Eviction API refuses both.
				return false
			}
			taken[pdb]++
			if taken[pdb] > pdb.Status.DisruptionsAllowed {
				return false
			}
		}
	}
	return true
}
