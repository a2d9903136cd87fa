// Command lockstep-sandbox shows Lockstep at work with nothing but Go: it
// starts etcd, a kube-apiserver, simulated nodes and kubelets, the Lockstep
// scheduler and the PodGroup controller in this process, submits the
// workloads in examples/ (or the files given), and reports per gang how
// long it waited and where its pods went.
//
//	go run ./cmd/lockstep-sandbox [--nodes 16] [--workload FILE]... [--keep]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/lockstep-sched/lockstep/examples"
	"github.com/lockstep-sched/lockstep/pkg/sandbox"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/cluster"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/workload"
)

// exitUsage is the status for bad flags, as the flag package uses.
const exitUsage = 2

func main() {
	// This program is also the sandbox's scheduler, in a child process.
	sandbox.RunSchedulerChild()
	os.Exit(run())
}

type flags struct {
	spec       cluster.Spec
	memory     string
	workloads  []string
	runSeconds float64
	timeout    time.Duration
	report     string
	keep       bool
	verbosity  int
}

func parseFlags() (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("lockstep-sandbox", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: lockstep-sandbox [flags]\n\nRuns Lockstep on an embedded control plane with simulated nodes and reports per gang.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.IntVar(&f.spec.Nodes, "nodes", 16, "simulated nodes")
	fs.IntVar(&f.spec.CPUsPerNode, "cpus-per-node", 32, "CPUs per node")
	fs.StringVar(&f.memory, "memory-per-node", "128Gi", "memory per node")
	fs.IntVar(&f.spec.NUMAZones, "numa-zones", 2, "NUMA zones per node, sharing its CPUs and memory evenly")
	fs.IntVar(&f.spec.Racks, "racks", 4, "racks (label topology.kubernetes.io/rack), nodes spread over them")
	fs.IntVar(&f.spec.Zones, "zones", 2, "zones (label topology.kubernetes.io/zone), racks spread over them")
	fs.Func("workload", "workload `FILE` of Pods and PodGroups, or a directory of *.yaml; repeatable (default: examples/)", func(s string) error {
		f.workloads = append(f.workloads, s)
		return nil
	})
	fs.Float64Var(&f.runSeconds, "run-seconds", 5, "how long a pod runs unless its lockstep.io/run-seconds annotation says otherwise")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Minute, "give up when the workloads have not finished after this long")
	fs.StringVar(&f.report, "report", "report.html", "HTML report to write; empty for none")
	fs.BoolVar(&f.keep, "keep", false, "leave the cluster running after the summary, for kubectl, until Ctrl-C")
	fs.IntVar(&f.verbosity, "v", 0, "log verbosity of the control plane and scheduler (the log goes to a file)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	q, err := resource.ParseQuantity(f.memory)
	if err != nil {
		return nil, fmt.Errorf("--memory-per-node %q: %w", f.memory, err)
	}
	f.spec.MemoryPerNode = q
	if f.runSeconds < 0 {
		return nil, fmt.Errorf("--run-seconds must not be negative")
	}
	if f.timeout <= 0 {
		return nil, fmt.Errorf("--timeout must be positive")
	}
	if err := f.spec.Validate(); err != nil {
		return nil, err
	}
	return f, nil
}

func run() int {
	f, err := parseFlags()
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lockstep-sandbox:", err)
		return exitUsage
	}

	objs, inputErrs, source := loadWorkloads(f.workloads)
	if len(objs) == 0 {
		for _, err := range inputErrs {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		fmt.Fprintln(os.Stderr, "lockstep-sandbox: no workload objects to run")
		return 1
	}

	dir, err := os.MkdirTemp("", "lockstep-sandbox-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "lockstep-sandbox:", err)
		return 1
	}
	logPath := filepath.Join(dir, "sandbox.log")
	closeLog, err := sandbox.LogToFile(logPath, f.verbosity)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lockstep-sandbox:", err)
		return 1
	}
	defer closeLog()
	// controller-runtime logs through klog too, into the same file.
	ctrl.SetLogger(klog.NewKlogr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first Ctrl-C, a second one kills at once.
		<-ctx.Done()
		stop()
	}()

	fmt.Printf("Workloads: %s\n", source)
	fmt.Printf("Logs of the control plane and controller: %s (the scheduler's and etcd's beside it)\n", logPath)
	res, err := sandbox.Run(ctx, sandbox.Options{
		Cluster:            f.spec,
		Objects:            objs,
		InputErrors:        inputErrs,
		DefaultRunTime:     time.Duration(f.runSeconds * float64(time.Second)),
		Timeout:            f.timeout,
		ReportPath:         f.report,
		Keep:               f.keep,
		Dir:                dir,
		Out:                os.Stdout,
		Live:               sandbox.IsTerminal(os.Stdout),
		SchedulerVerbosity: f.verbosity,
	})
	if err != nil && ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "lockstep-sandbox: interrupted while starting; stopped")
		return 1
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lockstep-sandbox: %v (log: %s)\n", err, logPath)
		return 1
	}
	fmt.Printf("Logs kept in %s\n", dir)
	if !res.OK() {
		return 1
	}
	return 0
}

// loadWorkloads reads the files and directories given, or the examples:
// examples/ of the working directory when there is one, else the copy built
// into the binary.
func loadWorkloads(paths []string) ([]workload.Object, []error, string) {
	if len(paths) == 0 {
		if matches, _ := filepath.Glob(filepath.Join("examples", "*.yaml")); len(matches) > 0 {
			objs, errs := workload.LoadFS(os.DirFS("examples"), "examples")
			return objs, errs, "examples/"
		}
		objs, errs := workload.LoadFS(examples.FS, "examples")
		return objs, errs, "examples/ (built-in copy)"
	}
	var files []string
	var errs []error
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		matches, err := fs.Glob(os.DirFS(p), "*.yaml")
		if err != nil || len(matches) == 0 {
			errs = append(errs, fmt.Errorf("%s: no *.yaml files", p))
			continue
		}
		for _, m := range matches {
			files = append(files, filepath.Join(p, m))
		}
	}
	objs, lerrs := workload.LoadFiles(files)
	return objs, append(errs, lerrs...), fmt.Sprintf("%d file(s)", len(files))
}
