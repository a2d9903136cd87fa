package gang

import (
	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	policylisters "k8s.io/client-go/listers/policy/v1"

	"github.com/lockstep-sched/lockstep/pkg/gang/gangstate"
)

// budgets reads PodDisruptionBudgets for gang preemption.
type budgets struct {
	lister policylisters.PodDisruptionBudgetLister
}

// Tally starts counting pods to evict together.
func (b budgets) Tally() gangstate.BudgetTally {
	return &tally{lister: b.lister, byNamespace: map[string][]budget{}, taken: map[*policyv1.PodDisruptionBudget]int32{}}
}

type budget struct {
	pdb      *policyv1.PodDisruptionBudget
	selector labels.Selector
}

// tally counts, per budget, the pods added so far; budgets are listed and
// their selectors parsed once per namespace.
type tally struct {
	lister      policylisters.PodDisruptionBudgetLister
	byNamespace map[string][]budget
	taken       map[*policyv1.PodDisruptionBudget]int32
}

// Add reports whether the Eviction API would let pods go too, evicted with
// those added before, and adds them if so: each PodDisruptionBudget that
// selects some of them allows that many disruptions, its status is
// current, and no pod is selected by more than one budget (the Eviction
// API refuses all three). An empty selector selects every pod of its
// namespace, as the Eviction API reads it.
func (t *tally) Add(pods []*v1.Pod) bool {
	add := map[*policyv1.PodDisruptionBudget]int32{}
	for _, p := range pods {
		matched := 0
		for _, b := range t.budgets(p.Namespace) {
			if !b.selector.Matches(labels.Set(p.Labels)) {
				continue
			}
			matched++
			add[b.pdb]++
			if matched > 1 || b.pdb.Status.ObservedGeneration < b.pdb.Generation ||
				t.taken[b.pdb]+add[b.pdb] > b.pdb.Status.DisruptionsAllowed {
				return false
			}
		}
	}
	for pdb, n := range add {
		t.taken[pdb] += n
	}
	return true
}

func (t *tally) budgets(namespace string) []budget {
	if bs, ok := t.byNamespace[namespace]; ok {
		return bs
	}
	var bs []budget
	pdbs, err := t.lister.PodDisruptionBudgets(namespace).List(labels.Everything())
	if err == nil {
		for _, pdb := range pdbs {
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			if err != nil {
				// A budget the Eviction API cannot read either: it protects
				// nothing we can tell, so take no pod of its namespace.
				sel = labels.Everything()
				pdb = pdb.DeepCopy()
				pdb.Status.DisruptionsAllowed = 0
			}
			bs = append(bs, budget{pdb: pdb, selector: sel})
		}
	}
	t.byNamespace[namespace] = bs
	return bs
}
