package preemption

import (
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/preemption"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	"k8s.io/utils/ptr"
)

// victim is one pod as a preemption unit.
type victim struct{ pods []fwk.PodInfo }

func (v victim) Priority() int32                 { return 0 }
func (v victim) Pods() []fwk.PodInfo             { return v.pods }
func (v victim) EarliestStartTime() *metav1.Time { return nil }
func (v victim) IsGroup() bool                   { return false }
func (v victim) Type() fwk.EntityKeyType         { return "" }

func TestEligible(t *testing.T) {
	info := func(p *v1.Pod) fwk.PodInfo {
		pi, err := framework.NewPodInfo(p)
		if err != nil {
			t.Fatal(err)
		}
		return pi
	}
	ordinary := st.MakePod().Name("o").Namespace("ns").Obj()
	labelled := st.MakePod().Name("m").Namespace("ns").Label("scheduling.x-k8s.io/pod-group", "g").Obj()
	upstream := st.MakePod().Name("u").Namespace("ns").Obj()
	upstream.Spec.SchedulingGroup = &v1.PodSchedulingGroup{PodGroupName: ptr.To("g")}
	for _, tc := range []struct {
		name string
		pods []*v1.Pod
		want bool
	}{
		{"an ordinary pod", []*v1.Pod{ordinary}, true},
		{"a scheduler-plugins gang member", []*v1.Pod{labelled}, false},
		{"an upstream gang member", []*v1.Pod{upstream}, false},
		{"a unit holding a member", []*v1.Pod{ordinary, labelled}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v victim
			for _, p := range tc.pods {
				v.pods = append(v.pods, info(p))
			}
			var _ preemption.Victim = v
			if got := eligible(nil, v, st.MakePod().Obj()); got != tc.want {
				t.Errorf("eligible = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDecodeArgs(t *testing.T) {
	got, err := decodeArgs(nil)
	if err != nil || got.MinCandidateNodesPercentage != 10 || got.MinCandidateNodesAbsolute != 100 {
		t.Errorf("defaults: %+v, %v", got, err)
	}
	got, err = decodeArgs(&runtime.Unknown{Raw: []byte(`{"minCandidateNodesPercentage": 50}`)})
	if err != nil || got.MinCandidateNodesPercentage != 50 || got.MinCandidateNodesAbsolute != 100 {
		t.Errorf("percentage 50: %+v, %v", got, err)
	}
	if _, err := decodeArgs(&runtime.Unknown{Raw: []byte(`{"minCandidates": 5}`)}); err == nil || !strings.Contains(err.Error(), Name) {
		t.Errorf("an unknown field must be an error naming the plugin, got %v", err)
	}
}
