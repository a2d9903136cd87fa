package numa

import (
	"encoding/binary"
	"slices"
)

// maxStates bounds the admission orders Safe explores for one node. Nodes
// hold few pods waiting for admission, and pods alike collapse into one
// branch, so real cases stay far below it; past it Safe answers no, and the
// pod goes elsewhere rather than risk a rejection.
const maxStates = 1 << 14

// Safe reports whether kubelet admits every pod of pending, in whatever
// order it admits them, on zones with free CPUs free. Under policies that
// never reject for alignment it only checks that the CPUs suffice.
func Safe(policy Policy, capacity, free []int64, pending []Demand) bool {
	if len(pending) == 0 {
		return true
	}
	if !policy.Rejects() {
		var room, need int64
		for _, f := range free {
			room += max(f, 0)
		}
		for _, d := range pending {
			need += max(peak(d), 0)
		}
		return need <= room
	}
	// Pods alike are one class: which of them goes first changes nothing.
	var classes []Demand
	var counts []int
	for _, d := range pending {
		i := slices.IndexFunc(classes, func(c Demand) bool { return slices.Equal(c, d) })
		if i < 0 {
			classes, counts = append(classes, d), append(counts, 0)
			i = len(classes) - 1
		}
		counts[i]++
	}
	s := search{policy: policy, capacity: capacity, classes: classes, seen: map[string]struct{}{}}
	return s.safe(slices.Clone(free), counts)
}

// peak is the most CPUs a pod holds at once while kubelet admits it.
func peak(d Demand) int64 {
	var held, most int64
	for _, u := range d {
		if u.Transient {
			most = max(most, held+u.CPUs)
			continue
		}
		held += u.CPUs
		most = max(most, held)
	}
	return most
}

type search struct {
	policy   Policy
	capacity []int64
	classes  []Demand
	seen     map[string]struct{}
	key      []byte
	aborted  bool
}

// safe explores every order from a state: the zones' free CPUs and how
// many pods of each class are still to be admitted.
func (s *search) safe(free []int64, counts []int) bool {
	if s.aborted {
		return false
	}
	k := s.keyOf(free, counts)
	if _, ok := s.seen[k]; ok {
		return true
	}
	if len(s.seen) >= maxStates {
		s.aborted = true
		return false
	}
	s.seen[k] = struct{}{}
	for i, c := range counts {
		if c == 0 {
			continue
		}
		next := slices.Clone(free)
		if a := Admit(s.policy, s.capacity, next, s.classes[i]); !a.Admitted {
			return false
		}
		counts[i]--
		ok := s.safe(next, counts)
		counts[i]++
		if !ok {
			return false
		}
	}
	return true
}

func (s *search) keyOf(free []int64, counts []int) string {
	s.key = s.key[:0]
	for _, f := range free {
		s.key = binary.AppendVarint(s.key, f)
	}
	for _, c := range counts {
		s.key = binary.AppendUvarint(s.key, uint64(c))
	}
	return string(s.key)
}

// Fits reports whether kubelet admits a pod with demand d on n, whatever
// the order it admits it in among the pending pods and more (pods planned
// to the node but not bound yet).
func (n *Node) Fits(more []Demand, d Demand) bool {
	if len(d) == 0 {
		return true
	}
	if len(n.Pending) == 0 && len(more) == 0 && len(d) == 1 && n.Policy == PolicySingleNUMANode {
		// Alone on the node: one zone with room is all it takes.
		for _, f := range n.Free {
			if f >= d[0].CPUs {
				return true
			}
		}
		return false
	}
	all := make([]Demand, 0, len(n.Pending)+len(more)+1)
	all = append(append(append(all, n.Pending...), more...), d)
	return Safe(n.Policy, n.Capacity, n.Free, all)
}

// Copies is how many pods with demand d fit n on top of more, up to limit.
func (n *Node) Copies(more []Demand, d Demand, limit int64) int64 {
	if len(d) == 0 || limit <= 0 {
		return limit
	}
	if len(n.Pending) == 0 && len(more) == 0 && len(d) == 1 && n.Policy.Rejects() && minZones(n.Capacity, d[0].CPUs) == 1 {
		// Alike pods each in one zone: however they come, each zone takes
		// as many as it divides into.
		var k int64
		for _, f := range n.Free {
			if d[0].CPUs > 0 {
				k += max(f, 0) / d[0].CPUs
			}
		}
		return min(k, limit)
	}
	base := append(append(make([]Demand, 0, len(n.Pending)+len(more)), n.Pending...), more...)
	fits := func(k int64) bool {
		all := append(slices.Clone(base), slices.Repeat([]Demand{d}, int(k))...)
		return Safe(n.Policy, n.Capacity, n.Free, all)
	}
	// Fewer copies are safe whenever more are (an order of the fewer is
	// the start of an order of the more), so search for the most. Room
	// bounds the answer: no more copies than the zones' CPUs hold.
	var room int64
	for _, f := range n.Free {
		room += max(f, 0)
	}
	hi := limit
	if c := d.CPUs(); c > 0 {
		hi = min(hi, room/c)
	}
	lo := int64(0)
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}
