package placement

import (
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"
	fwk "k8s.io/kube-scheduler/framework"
	schedutil "k8s.io/kubernetes/pkg/scheduler/util"
)

// Resources is a request or an amount of free room: the resources that the
// scheduler's NodeResourcesFit accounts for, plus a pod slot.
type Resources struct {
	MilliCPU         int64
	Memory           int64
	EphemeralStorage int64
	Pods             int64
	// Scalar holds extended resources (GPUs, hugepages...). Nil for most pods,
	// which keeps copies cheap.
	Scalar map[v1.ResourceName]int64
}

// PodRequest returns what a pod asks of a node, computed by the same helper
// kubelet and the scheduler use (init containers, sidecars, overhead and
// pod-level resources included).
func PodRequest(pod *v1.Pod) Resources {
	reqs := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
	r := Resources{Pods: 1}
	for name, q := range reqs {
		switch name {
		case v1.ResourceCPU:
			r.MilliCPU = q.MilliValue()
		case v1.ResourceMemory:
			r.Memory = q.Value()
		case v1.ResourceEphemeralStorage:
			r.EphemeralStorage = q.Value()
		default:
			if schedutil.IsScalarResourceName(name) && !q.IsZero() {
				if r.Scalar == nil {
					r.Scalar = map[v1.ResourceName]int64{}
				}
				r.Scalar[name] = q.Value()
			}
		}
	}
	return r
}

// FreeOf returns the room left on a node: allocatable minus what its pods
// (bound and assumed) request.
func FreeOf(ni fwk.NodeInfo) Resources {
	alloc, req := ni.GetAllocatable(), ni.GetRequested()
	r := Resources{
		MilliCPU:         alloc.GetMilliCPU() - req.GetMilliCPU(),
		Memory:           alloc.GetMemory() - req.GetMemory(),
		EphemeralStorage: alloc.GetEphemeralStorage() - req.GetEphemeralStorage(),
		Pods:             int64(alloc.GetAllowedPodNumber() - len(ni.GetPods())),
	}
	if sc := alloc.GetScalarResources(); len(sc) > 0 {
		r.Scalar = make(map[v1.ResourceName]int64, len(sc))
		used := req.GetScalarResources()
		for name, v := range sc {
			r.Scalar[name] = v - used[name]
		}
	}
	return r
}

// CapacityOf returns a node's allocatable room, as if it ran nothing.
func CapacityOf(ni fwk.NodeInfo) Resources {
	alloc := ni.GetAllocatable()
	r := Resources{
		MilliCPU:         alloc.GetMilliCPU(),
		Memory:           alloc.GetMemory(),
		EphemeralStorage: alloc.GetEphemeralStorage(),
		Pods:             int64(alloc.GetAllowedPodNumber()),
	}
	if sc := alloc.GetScalarResources(); len(sc) > 0 {
		r.Scalar = make(map[v1.ResourceName]int64, len(sc))
		for name, v := range sc {
			r.Scalar[name] = v
		}
	}
	return r
}

// Fits reports whether req fits into r.
func (r *Resources) Fits(req *Resources) bool {
	return r.Insufficient(req) == ""
}

// Insufficient names the first resource req needs more of than r has, or
// returns "" when it fits.
func (r *Resources) Insufficient(req *Resources) v1.ResourceName {
	switch {
	case req.Pods > r.Pods:
		return v1.ResourcePods
	case req.MilliCPU > r.MilliCPU:
		return v1.ResourceCPU
	case req.Memory > r.Memory:
		return v1.ResourceMemory
	case req.EphemeralStorage > r.EphemeralStorage:
		return v1.ResourceEphemeralStorage
	}
	for name, v := range req.Scalar {
		if v > r.Scalar[name] {
			return name
		}
	}
	return ""
}

// Sub takes req out of r. The scalar map is copied on write so that a plan
// never mutates a Resources value shared with its caller.
func (r *Resources) Sub(req *Resources) {
	r.MilliCPU -= req.MilliCPU
	r.Memory -= req.Memory
	r.EphemeralStorage -= req.EphemeralStorage
	r.Pods -= req.Pods
	if len(req.Scalar) > 0 {
		r.Scalar = cloneScalar(r.Scalar)
		for name, v := range req.Scalar {
			r.Scalar[name] -= v
		}
	}
}

// AtLeastZero returns r with every negative amount raised to zero.
func (r Resources) AtLeastZero() Resources {
	r.MilliCPU, r.Memory = max(r.MilliCPU, 0), max(r.Memory, 0)
	r.EphemeralStorage, r.Pods = max(r.EphemeralStorage, 0), max(r.Pods, 0)
	if len(r.Scalar) > 0 {
		r.Scalar = cloneScalar(r.Scalar)
		for name, v := range r.Scalar {
			r.Scalar[name] = max(v, 0)
		}
	}
	return r
}

// copies returns how many times req fits into r.
func (r *Resources) copies(req *Resources) int64 {
	n := int64(1) << 62
	div := func(have, want int64) {
		if want > 0 {
			n = min(n, max(have, 0)/want)
		}
	}
	div(r.Pods, req.Pods)
	div(r.MilliCPU, req.MilliCPU)
	div(r.Memory, req.Memory)
	div(r.EphemeralStorage, req.EphemeralStorage)
	for name, v := range req.Scalar {
		div(r.Scalar[name], v)
	}
	return n
}

// subTimes takes k copies of req out of r.
func (r *Resources) subTimes(req *Resources, k int64) {
	if k <= 0 {
		return
	}
	r.MilliCPU -= k * req.MilliCPU
	r.Memory -= k * req.Memory
	r.EphemeralStorage -= k * req.EphemeralStorage
	r.Pods -= k * req.Pods
	if len(req.Scalar) > 0 {
		r.Scalar = cloneScalar(r.Scalar)
		for name, v := range req.Scalar {
			r.Scalar[name] -= k * v
		}
	}
}

// Add puts req into r.
func (r *Resources) Add(req *Resources) {
	r.MilliCPU += req.MilliCPU
	r.Memory += req.Memory
	r.EphemeralStorage += req.EphemeralStorage
	r.Pods += req.Pods
	if len(req.Scalar) > 0 {
		r.Scalar = cloneScalar(r.Scalar)
		for name, v := range req.Scalar {
			r.Scalar[name] += v
		}
	}
}

// String is compact, for Events and logs: "cpu=4000m memory=8Gi".
func (r Resources) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cpu=%dm memory=%s", r.MilliCPU, humanBytes(r.Memory))
	for name, v := range r.Scalar {
		fmt.Fprintf(&b, " %s=%d", name, v)
	}
	return b.String()
}

func cloneScalar(m map[v1.ResourceName]int64) map[v1.ResourceName]int64 {
	if m == nil {
		return map[v1.ResourceName]int64{}
	}
	out := make(map[v1.ResourceName]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func humanBytes(v int64) string {
	const gi, mi = 1 << 30, 1 << 20
	switch {
	case v != 0 && v%gi == 0:
		return fmt.Sprintf("%dGi", v/gi)
	case v != 0 && v%mi == 0:
		return fmt.Sprintf("%dMi", v/mi)
	default:
		return fmt.Sprintf("%d", v)
	}
}
