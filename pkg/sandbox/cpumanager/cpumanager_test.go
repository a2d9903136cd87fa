package cpumanager

import (
	"context"
	"slices"
	"testing"
	"time"

	nrtv1alpha2 "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/apis/topology/v1alpha2"
	nrtfake "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/generated/clientset/versioned/fake"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/lockstep-sched/lockstep/pkg/numa"
)

func pod(uid, cpu string, guaranteed bool) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: uid, UID: types.UID(uid)}}
	l := v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse("1Gi")}
	c := v1.Container{Name: "c", Resources: v1.ResourceRequirements{Requests: l}}
	if guaranteed {
		c.Resources.Limits = l
	}
	p.Spec.Containers = []v1.Container{c}
	return p
}

func twoZones(policy numa.Policy) numa.Node {
	return numa.Node{Policy: policy, Scope: numa.ScopeContainer, Names: []string{"node-0", "node-1"}, Capacity: []int64{16, 16}}
}

// The sandbox admits like kubelet: the lowest numbered zone with room, and
// a rejection where single-numa-node finds none.
func TestAdmitAsKubelet(t *testing.T) {
	m := New()
	m.AddNode("n", twoZones(numa.PolicySingleNUMANode))
	steps := []struct {
		pod    *v1.Pod
		zones  []string
		reason string
		free   []int64
	}{
		{pod("a", "4", true), []string{"node-0"}, "", []int64{12, 16}},
		{pod("b", "12", true), []string{"node-0"}, "", []int64{0, 16}},
		{pod("c", "500m", true), nil, "", []int64{0, 16}}, // shared pool
		{pod("d", "4", false), nil, "", []int64{0, 16}},   // burstable
		{pod("e", "10", true), []string{"node-1"}, "", []int64{0, 6}},
		{pod("f", "8", true), nil, numa.ReasonTopologyAffinity, []int64{0, 6}},
		{pod("a", "4", true), []string{"node-0"}, "", []int64{0, 6}}, // again: the same answer
	}
	for i, s := range steps {
		zones, reason := m.Admit("n", s.pod)
		if !slices.Equal(zones, s.zones) || reason != s.reason || !slices.Equal(m.Free("n"), s.free) {
			t.Fatalf("step %d (%s): got %v %q free %v, want %v %q free %v", i, s.pod.Name, zones, reason, m.Free("n"), s.zones, s.reason, s.free)
		}
	}
	m.Release("b")
	m.Release("b")
	if got := m.Free("n"); !slices.Equal(got, []int64{12, 6}) {
		t.Fatalf("released once: %v", got)
	}
	if got := m.Zones(pod("b", "12", true)); !slices.Equal(got, []string{"node-0"}) {
		t.Fatalf("the report still knows where b ran: %v", got)
	}
}

// The agent publishes what changed as the NRT's available CPUs.
func TestAgentPublishes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cpu := resource.MustParse("16")
	obj := &nrtv1alpha2.NodeResourceTopology{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
	for _, z := range []string{"node-0", "node-1"} {
		obj.Zones = append(obj.Zones, nrtv1alpha2.Zone{Name: z, Type: "Node",
			Resources: nrtv1alpha2.ResourceInfoList{{Name: "cpu", Capacity: cpu, Allocatable: cpu, Available: cpu}}})
	}
	client := nrtfake.NewSimpleClientset(obj)
	m := New()
	m.AddNode("n", twoZones(numa.PolicySingleNUMANode))
	go m.RunAgent(ctx, client, time.Millisecond)
	m.Admit("n", pod("a", "4", true))
	m.Admit("n", pod("b", "14", true))
	err := wait.PollUntilContextTimeout(ctx, time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := client.TopologyV1alpha2().NodeResourceTopologies().Get(ctx, "n", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		a0, a1 := got.Zones[0].Resources[0].Available, got.Zones[1].Resources[0].Available
		return a0.Value() == 12 && a1.Value() == 2, nil
	})
	if err != nil {
		t.Fatalf("the agent did not publish 12 and 2 CPUs available: %v", err)
	}
}
