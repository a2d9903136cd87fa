// Package sandbox runs Lockstep's main job where anyone with Go can watch
// it: an embedded etcd and kube-apiserver, simulated nodes with NUMA zones,
// a simulated kubelet, the real scheduler with the Lockstep plugin and the
// PodGroup controller, fed with workloads from YAML files. It reports per
// gang how long it waited, how tightly its members were bound and where
// they went, as a table and as a self-contained HTML page.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	nrtclientset "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/generated/clientset/versioned"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	pgclientset "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned"

	schedulerapp "github.com/lockstep-sched/lockstep/cmd/lockstep-scheduler/app"
	"github.com/lockstep-sched/lockstep/manifests"
	"github.com/lockstep-sched/lockstep/pkg/controller"
	"github.com/lockstep-sched/lockstep/pkg/controlplane"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/cluster"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/cpumanager"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/kubelet"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/record"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/report"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/workload"
)

// Options describe one run.
type Options struct {
	Cluster cluster.Spec
	// Objects are the checked workload objects, in submission order
	// (workload.LoadFiles and LoadFS return them so).
	Objects []workload.Object
	// InputErrors are the problems found while loading the workloads; the
	// run prints them first and lists them in the report.
	InputErrors []error
	// DefaultRunTime is how long a pod runs unless it says otherwise.
	DefaultRunTime time.Duration
	// Timeout bounds the run, from the first submission to the last pod
	// finishing.
	Timeout time.Duration
	// ReportPath is where the HTML report goes; none when empty.
	ReportPath string
	// Keep leaves everything running after the summary until ctx ends.
	Keep bool
	// Dir is where etcd's log and, with Keep, the kubeconfig go; when
	// empty, etcd logs to stderr and the kubeconfig goes to the control
	// plane's own directory.
	Dir string
	// Out receives the progress, the errors and the summary.
	Out io.Writer
	// Live redraws one status line in place (for a terminal) instead of
	// printing a line every ProgressInterval.
	Live bool
	// ProgressInterval is how often a status line is printed when not Live;
	// 5s when zero.
	ProgressInterval time.Duration
	// SchedulerVerbosity is the scheduler's log verbosity (--v).
	SchedulerVerbosity int
	// SchedulerConfig is the KubeSchedulerConfiguration; the one that ships
	// when nil.
	SchedulerConfig []byte
}

// Result is the outcome of a run.
type Result struct {
	Run     report.Run
	Summary report.Summary
	// Interrupted is true when ctx ended before the run did.
	Interrupted bool
}

// OK reports whether the run finished in time with every gang finished,
// every pod bound and no errors.
func (r *Result) OK() bool {
	s := r.Summary
	return !r.Interrupted && !s.TimedOut && len(s.Errors) == 0 && s.GangsFinished == len(s.Gangs) && len(s.LeftBehind) == 0
}

// Run runs the sandbox until every submitted object has finished, the
// timeout passes or ctx ends, then prints the summary and writes the
// report. With Keep it then waits for ctx to end. Everything it started is
// stopped, and the control plane's directory removed, before it returns.
//
// The caller sets up logging: klog to a file (LogToFile) and, for the
// controller, ctrl.SetLogger.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.Cluster.Validate(); err != nil {
		return nil, err
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.ProgressInterval <= 0 {
		opts.ProgressInterval = 5 * time.Second
	}
	if opts.SchedulerConfig == nil {
		opts.SchedulerConfig = manifests.SchedulerConfig
	}
	con := &console{w: opts.Out, live: opts.Live}
	logger := klog.FromContext(ctx).WithName("sandbox")
	ctx = klog.NewContext(ctx, logger)

	var inputErrors []string
	for _, err := range opts.InputErrors {
		con.Printf("error: %v", err)
		inputErrors = append(inputErrors, err.Error())
	}

	con.Printf("Starting the control plane (etcd, kube-apiserver)...")
	// The control plane serves Kubernetes' own PodGroups as well; their
	// feature gates belong to this whole process, so the scheduler runs as
	// a child process with its own, as in a cluster.
	cp, err := controlplane.StartWithCRDs(ctx, controlplane.Options{LogDir: opts.Dir, WorkloadAPI: true})
	if err != nil {
		return nil, err
	}
	defer cp.Stop()
	c, err := NewClients(cp.Config)
	if err != nil {
		return nil, err
	}

	nodes := opts.Cluster.Layout()
	if err := cluster.Create(ctx, c.Kube, c.Topology, nodes); err != nil {
		return nil, err
	}
	cpus := cpumanager.New()
	var nodeNames []string
	for _, n := range nodes {
		cpus.AddNode(n.Name, n.NUMANode())
		nodeNames = append(nodeNames, n.Name)
	}
	namespaces := workload.Namespaces(opts.Objects)
	for _, ns := range append([]string{probeNamespace}, namespaces...) {
		if err := ensureNamespace(ctx, c.Kube, ns); err != nil {
			return nil, err
		}
	}

	// Everything below stops when runCtx ends; wg waits for it.
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	rec := record.New(c.Kube, c.PodGroups, namespaces, cpus, true)
	if err := rec.Start(runCtx); err != nil {
		return nil, err
	}
	kl := kubelet.New(c.Kube, kubelet.Options{Nodes: nodeNames, DefaultRunTime: opts.DefaultRunTime, Admitter: cpus})
	wg.Go(func() { cpus.RunAgent(runCtx, c.Topology, cpumanager.DefaultPublishInterval) })
	wg.Go(func() {
		if err := kl.Run(runCtx); err != nil && runCtx.Err() == nil {
			con.Printf("error: simulated kubelet: %v", err)
		}
	})

	con.Printf("Starting the scheduler and the PodGroup controller...")
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this program to run the scheduler: %w", err)
	}
	sched, err := cp.StartSchedulerProcess(runCtx, self, opts.SchedulerConfig,
		controlplane.WithEnv(schedulerChildEnv+"=1"), controlplane.WithVerbosity(opts.SchedulerVerbosity))
	if err != nil {
		return nil, fmt.Errorf("starting the scheduler: %w", err)
	}
	defer sched.Stop()
	mgr, err := controller.NewManager(cp.Config, controller.Options{MetricsBindAddress: "0", HealthProbeBindAddress: "0"})
	if err != nil {
		return nil, fmt.Errorf("building the PodGroup controller: %w", err)
	}
	wg.Go(func() {
		if err := mgr.Start(runCtx); err != nil && runCtx.Err() == nil {
			con.Printf("error: PodGroup controller: %v", err)
		}
	})
	if !mgr.GetCache().WaitForCacheSync(runCtx) {
		return nil, fmt.Errorf("waiting for the PodGroup controller: %w", context.Cause(runCtx))
	}
	if err := ProbeScheduler(runCtx, c.Kube, probeNamespace, workload.SchedulerName, nodeNames[0]); err != nil {
		return nil, err
	}

	var pods, groups int
	for _, o := range opts.Objects {
		if o.Pod != nil {
			pods++
		} else {
			groups++
		}
	}
	con.Printf("Cluster: %s", describe(opts.Cluster))
	con.Printf("Submitting %d PodGroups and %d pods; timeout %s", groups, pods, opts.Timeout)

	start := time.Now()
	sub := newSubmitter(c, opts.Objects, start, func(err error) { con.Printf("error: %v", err) })
	wg.Go(func() { sub.run(runCtx) })

	timedOut, interrupted := watch(runCtx, con, opts, rec, sub, start, pods)
	con.EndStatus()

	gangs, podRecs := rec.Snapshot()
	run := report.Run{
		Start: start, End: time.Now(), TimedOut: timedOut, Interrupted: interrupted,
		Cluster: describe(opts.Cluster),
		Gangs:   gangs, Pods: podRecs,
		Errors: append(inputErrors, sub.errors()...),
	}
	for _, n := range nodes {
		rn := report.Node{Name: n.Name, Rack: n.Rack, Zone: n.Zone, CPUs: n.CPUs, Memory: n.Memory.Value()}
		for _, z := range n.NUMA {
			rn.NUMAZones = append(rn.NUMAZones, z.Name)
		}
		run.Nodes = append(run.Nodes, rn)
	}
	res := &Result{Run: run, Summary: report.Summarize(run), Interrupted: interrupted}

	con.Printf("")
	if interrupted {
		con.Printf("Interrupted; what happened so far:")
	}
	if err := report.WriteTable(opts.Out, res.Summary); err != nil {
		return res, err
	}
	if opts.ReportPath != "" {
		if err := writeReport(opts.ReportPath, run, res.Summary); err != nil {
			return res, err
		}
		con.Printf("report:           %s", opts.ReportPath)
	}

	if opts.Keep && !interrupted {
		if err := keep(ctx, con, cp, opts.Dir); err != nil {
			return res, err
		}
	}
	con.Printf("Stopping...")
	return res, nil
}

// schedulerChildEnv, in the environment of a child of this program, makes
// it the sandbox's scheduler (RunSchedulerChild).
const schedulerChildEnv = "LOCKSTEP_SANDBOX_SCHEDULER"

// RunSchedulerChild runs lockstep-scheduler and exits, when this process
// is the scheduler child a sandbox started from its own program; it
// returns at once otherwise. Programs that call Run call it first thing in
// main (or TestMain).
func RunSchedulerChild() {
	if os.Getenv(schedulerChildEnv) == "1" {
		os.Exit(schedulerapp.Main())
	}
}

// Clients of the control plane: the sandbox's, and the benchmark's, which
// drives the same simulated nodes and recorder.
type Clients struct {
	Kube      kubernetes.Interface
	PodGroups pgclientset.Interface
	Topology  nrtclientset.Interface
}

// NewClients builds the clients from an admin config.
func NewClients(cfg *rest.Config) (*Clients, error) {
	// CRDs are served as JSON only.
	jsonCfg := rest.CopyConfig(cfg)
	jsonCfg.ContentType = runtime.ContentTypeJSON
	var c Clients
	var err error
	if c.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("building the client: %w", err)
	}
	if c.PodGroups, err = pgclientset.NewForConfig(jsonCfg); err != nil {
		return nil, fmt.Errorf("building the PodGroup client: %w", err)
	}
	if c.Topology, err = nrtclientset.NewForConfig(jsonCfg); err != nil {
		return nil, fmt.Errorf("building the NodeResourceTopology client: %w", err)
	}
	return &c, nil
}

func ensureNamespace(ctx context.Context, client kubernetes.Interface, name string) error {
	_, err := client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// probeNamespace holds the pod that checks the scheduler is up; the run's
// records leave it out.
const probeNamespace = "lockstep-sandbox"

// ProbeScheduler waits until the scheduler named schedulerName binds a pod
// to node, so that what is measured next does not include the scheduler's
// start-up. The pod goes in namespace, which must exist and should be one
// no recorder watches; it is deleted once bound.
func ProbeScheduler(ctx context.Context, client kubernetes.Interface, namespace, schedulerName, node string) error {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "scheduler-probe", Namespace: namespace},
		Spec: v1.PodSpec{
			SchedulerName: schedulerName,
			// Pinned by affinity, not nodeName, so that it goes through
			// the scheduler.
			Affinity: &v1.Affinity{NodeAffinity: &v1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
					MatchFields: []v1.NodeSelectorRequirement{{Key: "metadata.name", Operator: v1.NodeSelectorOpIn, Values: []string{node}}},
				}}},
			}},
			Containers: []v1.Container{{Name: "probe", Image: "registry.invalid/probe"}},
		},
	}
	if _, err := client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the scheduler probe: %w", err)
	}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := client.CoreV1().Pods(namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		return err == nil && p.Spec.NodeName != "", nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the scheduler to bind a probe pod: %w", err)
	}
	// A grace period of 0 removes the pod at once, kubelet or not.
	_ = client.CoreV1().Pods(namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	return nil
}

// watch shows progress until everything finished, the timeout passed or
// ctx ended.
func watch(ctx context.Context, con *console, opts Options, rec *record.Recorder, sub *submitter, start time.Time, totalPods int) (timedOut, interrupted bool) {
	interval := opts.ProgressInterval
	if opts.Live {
		interval = 200 * time.Millisecond
	}
	// Finishing is checked more often than a slow progress line is printed.
	check := time.NewTicker(100 * time.Millisecond)
	defer check.Stop()
	deadline := time.NewTimer(opts.Timeout)
	defer deadline.Stop()
	var lastStatus, leftSince time.Time
	for {
		select {
		case <-ctx.Done():
			return false, true
		case <-deadline.C:
			gangs, pods := rec.Snapshot()
			con.Status(status(time.Since(start), report.Run{Gangs: gangs, Pods: pods}, totalPods))
			con.EndStatus()
			con.Printf("Timed out after %s", opts.Timeout)
			return true, false
		case <-check.C:
		}
		gangs, pods := rec.Snapshot()
		run := report.Run{Gangs: gangs, Pods: pods}
		done, left := finished(run, sub)
		switch {
		case !left:
			leftSince = time.Time{}
		case leftSince.IsZero():
			leftSince = time.Now()
		default:
			done = time.Since(leftSince) >= leftBehindGrace
		}
		if done || time.Since(lastStatus) >= interval {
			con.Status(status(time.Since(start), run, totalPods))
			lastStatus = time.Now()
		}
		if done {
			return false, false
		}
	}
}

func status(elapsed time.Duration, run report.Run, totalPods int) string {
	p := report.ProgressOf(run)
	return fmt.Sprintf("[%6.1fs] gangs: %d waiting, %d placed, %d running, %d finished | pods: %d/%d bound, %d done",
		elapsed.Seconds(), p.Waiting, p.Placed, p.Running, p.Finished, p.PodsBound, totalPods, p.PodsDone)
}

// finished reports whether every object the submitter created has been seen
// and has ended: every pod succeeded or failed, and every PodGroup that got
// enough pods to start has a final phase written by the controller.
//
// leftBehind is true when all that keeps the run going is members never
// bound of gangs whose PodGroup has already finished (an elastic gang's
// extra pods, when its quorum ended before they found room). Nothing may
// ever bind them; the caller decides how long to give them.
func finished(run report.Run, sub *submitter) (done, leftBehind bool) {
	created, ok := sub.done()
	if !ok {
		return false, false
	}
	if len(run.Pods) < created.pods || len(run.Gangs) < len(created.groups) {
		return false, false
	}
	final, cannotStart := map[string]bool{}, map[string]bool{}
	for _, g := range run.Gangs {
		final[g.Key()] = report.IsFinal(g.Phase)
		if created.members[g.Key()] < max(g.MinMember, 1) {
			// Some of its pods failed to be created (the error was shown),
			// so it can never start; waiting for it would only time out.
			cannotStart[g.Key()] = true
			continue
		}
		if !final[g.Key()] {
			return false, false
		}
	}
	for _, p := range run.Pods {
		switch {
		case p.Terminal(), cannotStart[p.GangKey()]:
		case p.Bound.IsZero() && final[p.GangKey()]:
			leftBehind = true
		default:
			return false, false
		}
	}
	return !leftBehind, leftBehind
}

// leftBehindGrace is how long the run waits for members left behind by a
// finished gang before it ends without them (the report lists them).
const leftBehindGrace = 5 * time.Second

func describe(s cluster.Spec) string {
	return fmt.Sprintf("%d nodes x %d CPUs, %s memory, %d NUMA zones each; %d racks in %d zones",
		s.Nodes, s.CPUsPerNode, s.MemoryPerNode.String(), s.NUMAZones, s.Racks, s.Zones)
}

func writeReport(path string, run report.Run, s report.Summary) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating the report's directory: %w", err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	if err := report.WriteHTML(f, run, s); err != nil {
		f.Close()
		return fmt.Errorf("writing the report: %w", err)
	}
	return f.Close()
}

// keep leaves the cluster up for kubectl until ctx ends.
func keep(ctx context.Context, con *console, cp *controlplane.ControlPlane, dir string) error {
	if dir == "" {
		dir = cp.Dir
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := cp.WriteKubeconfig(path); err != nil {
		return fmt.Errorf("writing the kubeconfig: %w", err)
	}
	con.Printf("")
	con.Printf("The control plane, scheduler and controller keep running; press Ctrl-C to stop them.")
	con.Printf("kubeconfig:       %s", path)
	con.Printf("try:              kubectl --kubeconfig %s get pg -A", path)
	<-ctx.Done()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the kubeconfig: %w", err)
	}
	return nil
}
