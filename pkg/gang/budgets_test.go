package gang

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	policylisters "k8s.io/client-go/listers/policy/v1"
	"k8s.io/client-go/tools/cache"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
)

// Gang preemption reads budgets as the Eviction API enforces them.
func TestBudgetsAllow(t *testing.T) {
	pdb := func(name string, allowed int32, sel map[string]string) *policyv1.PodDisruptionBudget {
		return &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: sel}},
			Status:     policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: allowed},
		}
	}
	pod := func(name string, labels ...string) *v1.Pod {
		w := st.MakePod().Name(name).Namespace(ns)
		for i := 0; i+1 < len(labels); i += 2 {
			w = w.Label(labels[i], labels[i+1])
		}
		return w.Obj()
	}
	for _, tc := range []struct {
		name string
		pdbs []*policyv1.PodDisruptionBudget
		pods []*v1.Pod
		want bool
	}{
		{"no budget", nil, []*v1.Pod{pod("a", "app", "x")}, true},
		{"within the budget", []*policyv1.PodDisruptionBudget{pdb("b", 2, map[string]string{"app": "x"})},
			[]*v1.Pod{pod("a", "app", "x"), pod("b", "app", "x")}, true},
		{"two pods under a budget of one", []*policyv1.PodDisruptionBudget{pdb("b", 1, map[string]string{"app": "x"})},
			[]*v1.Pod{pod("a", "app", "x"), pod("b", "app", "x")}, false},
		{"a budget selecting other pods", []*policyv1.PodDisruptionBudget{pdb("b", 0, map[string]string{"app": "y"})},
			[]*v1.Pod{pod("a", "app", "x")}, true},
		{"an empty selector selects every pod", []*policyv1.PodDisruptionBudget{pdb("b", 0, map[string]string{})},
			[]*v1.Pod{pod("a", "app", "x")}, false},
		{"two budgets on one pod", []*policyv1.PodDisruptionBudget{pdb("b", 5, map[string]string{"app": "x"}), pdb("c", 5, map[string]string{"tier": "t"})},
			[]*v1.Pod{pod("a", "app", "x", "tier", "t")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
			for _, p := range tc.pdbs {
				if err := idx.Add(p); err != nil {
					t.Fatal(err)
				}
			}
			b := budgets{lister: policylisters.NewPodDisruptionBudgetLister(idx)}
			if got := b.Tally().Add(tc.pods); got != tc.want {
				t.Errorf("Add all = %v, want %v", got, tc.want)
			}
			// One at a time, the same pods: the budgets count across calls.
			one := b.Tally()
			all := true
			for _, p := range tc.pods {
				all = one.Add([]*v1.Pod{p}) && all
			}
			if len(tc.pods) > 1 && all != tc.want {
				t.Errorf("Add one by one = %v, want %v", all, tc.want)
			}
		})
	}
}
