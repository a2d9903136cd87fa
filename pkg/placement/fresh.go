package placement

import (
	"slices"

	"github.com/lockstep-sched/lockstep/pkg/numa"
)

// Counted returns req as it will be once the node agents have counted the
// pods kubelet has yet to admit, if kubelet admits them in the order they
// were bound: each node's zones less what those pods take, none pending.
// A plan against it is what the scheduler could do after waiting.
func Counted(req Request) Request {
	out := req
	out.Nodes = slices.Clone(req.Nodes)
	for i := range out.Nodes {
		z := out.Nodes[i].NUMA
		if z == nil || len(z.Pending) == 0 {
			continue
		}
		c := z.Clone()
		for _, d := range c.Pending {
			numa.Admit(c.Policy, c.Capacity, c.Free, d)
		}
		c.Pending = nil
		out.Nodes[i].NUMA = c
	}
	return out
}

// WholeZones counts the NUMA zones a plan puts members in that nothing
// uses yet: no CPUs taken by the agent's count nor by the pods pending
// there. A plan that takes fewer leaves more whole zones to pods that
// need them.
func WholeZones(req Request, p *Plan) int {
	whole := 0
	seen := map[[2]int]bool{}
	for mi, ni := range p.NodeOf {
		z := req.Nodes[ni].NUMA
		if z == nil || len(z.Allocatable) != len(z.Free) {
			continue
		}
		untouched := slices.Clone(z.Free)
		for _, d := range z.Pending {
			numa.Admit(z.Policy, z.Capacity, untouched, d)
		}
		for _, name := range p.ZonesOf[mi] {
			zi := slices.Index(z.Names, name)
			if zi < 0 || seen[[2]int{ni, zi}] {
				continue
			}
			seen[[2]int{ni, zi}] = true
			if untouched[zi] == z.Allocatable[zi] {
				whole++
			}
		}
	}
	return whole
}

// Pending reports whether any node of req has pods kubelet has yet to
// admit.
func Pending(req Request) bool {
	for i := range req.Nodes {
		if z := req.Nodes[i].NUMA; z != nil && len(z.Pending) > 0 {
			return true
		}
	}
	return false
}
