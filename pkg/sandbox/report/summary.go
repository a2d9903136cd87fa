package report

import (
	"slices"
	"sort"
	"time"

	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// GangSummary is one gang's measures.
type GangSummary struct {
	Namespace, Name  string
	Pods, MinMember  int
	Bound            int
	RequiredTopology string
	// Created is when the PodGroup appeared; FirstBind and LastBind bound
	// its members' binds; Running is when minMember members were running;
	// Finished is when the last member ended. Zero when it did not happen.
	Created, FirstBind, LastBind, Running, Finished time.Time
	// QuorumBind is when the minMember-th member was bound: the gang's
	// start. Wait is QuorumBind - Created and Skew QuorumBind - FirstBind,
	// which for a gang of exactly minMember pods is its last bind; an
	// elastic gang's extra pods come as room allows, and are left out so
	// that they do not pass for a gang bound apart. Only meaningful when
	// Bound > 0.
	QuorumBind time.Time
	Wait, Skew time.Duration
	// Nodes and Racks the members were bound to; IdealNodes is the fewest
	// nodes the gang's requests fit on by size alone.
	Nodes, IdealNodes, Racks int
	// NUMAMin and NUMAMax are the fewest and most NUMA zones one member's
	// CPUs took; Split counts members in more than one zone.
	NUMAMin, NUMAMax, Split int
	// Phase is the PodGroup's final phase.
	Phase string
}

// Key is namespace/name.
func (g GangSummary) Key() string { return g.Namespace + "/" + g.Name }

// Done reports whether the PodGroup reached the Finished phase.
func (g GangSummary) Done() bool { return g.Phase == string(v1alpha1.PodGroupFinished) }

// Summary is the measures of a run.
type Summary struct {
	Duration              time.Duration
	TimedOut, Interrupted bool
	Gangs                 []GangSummary
	// GangsFinished counts gangs whose PodGroup reached Finished,
	// GangsBound those with any member bound.
	GangsFinished, GangsBound int
	// Ordinary pods are those of no gang.
	OrdinaryPods, OrdinaryDone int
	PodsTotal, PodsBound       int
	PodsSucceeded, PodsFailed  int
	// SplitPods counts pods whose CPUs took more than one NUMA zone;
	// Rejected those kubelet refused at admission.
	SplitPods, Rejected int
	// WaitP50 and WaitMax are over gangs with members bound; SkewMax too.
	WaitP50, WaitMax, SkewMax time.Duration
	// Throughput is pods bound per second from the first bind to the last.
	Throughput float64
	// LeftBehind are members (namespace/name) never bound although their
	// PodGroup reached a final phase: the run does not wait for them.
	LeftBehind []string
	Errors     []string
}

// Summarize computes the measures of a run. Gangs come in the order they
// were created.
func Summarize(run Run) Summary {
	s := Summary{Duration: run.End.Sub(run.Start), TimedOut: run.TimedOut, Interrupted: run.Interrupted, Errors: run.Errors}
	nodes := map[string]Node{}
	for _, n := range run.Nodes {
		nodes[n.Name] = n
	}
	members := map[string][]Pod{}
	final := finalGangs(run.Gangs)
	var firstBind, lastBind time.Time
	for _, p := range run.Pods {
		if p.Bound.IsZero() && !p.Terminal() && final[p.GangKey()] {
			s.LeftBehind = append(s.LeftBehind, p.Namespace+"/"+p.Name)
		}
		s.PodsTotal++
		if !p.Bound.IsZero() {
			s.PodsBound++
			firstBind = earliest(firstBind, p.Bound)
			lastBind = latest(lastBind, p.Bound)
		}
		switch p.Phase {
		case v1.PodSucceeded:
			s.PodsSucceeded++
		case v1.PodFailed:
			s.PodsFailed++
		}
		if len(p.NUMAZones) > 1 {
			s.SplitPods++
		}
		if p.Rejected != "" {
			s.Rejected++
		}
		if p.Gang == "" {
			s.OrdinaryPods++
			if p.Terminal() {
				s.OrdinaryDone++
			}
			continue
		}
		members[p.GangKey()] = append(members[p.GangKey()], p)
	}
	if s.PodsBound > 1 && lastBind.After(firstBind) {
		s.Throughput = float64(s.PodsBound) / lastBind.Sub(firstBind).Seconds()
	}

	gangs := slices.Clone(run.Gangs)
	sort.SliceStable(gangs, func(i, j int) bool { return gangs[i].Created.Before(gangs[j].Created) })
	var waits []time.Duration
	for _, g := range gangs {
		gs := summarizeGang(g, members[g.Key()], nodes, run.Nodes)
		if gs.Done() {
			s.GangsFinished++
		}
		if gs.Bound > 0 {
			s.GangsBound++
			waits = append(waits, gs.Wait)
			s.SkewMax = max(s.SkewMax, gs.Skew)
		}
		s.Gangs = append(s.Gangs, gs)
	}
	if len(waits) > 0 {
		slices.Sort(waits)
		s.WaitP50 = waits[(len(waits)-1)/2]
		s.WaitMax = waits[len(waits)-1]
	}
	return s
}

func summarizeGang(g Gang, pods []Pod, nodes map[string]Node, all []Node) GangSummary {
	gs := GangSummary{
		Namespace: g.Namespace, Name: g.Name,
		Pods: len(pods), MinMember: max(g.MinMember, 1),
		RequiredTopology: g.RequiredTopology,
		Created:          g.Created,
		Phase:            g.Phase,
	}
	if gs.Phase == "" {
		gs.Phase = string(v1alpha1.PodGroupPending)
	}
	usedNodes, usedRacks := map[string]bool{}, map[string]bool{}
	var cpu, mem int64
	var running, binds []time.Time
	allDone := len(pods) > 0
	for _, p := range pods {
		cpu += p.CPUMilli
		mem += p.Memory
		if !p.Running.IsZero() {
			running = append(running, p.Running)
		}
		if p.Terminal() && !p.Finished.IsZero() {
			gs.Finished = latest(gs.Finished, p.Finished)
		} else if !p.Terminal() {
			allDone = false
		}
		if p.Bound.IsZero() {
			continue
		}
		gs.Bound++
		binds = append(binds, p.Bound)
		gs.FirstBind = earliest(gs.FirstBind, p.Bound)
		gs.LastBind = latest(gs.LastBind, p.Bound)
		usedNodes[p.Node] = true
		if n, ok := nodes[p.Node]; ok {
			usedRacks[n.Rack] = true
		}
		if z := len(p.NUMAZones); z > 0 {
			if gs.NUMAMin == 0 || z < gs.NUMAMin {
				gs.NUMAMin = z
			}
			gs.NUMAMax = max(gs.NUMAMax, z)
			if z > 1 {
				gs.Split++
			}
		}
	}
	if !allDone {
		gs.Finished = time.Time{}
	}
	if gs.Bound > 0 {
		slices.SortFunc(binds, time.Time.Compare)
		gs.QuorumBind = binds[min(gs.MinMember, gs.Bound)-1]
		gs.Wait = gs.QuorumBind.Sub(gs.Created)
		gs.Skew = gs.QuorumBind.Sub(gs.FirstBind)
	}
	// The gang runs once its quorum does.
	if len(running) >= gs.MinMember {
		slices.SortFunc(running, time.Time.Compare)
		gs.Running = running[gs.MinMember-1]
	}
	gs.Nodes, gs.Racks = len(usedNodes), len(usedRacks)
	gs.IdealNodes = idealNodes(cpu, mem, all)
	return gs
}

// IsFinal reports whether a PodGroup phase is one the gang does not leave
// by itself.
func IsFinal(phase string) bool {
	return phase == string(v1alpha1.PodGroupFinished) || phase == string(v1alpha1.PodGroupFailed)
}

func finalGangs(gangs []Gang) map[string]bool {
	out := map[string]bool{}
	for _, g := range gangs {
		out[g.Key()] = IsFinal(g.Phase)
	}
	return out
}

// idealNodes is ceil(request / node size), by CPU and by memory, on the
// largest node; 0 when there are no nodes.
func idealNodes(cpuMilli, mem int64, nodes []Node) int {
	var nodeCPU, nodeMem int64
	for _, n := range nodes {
		nodeCPU = max(nodeCPU, int64(n.CPUs)*1000)
		nodeMem = max(nodeMem, n.Memory)
	}
	ideal := 0
	if nodeCPU > 0 {
		ideal = int(ceilDiv(cpuMilli, nodeCPU))
	}
	if nodeMem > 0 {
		ideal = max(ideal, int(ceilDiv(mem, nodeMem)))
	}
	return ideal
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// State is where a gang stands while the run goes on.
type State int

const (
	// Waiting: fewer than minMember members bound.
	Waiting State = iota
	// Placed: minMember members bound, not yet running.
	Placed
	// Running: minMember members running (or done).
	Running
	// Finished: every member ended.
	Finished
)

// Progress counts gangs by state and pods bound, from the pods: it moves as
// soon as the pods do, before the PodGroup controller writes status.
type Progress struct {
	Waiting, Placed, Running, Finished int
	PodsBound, PodsDone, PodsSeen      int
}

// ProgressOf computes the counts of a run in progress.
func ProgressOf(run Run) Progress {
	var pr Progress
	// busy counts members bound and not yet ended.
	type tally struct{ pods, bound, running, done, busy int }
	t := map[string]*tally{}
	for _, g := range run.Gangs {
		t[g.Key()] = &tally{}
	}
	for _, p := range run.Pods {
		pr.PodsSeen++
		if !p.Bound.IsZero() {
			pr.PodsBound++
		}
		if p.Terminal() {
			pr.PodsDone++
		}
		g := t[p.GangKey()]
		if g == nil {
			continue
		}
		g.pods++
		if !p.Bound.IsZero() {
			g.bound++
		}
		if !p.Running.IsZero() {
			g.running++
		}
		if p.Terminal() {
			g.done++
		} else if !p.Bound.IsZero() {
			g.busy++
		}
	}
	for _, g := range run.Gangs {
		c := t[g.Key()]
		min := max(g.MinMember, 1)
		switch {
		case c.pods > 0 && c.done == c.pods, IsFinal(g.Phase) && c.busy == 0:
			pr.Finished++
		case c.running >= min:
			pr.Running++
		case c.bound >= min:
			pr.Placed++
		default:
			pr.Waiting++
		}
	}
	return pr
}
