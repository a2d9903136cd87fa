// Package bench runs the benchmark at a tiny scale, every scenario in both
// arrival modes, so that make test catches it breaking long before anyone
// runs the full make bench. It checks that the figures are sane, not how
// fast anything is: a shared two-core machine decides that.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-sched/lockstep/pkg/bench"
	"github.com/lockstep-sched/lockstep/test/testlog"
)

func TestMain(m *testing.M) {
	testlog.Main(m, "bench-test")
}

func TestBenchSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	scenarios := bench.Scenarios(bench.TinySizes())
	var out bytes.Buffer
	rep, err := bench.Run(ctx, bench.Options{
		Scenarios:   scenarios,
		Modes:       bench.Modes,
		ArrivalRate: 200,
		RunTimeout:  2 * time.Minute,
		// Long enough for Lockstep's back-off, short enough that the
		// default scheduler's deadlock in the competing scenario costs
		// little.
		Stall: 8 * time.Second,
		Dir:   dir,
		Out:   &out,
		// The tiny large-gangs scenario's gangs get their floor measured.
		FloorMinMembers: bench.TinySizes().LargeMembers,
	})
	t.Logf("benchmark output:\n%s", out.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := 0
	for _, s := range scenarios {
		for _, m := range bench.Modes {
			if s.RunsIn(m) {
				want++
			}
		}
	}
	if got := len(rep.Comparisons); got != want {
		t.Fatalf("%d comparisons, want %d", got, want)
	}

	byName := map[string]bench.Scenario{}
	for _, s := range scenarios {
		byName[s.Name] = s
	}
	for _, c := range rep.Comparisons {
		s := byName[c.Scenario]
		for _, side := range []struct {
			name string
			m    bench.Metrics
		}{{"lockstep", c.Lockstep}, {"default", c.Default}} {
			where := fmt.Sprintf("%s, %s, %s", c.Scenario, c.Mode, side.name)
			checkSane(t, where, s, side.m)
		}

		// The contract: no partial gangs, whatever the competition.
		l := c.Lockstep
		if l.GangsPartial != 0 || l.PodsBoundInPartialGangs != 0 {
			t.Errorf("%s, %s: Lockstep left %d partial gangs with %d pods bound", c.Scenario, c.Mode, l.GangsPartial, l.PodsBoundInPartialGangs)
		}
		if l.PodsRejected != nil && *l.PodsRejected != 0 {
			t.Errorf("%s, %s: kubelet rejected %v of the pods Lockstep bound", c.Scenario, c.Mode, *l.PodsRejected)
		}
		switch {
		case s.MayWait:
			// Complete only if kubelet admits pods in a kind order: what
			// is not placed waits whole.
			t.Logf("%s, %s: Lockstep completed %d of %d gangs; the default scheduler's pods rejected by kubelet: %v",
				c.Scenario, c.Mode, l.GangsComplete, len(s.Gangs), deref(c.Default.PodsRejected))
		case l.GangsComplete != len(s.Gangs):
			t.Errorf("%s, %s: Lockstep completed %d of %d gangs (%s)", c.Scenario, c.Mode, l.GangsComplete, len(s.Gangs), l.Ended)
		}
		// Every scenario but the competing one has room for everything,
		// so the default scheduler binds every pod there too; where the
		// room fits only exactly (MayWait), pods may be left over.
		if !s.Churn && !s.MayWait && c.Default.PodsBound != s.Pods() {
			t.Errorf("%s, %s: the default scheduler bound %d of %d pods (%s)", c.Scenario, c.Mode, c.Default.PodsBound, s.Pods(), c.Default.Ended)
		}
		if s.Churn {
			t.Logf("%s, %s: the default scheduler left %d partial gangs holding %d pods", c.Scenario, c.Mode, c.Default.GangsPartial, c.Default.PodsBoundInPartialGangs)
		}
		if c.Scenario == bench.LargeGangs && (c.BindFloorMs == nil || *c.BindFloorMs <= 0 || c.FloorMembers != bench.TinySizes().LargeMembers) {
			t.Errorf("%s, %s: no bind floor measured: %v for %d members", c.Scenario, c.Mode, c.BindFloorMs, c.FloorMembers)
		}
		if !strings.Contains(out.String(), fmt.Sprintf("== %s, %s", c.Scenario, c.Mode.Title())) {
			t.Errorf("no table for %s, %s", c.Scenario, c.Mode)
		}
	}

	path := filepath.Join(dir, "out", "bench.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Comparisons []struct {
			Scenario string                     `json:"scenario"`
			Lockstep map[string]json.RawMessage `json:"lockstep"`
			Default  map[string]json.RawMessage `json:"default"`
			Ratios   map[string]float64         `json:"ratios"`
		} `json:"comparisons"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("bench.json: %v", err)
	}
	if len(doc.Comparisons) != len(rep.Comparisons) {
		t.Fatalf("bench.json has %d comparisons, want %d", len(doc.Comparisons), len(rep.Comparisons))
	}
	for _, c := range doc.Comparisons {
		for _, key := range []string{"gangsComplete", "gangsPartial", "gangsWaiting", "podsBoundInPartialGangs", "bindThroughputPodsPerSecond", "gangLatencyP99Ms", "bindSkewMaxMs", "nodesPerGangMean", "racksPerGangMean", "numaZonesPerPodMean"} {
			if _, ok := c.Lockstep[key]; !ok {
				t.Errorf("bench.json, %s: lockstep has no %s", c.Scenario, key)
			}
			if _, ok := c.Default[key]; !ok {
				t.Errorf("bench.json, %s: default has no %s", c.Scenario, key)
			}
		}
		if _, ok := c.Ratios["podsBound"]; !ok {
			t.Errorf("bench.json, %s: no ratio of pods bound", c.Scenario)
		}
	}
}

// checkSane checks what holds of any scheduler's figures.
func checkSane(t *testing.T, where string, s bench.Scenario, m bench.Metrics) {
	t.Helper()
	if m.Pods != s.Pods() || m.Gangs != len(s.Gangs) {
		t.Errorf("%s: %d pods and %d gangs seen, want %d and %d", where, m.Pods, m.Gangs, s.Pods(), len(s.Gangs))
	}
	if m.GangsComplete+m.GangsPartial+m.GangsWaiting != m.Gangs {
		t.Errorf("%s: %d complete + %d partial + %d waiting != %d gangs", where, m.GangsComplete, m.GangsPartial, m.GangsWaiting, m.Gangs)
	}
	if m.PodsBound < 1 || m.PodsBound > m.Pods || m.BindThroughput == nil || *m.BindThroughput <= 0 {
		t.Errorf("%s: %d of %d pods bound, throughput %v", where, m.PodsBound, m.Pods, m.BindThroughput)
	}
	if m.PodsBoundInPartialGangs > m.PodsBound || (m.GangsPartial == 0) != (m.PodsBoundInPartialGangs == 0) {
		t.Errorf("%s: %d partial gangs hold %d pods", where, m.GangsPartial, m.PodsBoundInPartialGangs)
	}
	if m.Ended == "" || m.DurationSeconds <= 0 {
		t.Errorf("%s: ended %q after %vs", where, m.Ended, m.DurationSeconds)
	}
	if m.GangsComplete == 0 {
		return
	}
	ordered := func(name string, v ...*float64) {
		for i, x := range v {
			if x == nil || *x < 0 || (i > 0 && *x < *v[i-1]) {
				t.Errorf("%s: %s out of order or missing", where, name)
				return
			}
		}
	}
	ordered("gang latency p50 <= p99", m.GangLatencyP50Ms, m.GangLatencyP99Ms)
	ordered("bind skew p50 <= p99 <= max", m.BindSkewP50Ms, m.BindSkewP99Ms, m.BindSkewMaxMs)
	// Every scheduler binds through the counting proxy, which times the
	// apiserver's answers.
	ordered("bind skew at the apiserver p50 <= p99 <= max", m.BindSkewAPIP50Ms, m.BindSkewAPIP99Ms, m.BindSkewAPIMaxMs)
	ordered("bind skew of the bindings sent p50 <= p99", m.BindSkewSentP50Ms, m.BindSkewSentP99Ms)
	ordered("ideal nodes <= nodes per gang", m.IdealNodesPerGang, m.NodesPerGang)
	ordered("1 <= racks per gang <= max", val(1), m.RacksPerGang, m.RacksPerGangMax)
	if m.NodesOverIdeal == nil || *m.NodesOverIdeal < 1 {
		t.Errorf("%s: nodes over ideal %v", where, m.NodesOverIdeal)
	}
	if s.Topology && (m.NUMAZonesPerPod == nil || *m.NUMAZonesPerPod < 1) {
		t.Errorf("%s: NUMA zones per pod %v", where, m.NUMAZonesPerPod)
	}
	if m.OrdinaryBound != m.OrdinaryPods && !s.Churn {
		t.Errorf("%s: %d of %d ordinary pods bound", where, m.OrdinaryBound, m.OrdinaryPods)
	}
}

func val(f float64) *float64 { return &f }

func deref(v *float64) float64 {
	if v == nil {
		return 0
	}
	return *v
}
