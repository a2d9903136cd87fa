package numa

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/apis/core/v1/helper/qos"
)

// Needs is what a pod asks of the CPU manager, in both scopes; the node's
// scope says which applies.
type Needs struct {
	Container, Pod Demand
}

// For returns the demand under a scope.
func (n *Needs) For(scope Scope) Demand {
	if n == nil {
		return nil
	}
	if scope == ScopePod {
		return n.Pod
	}
	return n.Container
}

// NeedsOf returns what a pod asks of the CPU manager's static policy, or
// nil when it gets no exclusive CPUs: only a Guaranteed pod's containers
// with a whole number of CPUs do. A pod with pod-level resources gets no
// alignment while kubelet's PodLevelResourceManagers gate is off (its
// default), so it has no needs either.
func NeedsOf(pod *v1.Pod) *Needs {
	if pod.Spec.Resources != nil || qos.GetPodQOS(pod) != v1.PodQOSGuaranteed {
		return nil
	}
	var n Needs
	// Pod scope asks for the most the pod holds at once: the long-running
	// containers (app and sidecars), or an init container with the
	// sidecars started before it (kubelet's podGuaranteedCPUs).
	var sidecars, initPeak, apps int64
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cpus := exclusiveCPUs(c)
		sidecar := c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
		if sidecar {
			sidecars += cpus
		} else {
			initPeak = max(initPeak, sidecars+cpus)
		}
		if cpus > 0 {
			n.Container = append(n.Container, Unit{CPUs: cpus, Transient: !sidecar})
		}
	}
	for i := range pod.Spec.Containers {
		cpus := exclusiveCPUs(&pod.Spec.Containers[i])
		apps += cpus
		if cpus > 0 {
			n.Container = append(n.Container, Unit{CPUs: cpus})
		}
	}
	if cpus := max(initPeak, apps+sidecars); cpus > 0 {
		n.Pod = Demand{{CPUs: cpus}}
	}
	if len(n.Container) == 0 && len(n.Pod) == 0 {
		return nil
	}
	return &n
}

// exclusiveCPUs is a container's whole-CPU request, 0 when fractional.
func exclusiveCPUs(c *v1.Container) int64 {
	cpu := c.Resources.Requests.Cpu()
	if cpu.IsZero() || cpu.MilliValue()%1000 != 0 {
		return 0
	}
	return cpu.MilliValue() / 1000
}
