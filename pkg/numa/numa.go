// Package numa models how kubelet gives a pod exclusive CPUs on a node's
// NUMA zones: the CPU manager's static policy, the Topology Manager's
// policies and scopes, and which zone wins when several fit (the lowest
// numbered). It is the one NUMA model of Lockstep: the planner, the
// plugin's Filter, the NUMA accounting and the sandbox's kubelet all use it,
// so what the scheduler plans is what the sandbox admits.
//
// Lockstep cannot tell kubelet which zone a pod gets: kubelet picks it when
// it admits the pod, from the zones free at that moment. The zones the pods
// bound to a node end up in therefore depend on the order kubelet admits
// them. Safe answers whether every order works; the scheduler only places a
// pod where it does.
//
// CPUs are counted in whole CPUs, the unit the CPU manager hands out.
package numa

import (
	"fmt"
	"math/bits"
	"slices"
)

// Policy is kubelet's Topology Manager policy (topologyManagerPolicy).
type Policy string

// The Topology Manager policies.
const (
	PolicyNone           Policy = "none"
	PolicyBestEffort     Policy = "best-effort"
	PolicyRestricted     Policy = "restricted"
	PolicySingleNUMANode Policy = "single-numa-node"
)

// Scope is kubelet's Topology Manager scope (topologyManagerScope).
type Scope string

// The Topology Manager scopes.
const (
	ScopeContainer Scope = "container"
	ScopePod       Scope = "pod"
)

// Rejects reports whether kubelet can refuse a pod for want of aligned
// CPUs under the policy (TopologyAffinityError).
func (p Policy) Rejects() bool {
	return p == PolicyRestricted || p == PolicySingleNUMANode
}

// Node is a node's NUMA zones as the CPU manager sees them. Zones are in
// NUMA id order, which decides kubelet's choice among zones that fit.
type Node struct {
	Policy Policy
	Scope  Scope
	// Names are the zones' names (node-0, node-1, ...).
	Names []string
	// Capacity is each zone's CPUs, including those kubelet reserves: what
	// decides how few zones a pod could ever fit in.
	Capacity []int64
	// Allocatable is each zone's CPUs for exclusive use when it runs
	// nothing; nil when unknown.
	Allocatable []int64
	// Free is each zone's CPUs free for exclusive use now, as the node
	// agent last counted them.
	Free []int64
	// Pending are the pods bound or assumed to the node that the agent has
	// not counted yet, in the order they were bound: kubelet may admit
	// them in any order.
	Pending []Demand
}

// Clone returns a copy that shares nothing with n.
func (n *Node) Clone() *Node {
	if n == nil {
		return nil
	}
	c := *n
	c.Names, c.Capacity, c.Free = slices.Clone(n.Names), slices.Clone(n.Capacity), slices.Clone(n.Free)
	c.Allocatable = slices.Clone(n.Allocatable)
	c.Pending = slices.Clone(n.Pending)
	return &c
}

// Unit is what one admission step asks of the CPU manager: one container
// in container scope, the whole pod in pod scope.
type Unit struct {
	CPUs int64
	// Transient units (init containers) must be admitted, and give their
	// CPUs back for the containers after them.
	Transient bool
}

// Demand is what a pod asks of the CPU manager on a node, in the order
// kubelet admits it; empty when the pod gets no exclusive CPUs.
type Demand []Unit

// CPUs returns the CPUs the pod holds once running.
func (d Demand) CPUs() int64 {
	var n int64
	for _, u := range d {
		if !u.Transient {
			n += u.CPUs
		}
	}
	return n
}

func (d Demand) String() string {
	return fmt.Sprint([]Unit(d))
}

// Admission is what kubelet did with one pod.
type Admission struct {
	// Admitted is false when kubelet rejects the pod.
	Admitted bool
	// Reason is kubelet's reason for a rejection: TopologyAffinityError,
	// or UnexpectedAdmissionError when there are not enough CPUs at all.
	Reason string
	// Took is the CPUs taken from each zone, in zone order.
	Took []int64
}

// Zones returns the indices of the zones the pod took CPUs from.
func (a Admission) Zones() []int {
	var out []int
	for i, c := range a.Took {
		if c > 0 {
			out = append(out, i)
		}
	}
	return out
}

// Kubelet's reasons for refusing a pod at admission.
const (
	ReasonTopologyAffinity = "TopologyAffinityError"
	ReasonUnexpected       = "UnexpectedAdmissionError"
)

// MaxZones is the most NUMA zones the model handles: it weighs every set
// of zones, and kubelet itself refuses more than 8 unless told otherwise.
const MaxZones = 16

// Admit plays kubelet admitting a pod with demand d on zones with free CPUs
// free, which it updates in place when the pod is admitted and leaves
// unchanged when it is not.
func Admit(policy Policy, capacity, free []int64, d Demand) Admission {
	if len(free) > MaxZones || len(capacity) != len(free) {
		return Admission{Reason: ReasonUnexpected}
	}
	took := make([]int64, len(free))
	work := slices.Clone(free)
	for _, u := range d {
		if u.CPUs <= 0 {
			continue
		}
		unit, reason := admitUnit(policy, capacity, work, u.CPUs)
		if reason != "" {
			return Admission{Reason: reason}
		}
		if u.Transient {
			// An init container's CPUs come back before the next
			// container is admitted.
			continue
		}
		for i, c := range unit {
			work[i] -= c
			took[i] += c
		}
	}
	copy(free, work)
	return Admission{Admitted: true, Took: took}
}

// ZoneOf returns the one zone kubelet gives a pod of a single unit that
// fits a zone, without allocating: the lowest numbered zone with room
// (-1 when none has, or when kubelet would not choose a single zone this
// way: policy none, or a pod larger than a zone).
func ZoneOf(policy Policy, capacity, free []int64, d Demand) int {
	if len(d) != 1 || d[0].Transient || policy == PolicyNone || policy == "" || minZones(capacity, d[0].CPUs) != 1 {
		return -1
	}
	for i, f := range free {
		if f >= d[0].CPUs {
			return i
		}
	}
	return -1
}

// admitUnit decides one unit: the CPUs it takes per zone, or kubelet's
// reason for refusing it.
func admitUnit(policy Policy, capacity, free []int64, cpus int64) ([]int64, string) {
	n := len(free)
	if n == 0 {
		return nil, ""
	}
	var total int64
	for _, f := range free {
		total += max(f, 0)
	}
	if policy == PolicyNone || policy == "" {
		// No alignment: the CPU manager packs onto the zones with the
		// fewest free CPUs.
		if total < cpus {
			return nil, ReasonUnexpected
		}
		return packed(capacity, free, allZones(n), cpus), ""
	}
	mask, preferred, ok := bestHint(policy, capacity, free, cpus)
	if policy.Rejects() && (!ok || !preferred) {
		return nil, ReasonTopologyAffinity
	}
	if !ok {
		// best-effort without a hint that fits: anywhere.
		if total < cpus {
			return nil, ReasonUnexpected
		}
		return packed(capacity, free, allZones(n), cpus), ""
	}
	took := packed(capacity, free, mask, cpus)
	var got int64
	for _, c := range took {
		got += c
	}
	if got < cpus {
		// The rest comes from anywhere.
		rest := slices.Clone(free)
		for i := range rest {
			rest[i] -= took[i]
		}
		more := packed(capacity, rest, allZones(n), cpus-got)
		for i := range took {
			took[i] += more[i]
		}
	}
	return took, ""
}

func allZones(n int) uint64 { return uint64(1)<<n - 1 }

// bestHint is the Topology Manager's choice for cpus: among the zone sets
// with enough free CPUs, a preferred one (as few zones as could ever hold
// the request) before others, then the narrowest, then the lowest
// numbered. ok is false when no set fits.
func bestHint(policy Policy, capacity, free []int64, cpus int64) (mask uint64, preferred, ok bool) {
	n := len(free)
	minAffinity := minZones(capacity, cpus)
	best, bestPreferred, found := uint64(0), false, false
	for m := uint64(1); m <= allZones(n); m++ {
		count := bits.OnesCount64(m)
		if policy == PolicySingleNUMANode && count != 1 {
			continue
		}
		var room int64
		for i := 0; i < n; i++ {
			if m&(1<<i) != 0 {
				room += max(free[i], 0)
			}
		}
		if room < cpus {
			continue
		}
		pref := count == minAffinity
		if policy == PolicySingleNUMANode && !pref {
			continue
		}
		if !found || better(m, pref, best, bestPreferred) {
			best, bestPreferred, found = m, pref, true
		}
	}
	return best, bestPreferred, found
}

// better reports whether hint m beats the current best: preferred first,
// then fewer zones, then the lower mask (kubelet's IsNarrowerThan). Among
// non-preferred hints kubelet aims for the narrowest that fits, which is
// the same order when only CPUs give hints.
func better(m uint64, pref bool, best uint64, bestPref bool) bool {
	if pref != bestPref {
		return pref
	}
	cm, cb := bits.OnesCount64(m), bits.OnesCount64(best)
	if cm != cb {
		return cm < cb
	}
	return m < best
}

// minZones is the fewest zones whose CPUs together could ever hold cpus:
// kubelet's minAffinitySize, all zones when none could.
func minZones(capacity []int64, cpus int64) int {
	sorted := slices.Clone(capacity)
	slices.SortFunc(sorted, func(a, b int64) int { return int(b - a) })
	var sum int64
	for i, c := range sorted {
		sum += c
		if sum >= cpus {
			return i + 1
		}
	}
	return len(capacity)
}

// packed takes cpus from the zones in mask as the CPU manager's packed
// allocation does: whole free zones while the request is at least a zone,
// then the fullest zones first (fewest free CPUs, then lowest id).
func packed(capacity, free []int64, mask uint64, cpus int64) []int64 {
	took := make([]int64, len(free))
	order := make([]int, 0, len(free))
	for i := range free {
		if mask&(1<<i) == 0 || free[i] <= 0 {
			continue
		}
		if free[i] == capacity[i] && cpus >= free[i] {
			took[i] = free[i]
			cpus -= free[i]
			continue
		}
		order = append(order, i)
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case free[a] < free[b]:
			return -1
		case free[a] > free[b]:
			return 1
		}
		return a - b
	})
	for _, i := range order {
		if cpus <= 0 {
			break
		}
		c := min(cpus, free[i])
		took[i] = c
		cpus -= c
	}
	return took
}
