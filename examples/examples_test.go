package examples_test

import (
	"testing"

	"github.com/lockstep-sched/lockstep/examples"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
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
	var groups, upstream, elastic, ordinary, delayed int
	members := map[string]int{}
	for _, o := range objs {
		if o.SubmitAfter > 0 {
			delayed++
		}
		if o.PodGroup != nil {
			groups++
			if o.Upstream != nil {
				upstream++
			}
			continue
		}
		if key := podgroup.KeyOf(o.Pod); key != "" {
			members[key]++
		} else {
			ordinary++
		}
	}
	for _, o := range objs {
		if o.PodGroup != nil && podgroup.MinMember(o.PodGroup) < members[podgroup.KeyOfGroup(o.PodGroup)] {
			elastic++
		}
	}
	if groups < 5 || upstream < 1 || elastic < 1 || ordinary < 2 || delayed < 2 {
		t.Errorf("examples hold %d PodGroups (%d of the upstream API, %d elastic), %d ordinary pods, %d delayed objects", groups, upstream, elastic, ordinary, delayed)
	}
}
