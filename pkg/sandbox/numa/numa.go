// Package numa tells which NUMA zones of a simulated node hold a pod's CPUs.
//
// Lockstep does not choose NUMA zones yet, and the sandbox has no real
// kubelet CPU manager, so the sandbox keeps its own simple accounting: a
// pod's CPU request, rounded up to whole CPUs, goes to the first zone (in
// the node's order) that has that many CPUs free; when no single zone does,
// it takes what is free zone by zone, in order, until it has them all. CPUs
// come back when the pod ends. It is a stand-in for the kubelet's CPU
// manager, not a claim about what the scheduler decided: a pod that spans
// zones here is one that a real kubelet with the single-numa-node policy
// (which the sandbox's NodeResourceTopology objects advertise) would reject,
// and the report counts them.
package numa

import (
	"slices"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	resourcehelper "k8s.io/component-helpers/resource"
)

// Source says which NUMA zones hold a bound pod's CPUs; nil when unknown.
type Source interface {
	Zones(pod *v1.Pod) []string
}

// Zone is one NUMA zone of a node and its whole CPUs.
type Zone struct {
	Name string
	CPUs int
}

// Accountant keeps the sandbox's per-node accounting. It is safe for
// concurrent use.
type Accountant struct {
	mu    sync.Mutex
	nodes map[string]*node
	// zones remembers what each pod got, also after it ended, for the
	// report.
	zones map[types.UID][]string
	// held is what running pods hold, given back by Release.
	held map[types.UID]holding
}

type node struct {
	zones []Zone
	free  []int
}

type holding struct {
	node string
	cpus []int // per zone, in the node's order
}

// NewAccountant returns an Accountant that knows no nodes.
func NewAccountant() *Accountant {
	return &Accountant{
		nodes: map[string]*node{},
		zones: map[types.UID][]string{},
		held:  map[types.UID]holding{},
	}
}

// AddNode declares a node's zones, in the order pods fill them.
func (a *Accountant) AddNode(name string, zones []Zone) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := &node{zones: slices.Clone(zones), free: make([]int, len(zones))}
	for i, z := range zones {
		n.free[i] = z.CPUs
	}
	a.nodes[name] = n
}

// Admit gives a pod bound to nodeName its CPUs and returns the zones they
// are in. Admitting a pod again returns what it got the first time. On an
// unknown node, or for a pod that requests no CPU, it returns nil.
//
// When the zones lack free CPUs (the scheduler counts millicores, the
// accounting whole CPUs, so rounding can overcommit) the pod gets what is
// free, plus the first zone if nothing is: the report then still shows where
// it would contend.
func (a *Accountant) Admit(nodeName string, pod *v1.Pod) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if z, ok := a.zones[pod.UID]; ok {
		return z
	}
	n := a.nodes[nodeName]
	want := CPUs(pod)
	if n == nil || want == 0 || len(n.zones) == 0 {
		return nil
	}
	took := place(n.free, want)
	h := holding{node: nodeName, cpus: took}
	var names []string
	for i, c := range took {
		n.free[i] -= c
		if c > 0 {
			names = append(names, n.zones[i].Name)
		}
	}
	if len(names) == 0 {
		names = []string{n.zones[0].Name}
	}
	a.held[pod.UID] = h
	a.zones[pod.UID] = names
	return names
}

// place decides how many CPUs to take from each zone: all from the first
// zone that has want free, else first fit across zones in order.
func place(free []int, want int) []int {
	took := make([]int, len(free))
	for i, f := range free {
		if f >= want {
			took[i] = want
			return took
		}
	}
	for i, f := range free {
		if want == 0 {
			break
		}
		c := min(f, want)
		took[i] = c
		want -= c
	}
	return took
}

// Release gives back what a pod holds; releasing twice does nothing.
func (a *Accountant) Release(uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	h, ok := a.held[uid]
	if !ok {
		return
	}
	delete(a.held, uid)
	if n := a.nodes[h.node]; n != nil {
		for i, c := range h.cpus {
			n.free[i] += c
		}
	}
}

// Free returns the free CPUs per zone of a node, in order.
func (a *Accountant) Free(nodeName string) []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := a.nodes[nodeName]; n != nil {
		return slices.Clone(n.free)
	}
	return nil
}

// Zones returns the zones a pod was admitted to, nil if it never was.
func (a *Accountant) Zones(pod *v1.Pod) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.zones[pod.UID]
}

// CPUs is the pod's effective CPU request rounded up to whole CPUs, the
// unit a CPU manager hands out.
func CPUs(pod *v1.Pod) int {
	req := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
	milli := req.Cpu().MilliValue()
	return int((milli + 999) / 1000)
}
