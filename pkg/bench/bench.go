// Package bench compares Lockstep with the default kube-scheduler on the
// same embedded control plane and identical workloads: per scenario and
// arrival mode, each scheduler runs in turn on fresh simulated nodes and a
// fresh namespace, and the figures of the design brief (section 5) come
// from bind times observed by a watch to the millisecond.
//
// Both schedulers are the same binary (kube-scheduler with the Lockstep
// plugin registered). Lockstep runs with the shipped configuration,
// profile lockstep; the default scheduler with a configuration holding
// only the default profile, so the PodGroup label its pods carry means
// nothing to it. That is the point of the comparison.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/lockstep-sched/lockstep/manifests"
	"github.com/lockstep-sched/lockstep/pkg/controlplane"
	"github.com/lockstep-sched/lockstep/pkg/sandbox"
)

// Scheduler is one side of the comparison.
type Scheduler struct {
	// Name keys the side in the output.
	Name string
	// PodSchedulerName is the spec.schedulerName of the run's pods.
	PodSchedulerName string
	// Config is the KubeSchedulerConfiguration (YAML).
	Config []byte
	// Binary, when set, is a scheduler of another build run as a child
	// process; otherwise the scheduler runs in this process with the
	// Lockstep plugin registered.
	Binary string
}

// DefaultSchedulerConfig has the default profile only.
var DefaultSchedulerConfig = []byte(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
`)

// CoschedulingSchedulerConfig is scheduler-plugins' Coscheduling as its
// documentation configures it, with Lockstep's default gang timeout.
var CoschedulingSchedulerConfig = []byte(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: coscheduling
  plugins:
    multiPoint:
      enabled:
      - name: Coscheduling
    queueSort:
      enabled:
      - name: Coscheduling
      disabled:
      - name: "*"
  pluginConfig:
  - name: Coscheduling
    args:
      permitWaitingTimeSeconds: 60
`)

// The schedulers, in the order they run. Coscheduling runs when the bench
// is given its binary (make bench builds it from hack/coscheduling).
var (
	Lockstep     = Scheduler{Name: "lockstep", PodSchedulerName: "lockstep", Config: manifests.SchedulerConfig}
	Default      = Scheduler{Name: "default", PodSchedulerName: v1.DefaultSchedulerName, Config: DefaultSchedulerConfig}
	Coscheduling = Scheduler{Name: "coscheduling", PodSchedulerName: "coscheduling", Config: CoschedulingSchedulerConfig}
)

// Mode is how the pods reach the API server.
type Mode string

const (
	// Precreated creates every pod while no scheduler runs, then starts
	// the scheduler and measures from its start, so that how fast pods
	// can be created does not hide how fast they are scheduled.
	Precreated Mode = "all-pods-exist-first"
	// Arriving creates pods gang by gang at a steady rate while the
	// scheduler runs, as a batch framework would.
	Arriving Mode = "arriving"
)

// Modes lists both modes.
var Modes = []Mode{Precreated, Arriving}

// Title is the mode in words.
func (m Mode) Title() string {
	if m == Precreated {
		return "all pods exist first"
	}
	return "pods arriving"
}

// short names the mode in namespaces and node names.
func (m Mode) short() string {
	if m == Precreated {
		return "pre"
	}
	return "arr"
}

// ParseMode accepts a mode's name or its short form.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if s == string(m) || s == m.short() {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown mode %q (want %s or %s)", s, Precreated, Arriving)
}

// Options describe a benchmark.
type Options struct {
	Scenarios []Scenario
	Modes     []Mode
	// ArrivalRate is pods created per second in the arriving mode.
	ArrivalRate float64
	// RunTimeout bounds one scheduler's run of a scenario without a
	// budget of its own.
	RunTimeout time.Duration
	// Stall ends a run when, after every pod was created, nothing was
	// bound or deleted for this long: the default scheduler deadlocks
	// with partial gangs, and that is a finding, not an error.
	Stall time.Duration
	// Workers create pods and nodes concurrently; 8 when zero.
	Workers int
	// Dir receives etcd's log; stderr when empty.
	Dir string
	// Out receives progress lines and the tables.
	Out io.Writer
	// SchedulerBinary, when set, is the lockstep-scheduler binary, run as a
	// child process for Lockstep's and the default scheduler's runs, as
	// Coscheduling's is; otherwise they run in this process.
	SchedulerBinary string
	// CoschedulingBinary is scheduler-plugins' kube-scheduler; the
	// comparison gets a Coscheduling column when it is set.
	CoschedulingBinary string
	// FloorMinMembers: scenarios whose largest gang has at least this many
	// members get the apiserver's bind floor measured for it;
	// DefaultFloorMinMembers when zero.
	FloorMinMembers int
	// LockstepFeatureGates are kube-scheduler feature gates for Lockstep's
	// runs ("Name=false,..."), gang.FeatureGates when empty; the other
	// schedulers run with those gates at kube-scheduler's defaults.
	LockstepFeatureGates string
}

// Report is the whole benchmark, as written to JSON.
type Report struct {
	Started         time.Time    `json:"started"`
	DurationSeconds float64      `json:"durationSeconds"`
	GoVersion       string       `json:"goVersion"`
	CPUs            int          `json:"cpus"`
	ArrivalRate     float64      `json:"arrivalRatePodsPerSecond"`
	StallSeconds    float64      `json:"stallSeconds"`
	Comparisons     []Comparison `json:"comparisons"`
}

// WriteJSON writes the report to path, creating its directory.
func (r *Report) WriteJSON(path string) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

// probeNamespace holds the pods that check a scheduler is up; no run
// records it.
const probeNamespace = "lockstep-bench-probe"

// Run starts a control plane, runs every scenario in every mode with
// Lockstep and then the default scheduler, printing each comparison as it
// completes, and returns them all. It stops early only on an error or when
// ctx ends.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	if opts.FloorMinMembers <= 0 {
		opts.FloorMinMembers = DefaultFloorMinMembers
	}
	if opts.ArrivalRate <= 0 || opts.RunTimeout <= 0 || opts.Stall <= 0 {
		return nil, fmt.Errorf("arrival rate, run timeout and stall must be positive")
	}
	logger := klog.FromContext(ctx).WithName("bench")
	ctx = klog.NewContext(ctx, logger)
	rep := &Report{Started: time.Now(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
		ArrivalRate: opts.ArrivalRate, StallSeconds: opts.Stall.Seconds()}

	fmt.Fprintln(opts.Out, "Starting the control plane (etcd, kube-apiserver)...")
	cp, err := controlplane.StartWithCRDs(ctx, controlplane.Options{LogDir: opts.Dir})
	if err != nil {
		return nil, err
	}
	defer cp.Stop()
	c, err := sandbox.NewClients(cp.Config)
	if err != nil {
		return nil, err
	}
	if err := ensureNamespace(ctx, c, probeNamespace); err != nil {
		return nil, err
	}

	r := &runner{cp: cp, c: c, opts: opts}
	for _, s := range opts.Scenarios {
		for _, mode := range opts.Modes {
			if !s.RunsIn(mode) {
				continue
			}
			cmp := Comparison{Scenario: s.Name, Mode: mode, Description: s.Description, Cluster: describe(s)}
			if mode == Arriving {
				cmp.ArrivalRate = opts.ArrivalRate
			}
			lockstep, def := Lockstep, Default
			lockstep.Binary, def.Binary = opts.SchedulerBinary, opts.SchedulerBinary
			scheds := []Scheduler{lockstep, def}
			if opts.CoschedulingBinary != "" {
				cos := Coscheduling
				cos.Binary = opts.CoschedulingBinary
				scheds = append(scheds, cos)
			}
			for _, sched := range scheds {
				fmt.Fprintf(opts.Out, "%s, %s: %s scheduler on %d nodes, %d pods...\n", s.Name, mode.Title(), sched.Name, s.Cluster.Nodes, s.Pods())
				m, err := r.run(ctx, s, mode, sched)
				if err != nil {
					return rep, fmt.Errorf("%s, %s, %s scheduler: %w", s.Name, mode.Title(), sched.Name, err)
				}
				fmt.Fprintf(opts.Out, "  %d of %d pods bound, %d of %d gangs complete, %d partial (%s after %.1fs)\n",
					m.PodsBound, m.Pods, m.GangsComplete, m.Gangs, m.GangsPartial, m.Ended, m.DurationSeconds)
				switch sched.Name {
				case Lockstep.Name:
					cmp.Lockstep = m
				case Default.Name:
					cmp.Default = m
				default:
					cmp.Coscheduling = &m
				}
			}
			if most := s.largestGang(); most >= opts.FloorMinMembers {
				floor, err := r.bindFloor(ctx, most)
				if err != nil {
					return rep, fmt.Errorf("%s: measuring the bind floor: %w", s.Name, err)
				}
				cmp.BindFloorMs, cmp.FloorMembers = val(float64(floor.Microseconds())/1000), most
			}
			cmp.computeRatios()
			fmt.Fprintln(opts.Out)
			if err := cmp.WriteTable(opts.Out); err != nil {
				return rep, err
			}
			rep.Comparisons = append(rep.Comparisons, cmp)
		}
	}
	rep.DurationSeconds = time.Since(rep.Started).Seconds()
	return rep, nil
}

func describe(s Scenario) string {
	c := s.Cluster
	d := fmt.Sprintf("%d nodes x %d CPUs, %s; %s in %s", c.Nodes, c.CPUsPerNode, c.MemoryPerNode.String(), plural(c.Racks, "rack"), plural(c.Zones, "zone"))
	if s.Topology {
		d += fmt.Sprintf("; %d NUMA zones per node (NodeResourceTopology)", c.NUMAZones)
	}
	return d
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func ensureNamespace(ctx context.Context, c *sandbox.Clients, name string) error {
	_, err := c.Kube.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}
