// Package cpumanager plays, for the sandbox's simulated nodes, kubelet's CPU
// manager and Topology Manager (with pkg/numa's model, the one the
// scheduler plans with) and the node agent that publishes each node's
// NodeResourceTopology. A pod kubelet would reject for want of aligned CPUs
// is rejected here too, so the sandbox and the bench measure the truth.
package cpumanager

import (
	"slices"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/lockstep-sched/lockstep/pkg/numa"
)

// Source says which NUMA zones hold a bound pod's CPUs; nil when unknown.
type Source interface {
	Zones(pod *v1.Pod) []string
}

// Manager keeps every simulated node's CPUs. It is safe for concurrent
// use.
type Manager struct {
	mu    sync.Mutex
	nodes map[string]*numa.Node
	// zones remembers what each pod got, also after it ended, for the
	// report.
	zones map[types.UID][]string
	// held is what running pods hold, given back by Release.
	held map[types.UID]holding
	// dirty are the nodes whose free CPUs changed since the agent last
	// published them.
	dirty  map[string]bool
	notify chan struct{}
}

type holding struct {
	node string
	took []int64
}

// New returns a Manager that knows no nodes.
func New() *Manager {
	return &Manager{
		nodes:  map[string]*numa.Node{},
		zones:  map[types.UID][]string{},
		held:   map[types.UID]holding{},
		dirty:  map[string]bool{},
		notify: make(chan struct{}, 1),
	}
}

// AddNode declares a node's zones (policy, scope, names and CPUs, all
// free).
func (m *Manager) AddNode(name string, n numa.Node) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := n.Clone()
	c.Free = slices.Clone(c.Capacity)
	c.Pending = nil
	m.nodes[name] = c
}

// Admit admits a pod bound to a node as kubelet would: it returns the
// zones its CPUs are in, or kubelet's reason for rejecting it. Admitting a
// pod again returns what it got the first time. A pod without exclusive
// CPUs, or on an unknown node, is admitted with no zones.
func (m *Manager) Admit(node string, pod *v1.Pod) (zones []string, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if z, ok := m.zones[pod.UID]; ok {
		return z, ""
	}
	n := m.nodes[node]
	needs := numa.NeedsOf(pod)
	if n == nil || needs == nil {
		return nil, ""
	}
	a := numa.Admit(n.Policy, n.Capacity, n.Free, needs.For(n.Scope))
	if !a.Admitted {
		return nil, a.Reason
	}
	for _, i := range a.Zones() {
		zones = append(zones, n.Names[i])
	}
	m.held[pod.UID] = holding{node: node, took: a.Took}
	m.zones[pod.UID] = zones
	m.touch(node)
	return zones, ""
}

// Release gives back what a pod holds; releasing twice does nothing.
func (m *Manager) Release(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.held[uid]
	if !ok {
		return
	}
	delete(m.held, uid)
	if n := m.nodes[h.node]; n != nil {
		for i, c := range h.took {
			n.Free[i] += c
		}
		m.touch(h.node)
	}
}

func (m *Manager) touch(node string) {
	m.dirty[node] = true
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// Free returns the free CPUs per zone of a node, in NUMA order.
func (m *Manager) Free(node string) []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := m.nodes[node]; n != nil {
		return slices.Clone(n.Free)
	}
	return nil
}

// Zones returns the zones a pod was admitted to, nil if it never was.
func (m *Manager) Zones(pod *v1.Pod) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.zones[pod.UID]
}

// changed takes the nodes changed since the last call, with their free
// CPUs by zone name.
func (m *Manager) changed() map[string]map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]map[string]int64, len(m.dirty))
	for node := range m.dirty {
		n := m.nodes[node]
		free := make(map[string]int64, len(n.Names))
		for i, name := range n.Names {
			free[name] = n.Free[i]
		}
		out[node] = free
	}
	clear(m.dirty)
	return out
}
