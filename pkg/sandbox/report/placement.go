package report

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// detailedNodes is the most nodes a map shows every node of at once; on a
// bigger cluster each rack is a strip of its nodes, opened on demand.
const detailedNodes = 64

type zoneView struct {
	Name  string
	Racks []rackView
}

// rackView is a rack: a strip with a cell per node, and its nodes.
type rackView struct {
	Name  string
	Nodes []nodeView
	// Strip has a cell per node, filled to the node's peak use.
	Strip []stripCell
	// About says how many nodes and CPUs and the rack's peak use.
	About string
	// Gangs lists the gangs with pods here, space-separated, for finding
	// one.
	Gangs string
}

// stripCell is one node in its rack's strip: filled to the share of its
// CPUs in use at the busiest moment of the run, in the colour of the gang
// that used most of them.
type stripCell struct {
	Node, Title, Color, Gangs string
	Peak                      int // percent
}

type nodeView struct {
	Name string
	CPUs int
	NUMA []numaView
	// Unknown holds pods whose NUMA zones are not known.
	Unknown []podBox
}

type numaView struct {
	// Name is what the map shows; Zone the NodeResourceTopology zone.
	Name, Zone string
	Pods       []podBox
}

type podBox struct {
	Title, Color string
	// Pod is namespace/name, Gang the gang's key ("" for an ordinary
	// pod): what finding a gang looks for.
	Pod, Gang string
	// Width is the pod's share of its zone's CPUs ("37.5%"): a row of
	// boxes is the zone's capacity, so a full zone looks full, and pods
	// that ran one after another stack in rows.
	Width string
	// Split marks a pod whose CPUs span zones; it is drawn in each, with
	// its CPUs shared out between them.
	Split bool
}

// placementMap groups nodes by zone and rack and puts every pod that ran
// on a node in the NUMA zones that held its CPUs, in bind order.
func placementMap(run Run, colors map[string]string) []zoneView {
	pods := slices.Clone(run.Pods)
	sort.SliceStable(pods, func(i, j int) bool { return pods[i].Bound.Before(pods[j].Bound) })
	byNode := map[string][]Pod{}
	for _, p := range pods {
		if p.Node != "" {
			byNode[p.Node] = append(byNode[p.Node], p)
		}
	}
	colorOf := func(p Pod) string {
		if c, ok := colors[p.GangKey()]; ok {
			return c
		}
		return ordinaryColor
	}
	var zones []zoneView
	zoneIdx, rackIdx := map[string]int{}, map[string]int{}
	rackPods, rackCPUs := map[string][]Pod{}, map[string]int{}
	for _, n := range run.Nodes {
		zi, ok := zoneIdx[n.Zone]
		if !ok {
			zi = len(zones)
			zoneIdx[n.Zone] = zi
			zones = append(zones, zoneView{Name: n.Zone})
		}
		z := &zones[zi]
		ri, ok := rackIdx[n.Rack]
		if !ok {
			ri = len(z.Racks)
			rackIdx[n.Rack] = ri
			z.Racks = append(z.Racks, rackView{Name: n.Rack})
		}
		on := byNode[n.Name]
		rackPods[n.Rack] = append(rackPods[n.Rack], on...)
		rackCPUs[n.Rack] += n.CPUs
		z.Racks[ri].Nodes = append(z.Racks[ri].Nodes, nodeOf(n, on, colorOf))
		z.Racks[ri].Strip = append(z.Racks[ri].Strip, cellOf(n, on, run.End, colorOf))
	}
	for zi := range zones {
		for ri := range zones[zi].Racks {
			r := &zones[zi].Racks[ri]
			gangs := map[string]bool{}
			for _, p := range rackPods[r.Name] {
				if p.Gang != "" {
					gangs[p.GangKey()] = true
				}
			}
			r.Gangs = strings.Join(slices.Sorted(maps.Keys(gangs)), " ")
			r.About = fmt.Sprintf("%d nodes · %d CPUs · peak %d%% in use", len(r.Nodes), rackCPUs[r.Name],
				percent(peakMilli(rackPods[r.Name], run.End), rackCPUs[r.Name]))
		}
	}
	return zones
}

// nodeOf lays out one node: its NUMA zones and the pods each held.
func nodeOf(n Node, pods []Pod, colorOf func(Pod) string) nodeView {
	nv := nodeView{Name: n.Name, CPUs: n.CPUs}
	idx := map[string]int{}
	for i, name := range n.NUMAZones {
		idx[name] = i
		// Kubelet names zones node-0, node-1: shown as such beside node
		// names they read as nodes.
		nv.NUMA = append(nv.NUMA, numaView{Name: fmt.Sprintf("NUMA %d", i), Zone: name})
	}
	zoneMilli := float64(n.CPUs) * 1000 / float64(max(1, len(n.NUMAZones)))
	for _, p := range pods {
		var known []int
		for _, z := range p.NUMAZones {
			if i, ok := idx[z]; ok {
				known = append(known, i)
			}
		}
		box := podBox{Title: podTitle(p), Color: colorOf(p), Pod: p.Namespace + "/" + p.Name, Gang: p.GangKey(), Split: len(p.NUMAZones) > 1}
		if len(known) == 0 {
			box.Width = share(float64(p.CPUMilli), float64(n.CPUs)*1000)
			nv.Unknown = append(nv.Unknown, box)
			continue
		}
		box.Width = share(float64(p.CPUMilli)/float64(len(known)), zoneMilli)
		for _, i := range known {
			nv.NUMA[i].Pods = append(nv.NUMA[i].Pods, box)
		}
	}
	return nv
}

// share is part of whole as a CSS width, at least a sliver so that a tiny
// pod still shows.
func share(part, whole float64) string {
	if whole <= 0 {
		return "100%"
	}
	return fmt.Sprintf("%.2f%%", math.Min(100, math.Max(2, 100*part/whole)))
}

// cellOf is a node's cell in its rack's strip.
func cellOf(n Node, pods []Pod, end time.Time, colorOf func(Pod) string) stripCell {
	c := stripCell{Node: n.Name, Peak: percent(peakMilli(pods, end), n.CPUs)}
	use := map[string]int64{} // CPU by gang key, "" for ordinary pods
	for _, p := range pods {
		use[p.GangKey()] += p.CPUMilli
	}
	var top string
	var topMilli int64 = -1
	for _, k := range slices.Sorted(maps.Keys(use)) {
		if use[k] > topMilli {
			top, topMilli = k, use[k]
		}
	}
	var gangs, parts []string
	for _, k := range slices.Sorted(maps.Keys(use)) {
		name := k
		if k == "" {
			name = "ordinary pods"
		} else {
			gangs = append(gangs, k)
		}
		parts = append(parts, fmt.Sprintf("%s %gm", name, float64(use[k])))
	}
	c.Gangs = strings.Join(gangs, " ")
	c.Title = fmt.Sprintf("%s: peak %d%% of %d CPUs in use", n.Name, c.Peak, n.CPUs)
	if len(parts) > 0 {
		c.Title += "\nCPU requested over the run: " + strings.Join(parts, ", ")
		for _, p := range pods {
			if p.GangKey() == top {
				c.Color = colorOf(p)
				break
			}
		}
	}
	return c
}

// peakMilli is the most CPU the pods held at once, from their binding to
// their end (or the run's).
func peakMilli(pods []Pod, end time.Time) int64 {
	type change struct {
		at    time.Time
		milli int64
	}
	var changes []change
	for _, p := range pods {
		if p.Bound.IsZero() {
			continue
		}
		changes = append(changes, change{p.Bound, p.CPUMilli}, change{orEnd(p.Finished, end), -p.CPUMilli})
	}
	// Ends before starts at the same moment: a pod that replaces another
	// does not count twice.
	sort.Slice(changes, func(i, j int) bool {
		if changes[i].at.Equal(changes[j].at) {
			return changes[i].milli < changes[j].milli
		}
		return changes[i].at.Before(changes[j].at)
	})
	var cur, peak int64
	for _, c := range changes {
		cur += c.milli
		peak = max(peak, cur)
	}
	return peak
}

func percent(milli int64, cpus int) int {
	if cpus <= 0 {
		return 0
	}
	return int(math.Round(float64(milli) / float64(cpus*10)))
}
