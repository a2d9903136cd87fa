// Package topology knows nodes' NUMA zones from NodeResourceTopology
// objects (topology.node.k8s.io/v1alpha2), keeps account of the zones the
// scheduler gave its pods, and says what a pod needs from one zone when
// kubelet's CPU manager would give it exclusive CPUs.
package topology

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/apis/core/v1/helper/qos"

	"github.com/lockstep-sched/lockstep/pkg/placement"
)

// NUMANeed returns what a pod takes from NUMA zones when kubelet pins its
// CPUs: a Guaranteed pod's containers with an integer CPU request get
// exclusive CPUs (static CPU manager). It returns nil for pods that run in
// the shared pool. The need is counted for the whole pod (pod scope), which
// for container scope is stricter than kubelet: Lockstep may refuse a node
// kubelet would accept, never the other way round.
func NUMANeed(pod *v1.Pod) *placement.Resources {
	if qos.GetPodQOS(pod) != v1.PodQOSGuaranteed {
		return nil
	}
	var need placement.Resources
	for _, c := range pod.Spec.Containers {
		cpu := c.Resources.Requests.Cpu()
		if cpu.IsZero() || cpu.MilliValue()%1000 != 0 {
			continue
		}
		need.MilliCPU += cpu.MilliValue()
		need.Memory += c.Resources.Requests.Memory().Value()
	}
	if need.MilliCPU == 0 {
		return nil
	}
	return &need
}
