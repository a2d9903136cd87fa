// Command lockstep-bench compares Lockstep with the default kube-scheduler
// on an embedded control plane: the same workloads, one scheduler after the
// other, one table per scenario and arrival mode (metric | lockstep |
// default | ratio) and a JSON file with every figure.
//
//	go run ./cmd/lockstep-bench [--scenarios small-gangs,competing] [--modes pre] [--out bench.json]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/lockstep-sched/lockstep/pkg/bench"
	"github.com/lockstep-sched/lockstep/pkg/sandbox"
)

// exitUsage is the status for bad flags, as the flag package uses.
const exitUsage = 2

func main() {
	os.Exit(run())
}

type flags struct {
	sizes     bench.Sizes
	scenarios []string
	modes     []bench.Mode
	rate      float64
	timeout   time.Duration
	stall     time.Duration
	out       string
	logDir    string
	verbosity int
	// lockstepGates are feature gates for Lockstep's runs.
	lockstepGates string
	// coscheduling is scheduler-plugins' scheduler binary.
	coscheduling string
	// schedulerBin is the lockstep-scheduler binary.
	schedulerBin string
}

func parseFlags() (*flags, error) {
	f := &flags{sizes: bench.DefaultSizes()}
	fs := flag.NewFlagSet("lockstep-bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: lockstep-bench [flags]\n\nRuns Lockstep and the default kube-scheduler on the same workloads and prints their figures side by side.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	scenarios := fs.String("scenarios", strings.Join(bench.ScenarioNames, ","), "scenarios to run, comma-separated")
	modes := fs.String("modes", "pre,arr", "arrival modes, comma-separated: pre (all pods exist before the scheduler starts), arr (pods arrive gang by gang)")
	fs.Float64Var(&f.rate, "arrival-rate", 200, "pods created per second in the arriving mode")
	fs.DurationVar(&f.timeout, "run-timeout", 10*time.Minute, "bound on one scheduler's run of a scenario")
	fs.DurationVar(&f.stall, "stall", 20*time.Second, "end a run when, after every pod exists, nothing was bound or deleted for this long")
	fs.StringVar(&f.out, "out", "bench.json", "JSON file to write")
	fs.StringVar(&f.logDir, "log-dir", "", "directory for the control plane and scheduler logs (default: a new temporary directory)")
	fs.StringVar(&f.schedulerBin, "scheduler-binary", "", "the lockstep-scheduler binary: run Lockstep and the default scheduler as child processes, as Coscheduling is, instead of in this process")
	fs.StringVar(&f.coscheduling, "coscheduling-binary", "", "scheduler-plugins' kube-scheduler binary (make bench builds it from hack/coscheduling); adds a Coscheduling column")
	fs.StringVar(&f.lockstepGates, "lockstep-feature-gates", "", "kube-scheduler feature gates for Lockstep's runs instead of the lockstep-scheduler binary's defaults, e.g. NominatedNodeNameForExpectation=true (the other scheduler keeps kube-scheduler's defaults)")
	fs.IntVar(&f.verbosity, "v", 0, "log verbosity of the control plane and schedulers (the log goes to a file)")

	z := &f.sizes
	fs.IntVar(&z.SmallNodes, "small-nodes", z.SmallNodes, "small-gangs: nodes")
	fs.IntVar(&z.SmallGangs, "small-gangs", z.SmallGangs, "small-gangs: gangs")
	fs.IntVar(&z.SmallMembers, "small-members", z.SmallMembers, "small-gangs: members per gang")
	fs.IntVar(&z.LargeNodes, "large-nodes", z.LargeNodes, "large-gangs: nodes")
	fs.IntVar(&z.LargeGangs, "large-gangs", z.LargeGangs, "large-gangs: gangs")
	fs.IntVar(&z.LargeMembers, "large-members", z.LargeMembers, "large-gangs: members per gang")
	fs.IntVar(&z.CompetingNodes, "competing-nodes", z.CompetingNodes, "competing: nodes")
	fs.IntVar(&z.CompetingGangs, "competing-gangs", z.CompetingGangs, "competing: gangs")
	fs.IntVar(&z.CompetingMembers, "competing-members", z.CompetingMembers, "competing: members per gang")
	fs.DurationVar(&z.CompetingBudget, "competing-budget", z.CompetingBudget, "competing: time budget of a run")
	fs.DurationVar(&z.CompetingHold, "competing-hold", z.CompetingHold, "competing: how long a complete gang runs before its pods are deleted")
	fs.IntVar(&z.MixedNodes, "mixed-nodes", z.MixedNodes, "mixed: nodes")
	fs.IntVar(&z.MixedGangs, "mixed-gangs", z.MixedGangs, "mixed: gangs")
	fs.IntVar(&z.MixedMembers, "mixed-members", z.MixedMembers, "mixed: members per gang")
	fs.IntVar(&z.MixedOrdinary, "mixed-ordinary", z.MixedOrdinary, "mixed: ordinary pods")
	fs.IntVar(&z.TopologyNodes, "topology-nodes", z.TopologyNodes, "topology: nodes")
	fs.IntVar(&z.TopologyRacks, "topology-racks", z.TopologyRacks, "topology: racks")
	fs.IntVar(&z.TopologyGangs, "topology-gangs", z.TopologyGangs, "topology: gangs")
	fs.IntVar(&z.PairNodes, "numa-pairs-nodes", z.PairNodes, "numa-pairs: nodes, even (half as many gangs of each size)")
	fs.IntVar(&z.ClusterNodes, "large-cluster-nodes", z.ClusterNodes, "large-cluster: nodes")
	fs.IntVar(&z.ClusterGangs, "large-cluster-gangs", z.ClusterGangs, "large-cluster: gangs")
	fs.IntVar(&z.ClusterMembers, "large-cluster-members", z.ClusterMembers, "large-cluster: members per gang")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := z.Validate(); err != nil {
		return nil, err
	}
	for _, s := range split(*scenarios) {
		if !slices.Contains(bench.ScenarioNames, s) {
			return nil, fmt.Errorf("--scenarios: unknown scenario %q (want some of %s)", s, strings.Join(bench.ScenarioNames, ", "))
		}
		f.scenarios = append(f.scenarios, s)
	}
	for _, s := range split(*modes) {
		m, err := bench.ParseMode(s)
		if err != nil {
			return nil, fmt.Errorf("--modes: %w", err)
		}
		f.modes = append(f.modes, m)
	}
	if len(f.scenarios) == 0 || len(f.modes) == 0 {
		return nil, errors.New("--scenarios and --modes must name at least one each")
	}
	if f.rate <= 0 || f.timeout <= 0 || f.stall <= 0 {
		return nil, errors.New("--arrival-rate, --run-timeout and --stall must be positive")
	}
	return f, nil
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func run() int {
	f, err := parseFlags()
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lockstep-bench:", err)
		return exitUsage
	}
	dir := f.logDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "lockstep-bench-"); err != nil {
			fmt.Fprintln(os.Stderr, "lockstep-bench:", err)
			return 1
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "lockstep-bench:", err)
		return 1
	}
	logPath := filepath.Join(dir, "bench.log")
	closeLog, err := sandbox.LogToFile(logPath, f.verbosity)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lockstep-bench:", err)
		return 1
	}
	defer closeLog()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var scenarios []bench.Scenario
	for _, s := range bench.Scenarios(f.sizes) {
		if slices.Contains(f.scenarios, s.Name) {
			scenarios = append(scenarios, s)
		}
	}
	fmt.Printf("Logs of the control plane and schedulers: %s (and etcd.log beside it)\n", logPath)
	rep, err := bench.Run(ctx, bench.Options{
		Scenarios:   scenarios,
		Modes:       f.modes,
		ArrivalRate: f.rate,
		RunTimeout:  f.timeout,
		Stall:       f.stall,
		Dir:         dir,
		Out:         os.Stdout,

		LockstepFeatureGates: f.lockstepGates,
		CoschedulingBinary:   f.coscheduling,
		SchedulerBinary:      f.schedulerBin,
	})
	// What finished is worth keeping, also after a failure.
	if rep != nil && len(rep.Comparisons) > 0 {
		if werr := rep.WriteJSON(f.out); werr != nil {
			fmt.Fprintln(os.Stderr, "lockstep-bench:", werr)
			return 1
		}
		fmt.Printf("JSON: %s\n", f.out)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lockstep-bench: %v (log: %s)\n", err, logPath)
		return 1
	}
	fmt.Printf("Benchmark took %.0fs.\n", rep.DurationSeconds)
	return 0
}
