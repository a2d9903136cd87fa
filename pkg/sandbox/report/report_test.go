package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// testRun: gang a (3 pods, min 2) on two racks, one pod split over NUMA
// zones; gang b never placed; one ordinary pod.
func testRun() Run {
	nodes := []Node{
		{Name: "n1", Rack: "r1", Zone: "z", CPUs: 8, Memory: 32 << 30, NUMAZones: []string{"node-0", "node-1"}},
		{Name: "n2", Rack: "r1", Zone: "z", CPUs: 8, Memory: 32 << 30, NUMAZones: []string{"node-0", "node-1"}},
		{Name: "n3", Rack: "r2", Zone: "z", CPUs: 8, Memory: 32 << 30, NUMAZones: []string{"node-0", "node-1"}},
	}
	done := v1.PodSucceeded
	return Run{
		Start: t0, End: at(10000), Cluster: "3 nodes",
		Nodes: nodes,
		Gangs: []Gang{
			{Namespace: "ns", Name: "b", MinMember: 2, Created: at(200), Phase: "Pending"},
			{Namespace: "ns", Name: "a", MinMember: 2, Created: at(100), Phase: "Finished", RequiredTopology: "topology.kubernetes.io/rack"},
		},
		Pods: []Pod{
			{Namespace: "ns", Name: "a-0", Gang: "a", Node: "n1", CPUMilli: 6000, Memory: 1 << 30,
				Created: at(100), Bound: at(1000), Running: at(1100), Finished: at(6000), Phase: done, NUMAZones: []string{"node-0"}},
			{Namespace: "ns", Name: "a-1", Gang: "a", Node: "n1", CPUMilli: 6000, Memory: 1 << 30,
				Created: at(100), Bound: at(1004), Running: at(1300), Finished: at(6100), Phase: done, NUMAZones: []string{"node-0", "node-1"}},
			{Namespace: "ns", Name: "a-2", Gang: "a", Node: "n3", CPUMilli: 6000, Memory: 1 << 30,
				Created: at(100), Bound: at(1012), Running: at(1200), Finished: at(6200), Phase: done, NUMAZones: []string{"node-1"}},
			{Namespace: "ns", Name: "b-0", Gang: "b", Created: at(200), Phase: v1.PodPending},
			{Namespace: "ns", Name: "web", Node: "n2", CPUMilli: 500, Created: at(0), Bound: at(50), Running: at(60), Finished: at(3000), Phase: done, NUMAZones: []string{"node-0"}},
		},
		Errors: []string{"x.yaml: Deployment/web: kind Deployment is not supported (only Pod, PodGroup)"},
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize(testRun())
	if len(s.Gangs) != 2 || s.Gangs[0].Name != "a" {
		t.Fatalf("gangs = %+v, want a then b (creation order)", s.Gangs)
	}
	a := s.Gangs[0]
	checks := []struct {
		what      string
		got, want any
	}{
		{"pods", a.Pods, 3},
		{"bound", a.Bound, 3},
		// minMember 2: the quorum is bound with the 2nd bind, at 1004; the
		// 3rd member is an elastic extra.
		{"quorum bind", a.QuorumBind, at(1004)},
		{"wait", a.Wait, 904 * time.Millisecond}, // 1004 - created 100
		{"skew", a.Skew, 4 * time.Millisecond},   // 1004 - 1000
		{"last bind", a.LastBind, at(1012)},
		{"nodes", a.Nodes, 2},
		{"ideal nodes", a.IdealNodes, 3}, // 18 CPUs on 8-CPU nodes
		{"racks", a.Racks, 2},
		{"NUMA min", a.NUMAMin, 1},
		{"NUMA max", a.NUMAMax, 2},
		{"split", a.Split, 1},
		{"running", a.Running, at(1200)}, // the 2nd (minMember) member to run
		{"finished", a.Finished, at(6200)},
		{"done", a.Done(), true},
		{"gangs finished", s.GangsFinished, 1},
		{"pods total", s.PodsTotal, 5},
		{"pods bound", s.PodsBound, 4},
		{"succeeded", s.PodsSucceeded, 4},
		{"ordinary", s.OrdinaryPods, 1},
		{"split pods", s.SplitPods, 1},
		{"skew max", s.SkewMax, 4 * time.Millisecond},
		{"wait p50", s.WaitP50, 904 * time.Millisecond},
		{"b bound", s.Gangs[1].Bound, 0},
		{"b finished", s.Gangs[1].Finished, time.Time{}},
		{"b phase", s.Gangs[1].Phase, "Pending"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	// 4 binds from 50ms to 1012ms.
	if want := 4 / 0.962; s.Throughput < want-0.01 || s.Throughput > want+0.01 {
		t.Errorf("throughput = %f, want %f", s.Throughput, want)
	}
}

func TestProgressOf(t *testing.T) {
	run := testRun()
	p := ProgressOf(run)
	if p.Finished != 1 || p.Waiting != 1 || p.PodsBound != 4 || p.PodsDone != 4 || p.PodsSeen != 5 {
		t.Errorf("progress = %+v", p)
	}
	// Gang a earlier in its life: two bound, none running.
	for i := range run.Pods[:3] {
		run.Pods[i].Running, run.Pods[i].Finished, run.Pods[i].Phase = time.Time{}, time.Time{}, v1.PodPending
	}
	run.Pods[2].Bound = time.Time{}
	if p := ProgressOf(run); p.Placed != 1 || p.Finished != 0 {
		t.Errorf("progress with a placed gang = %+v", p)
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, Summarize(testRun())); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"GANG", "PODS / MINMEMBER", "ns/a *", "3/2", "0.9s", "4ms", "2 (3)", "1-2 (1 split)", "Finished",
		"ns/b", "Pending", "gangs finished:   1 of 2", "errors:           1",
		"must fit one topology domain",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteHTML(t *testing.T) {
	run := testRun()
	var b bytes.Buffer
	if err := WriteHTML(&b, run, Summarize(run)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		`id="placement-map"`, `id="node-n1"`, `id="node-n2"`, `id="node-n3"`, `id="timeline"`,
		"ns/a", "ns/b", "ordinary pods", "r1", "r2", "node-0", "node-1", "pod split",
		"kind Deployment is not supported",
		// For people: it fits a phone, the columns and zones say what
		// they are, the chart has a legend, an axis title and a text
		// alternative, and the first gangs have colour-blind-safe colours.
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		`<div class="scroll"><table class="gangs"`, "Pods / minMember",
		`<div class="label" title="NodeResourceTopology zone node-0">NUMA 0</div>`,
		`role="img" aria-labelledby="timeline-title"`, `<title id="timeline-title">`, "s since start",
		"waiting (PodGroup created to first bind)", "running (gang colour)",
		"background: " + okabeIto[0], "background: " + okabeIto[1],
		// Pods as wide as their share of the zone: a-1's 6 CPUs split over
		// two zones of 4 take 3 in each.
		`data-pod="ns/a-1" data-gang="ns/a" style="background: ` + okabeIto[0] + `; width: 75.00%"`,
		// Small: every rack open; the strip's cell for n1, full at its
		// peak (a-0 and a-1 at once: 12 of 8 CPUs asked, capped).
		`<details class="rack" data-gangs="ns/a" open>`, `title="n1: peak 150% of 8 CPUs in use`,
		`id="find-gang"`, `<option value="ns/a">`, `data-find="ns/a"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(out, "Pods/min") || strings.Contains(out, `<div class="label">node-0</div>`) {
		t.Error("the old column name or a zone named like a node is back")
	}
	// Self-contained: nothing fetched from elsewhere.
	for _, bad := range []string{"<script src", "<link", "http://", "https://", "ZgotmplZ"} {
		if strings.Contains(strings.ReplaceAll(out, `xmlns="http://www.w3.org/2000/svg"`, ""), bad) {
			t.Errorf("page contains %q", bad)
		}
	}
}

// On 1000 nodes the racks are closed strips, and the legend leaves the
// gangs to the table.
func TestWriteHTMLLarge(t *testing.T) {
	run := bigRun()
	var b bytes.Buffer
	if err := WriteHTML(&b, run, Summarize(run)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if n := strings.Count(out, `<details class="rack"`); n != 50 {
		t.Errorf("%d racks, want 50", n)
	}
	if strings.Contains(out, "\" open>") {
		t.Error("a rack is open on 1000 nodes")
	}
	if n := strings.Count(out, `<span class="cell"`); n != 1000 {
		t.Errorf("%d strip cells, want one per node, 1000", n)
	}
	for _, want := range []string{"colour is beside its name in the table above", `class="scroll tall"`, "20 nodes · 1280 CPUs · peak 100% in use"} {
		if !strings.Contains(out, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(out, `<span class="swatch" style="background: `+okabeIto[0]+`"></span>train/job-000</span>`) {
		t.Error("the map's legend names 240 gangs")
	}
}

func TestPeakMilli(t *testing.T) {
	pods := []Pod{
		{CPUMilli: 1000, Bound: at(0), Finished: at(100)},
		{CPUMilli: 2000, Bound: at(50), Finished: at(200)},
		// Starts as the first ends: not counted with it.
		{CPUMilli: 4000, Bound: at(100)},
		{CPUMilli: 8000}, // never bound
	}
	if got := peakMilli(pods, at(1000)); got != 6000 {
		t.Errorf("peak %dm, want 6000m (2000m and 4000m from 100ms on)", got)
	}
}

func TestHSLHex(t *testing.T) {
	for _, c := range []struct {
		h, s, l float64
		want    string
	}{{0, 1, 0.5, "#ff0000"}, {120, 1, 0.5, "#00ff00"}, {240, 1, 0.5, "#0000ff"}, {0, 0, 1, "#ffffff"}} {
		if got := hslHex(c.h, c.s, c.l); got != c.want {
			t.Errorf("hslHex(%v,%v,%v) = %s, want %s", c.h, c.s, c.l, got, c.want)
		}
	}
}

// An elastic gang's extra pod that never found room before the gang
// finished is listed, and the gang still counts as finished.
func TestLeftBehind(t *testing.T) {
	run := testRun()
	run.Pods = append(run.Pods, Pod{Namespace: "ns", Name: "a-3", Gang: "a", Created: at(100), Phase: v1.PodPending})
	s := Summarize(run)
	if len(s.LeftBehind) != 1 || s.LeftBehind[0] != "ns/a-3" {
		t.Errorf("LeftBehind = %v, want [ns/a-3]", s.LeftBehind)
	}
	if p := ProgressOf(run); p.Finished != 1 {
		t.Errorf("progress = %+v, want gang a finished", p)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, s); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "left behind:      1 pods never bound, though their PodGroup had finished: ns/a-3") {
		t.Errorf("table does not list the pod left behind:\n%s", b.String())
	}
}
