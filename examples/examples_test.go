package examples_test

import (
	"testing"

	"github.com/lockstep-sched/lockstep/examples"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/workload"
)

// The shipped examples load without a single error, and hold what the
// sandbox's default run promises: gangs, an elastic one, ordinary pods and
// arrivals over time.
func TestExamplesLoad(t *testing.T) {
	objs, errs := workload.LoadFS(examples.FS, "examples")
	for _, err := range errs {
		t.Error(err)
	}
	var groups, elastic, ordinary, delayed int
	members := map[string]int{}
	for _, o := range objs {
		if o.SubmitAfter > 0 {
			delayed++
		}
		if o.PodGroup != nil {
			groups++
			continue
		}
		if g := o.Pod.Labels["scheduling.x-k8s.io/pod-group"]; g != "" {
			members[o.Pod.Namespace+"/"+g]++
		} else {
			ordinary++
		}
	}
	for _, o := range objs {
		if o.PodGroup != nil && int(o.PodGroup.Spec.MinMember) < members[o.PodGroup.Namespace+"/"+o.PodGroup.Name] {
			elastic++
		}
	}
	if groups < 5 || elastic < 1 || ordinary < 2 || delayed < 2 {
		t.Errorf("examples hold %d PodGroups (%d elastic), %d ordinary pods, %d delayed objects", groups, elastic, ordinary, delayed)
	}
}
