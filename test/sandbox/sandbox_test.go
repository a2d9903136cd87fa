// Package sandbox runs the sandbox end to end: its own control plane,
// scheduler, controller and simulated nodes, over the shipped examples and
// a file of bad input. It has its own package, and so its own control
// plane, because the sandbox creates the nodes it schedules on and must not
// share them with the integration tests.
package sandbox

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/lockstep-sched/lockstep/pkg/sandbox"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/cluster"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/workload"
	"github.com/lockstep-sched/lockstep/test/testlog"
)

func TestMain(m *testing.M) {
	// The sandbox runs its scheduler as a child of this test binary.
	sandbox.RunSchedulerChild()
	testlog.Main(m, "sandbox-test")
}

// badInput is a workload file with one problem per document, and one good
// pod that must still run.
const badInput = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: badinput}
---
apiVersion: v1
kind: Pod
metadata: {name: volcano-pod, namespace: badinput}
spec: {schedulerName: volcano, containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: broken, namespace: badinput
---
apiVersion: v1
kind: Pod
metadata: {name: survivor, namespace: badinput}
spec: {containers: [{name: c, image: i, resources: {requests: {cpu: "1", memory: 1Gi}}}]}
`

func TestSandboxRunsExamples(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(badInput), 0o644); err != nil {
		t.Fatal(err)
	}
	examples, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(examples) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	objs, inputErrs := workload.LoadFiles(append(examples, bad))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	report := filepath.Join(dir, "report.html")
	spec := cluster.Spec{
		Nodes: 8, CPUsPerNode: 32, MemoryPerNode: resource.MustParse("128Gi"),
		NUMAZones: 2, Racks: 4, Zones: 2, NamePrefix: "sbx-",
	}
	res, err := sandbox.Run(ctx, sandbox.Options{
		Cluster:          spec,
		Objects:          objs,
		InputErrors:      inputErrs,
		DefaultRunTime:   time.Second,
		Timeout:          3 * time.Minute,
		ReportPath:       report,
		Dir:              dir,
		Out:              &out,
		ProgressInterval: 5 * time.Second,
	})
	t.Logf("sandbox output:\n%s", out.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	s := res.Summary
	if s.TimedOut || res.Interrupted {
		t.Fatalf("run did not finish: timed out %v, interrupted %v", s.TimedOut, res.Interrupted)
	}

	// Every example gang finished.
	if len(s.Gangs) < 5 {
		t.Errorf("only %d gangs ran", len(s.Gangs))
	}
	for _, g := range s.Gangs {
		if g.Phase != "Finished" || g.Bound < g.MinMember {
			t.Errorf("gang %s: phase %s, %d of %d pods bound (minMember %d)", g.Key(), g.Phase, g.Bound, g.Pods, g.MinMember)
		}
		if g.Bound < g.Pods {
			// An elastic gang's extra pods may find no room before the
			// quorum ends; the report lists them.
			t.Logf("gang %s finished with %d of %d pods bound", g.Key(), g.Bound, g.Pods)
		}
		if g.Racks < 1 || g.Nodes < g.IdealNodes {
			t.Errorf("gang %s: %d racks, %d nodes for an ideal of %d", g.Key(), g.Racks, g.Nodes, g.IdealNodes)
		}
	}
	// The gang of Kubernetes' own PodGroup API ran, in one rack as its
	// topology constraint asks.
	upstream := false
	for _, g := range s.Gangs {
		if g.Key() == "upstream/trainer" {
			upstream = true
			if g.Racks != 1 || g.Bound != g.MinMember {
				t.Errorf("upstream gang: %d racks, %d of %d bound", g.Racks, g.Bound, g.MinMember)
			}
		}
	}
	if !upstream {
		t.Error("the upstream PodGroup example did not run")
	}
	if s.PodsSucceeded+len(s.LeftBehind) != s.PodsTotal {
		t.Errorf("%d of %d pods succeeded, %d left behind", s.PodsSucceeded, s.PodsTotal, len(s.LeftBehind))
	}

	// Errors only for the bad file: one line each, and the run went on.
	for _, e := range s.Errors {
		if !strings.HasPrefix(e, bad+": ") || strings.Contains(e, "\n") {
			t.Errorf("unexpected error: %q", e)
		}
	}
	for _, want := range []string{
		"error: " + bad + ": Deployment/web: kind Deployment is not supported (only Pod, PodGroup)\n",
		"error: " + bad + `: Pod/volcano-pod: schedulerName "volcano" is not supported`,
		"error: " + bad + ": document 3: ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if len(s.Errors) != 3 {
		t.Errorf("errors = %q, want 3", s.Errors)
	}
	survived := false
	for _, p := range res.Run.Pods {
		survived = survived || (p.Namespace == "badinput" && p.Name == "survivor" && p.Phase == v1.PodSucceeded)
	}
	if !survived {
		t.Error("the good pod of the bad file did not run")
	}
	if !strings.Contains(out.String(), "gangs finished:") {
		t.Error("no summary printed")
	}

	page, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	if !bytes.Contains(page, []byte(`id="placement-map"`)) {
		t.Error("report has no placement map")
	}
	for _, n := range spec.Layout() {
		if !bytes.Contains(page, []byte(n.Name)) {
			t.Errorf("report does not show node %s", n.Name)
		}
	}
}
