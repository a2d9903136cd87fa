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

// Allow reports whether evicting pods together leaves every
// PodDisruptionBudget that selects some of them within what it allows, as
// the Eviction API would judge each eviction.
func (b budgets) Allow(pods []*v1.Pod) bool {
	taken := map[*policyv1.PodDisruptionBudget]int32{}
	for _, p := range pods {
		pdbs, err := b.lister.PodDisruptionBudgets(p.Namespace).List(labels.Everything())
		if err != nil {
			return false
		}
		for _, pdb := range pdbs {
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(p.Labels)) {
				continue
			}
			taken[pdb]++
			if taken[pdb] > pdb.Status.DisruptionsAllowed {
				return false
			}
		}
	}
	return true
}
