package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/featuregate"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/lockstep-sched/lockstep/pkg/controlplane"
	"github.com/lockstep-sched/lockstep/pkg/gang"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
	"github.com/lockstep-sched/lockstep/pkg/sandbox"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/cluster"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/cpumanager"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/kubelet"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/record"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/report"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/workload"
)

// runLabel marks the nodes and NodeResourceTopologies of one run, so that
// they go in one call afterwards.
const runLabel = "lockstep.io/bench-run"

// runner runs one scheduler on one scenario at a time.
type runner struct {
	cp   *controlplane.ControlPlane
	c    *sandbox.Clients
	opts Options
}

// run is one scheduler's run of a scenario in one mode, on nodes and in a
// namespace of its own, all deleted again before it returns.
func (r *runner) run(ctx context.Context, s Scenario, mode Mode, sched Scheduler) (m Metrics, err error) {
	id := fmt.Sprintf("%s-%s-%s", s.Name, mode.short(), sched.Name)
	logger := klog.FromContext(ctx).WithValues("run", id)
	ctx = klog.NewContext(ctx, logger)
	ns := id
	spec := s.Cluster
	spec.NamePrefix = id + "-"
	nodes := spec.Layout()

	if err := ensureNamespace(ctx, r.c, ns); err != nil {
		return m, err
	}
	// Cleanup runs last, also after a failure, so that the next run starts
	// on an empty cluster.
	defer func() {
		if cerr := r.cleanup(context.WithoutCancel(ctx), ns, id); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := r.createNodes(ctx, nodes, s.Topology, id); err != nil {
		return m, err
	}

	// Everything started below stops when runCtx ends; stop and wg make
	// sure it has before cleanup.
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var sch *controlplane.Scheduler
	defer func() {
		if sch != nil {
			r.drainEvents(runCtx, ns)
			sch.Stop()
		}
		cancel()
		wg.Wait()
	}()

	var zones cpumanager.Source
	var cpus *cpumanager.Manager
	if s.Topology {
		// The sandbox kubelet hands each bound pod its CPUs zone by zone,
		// as a CPU manager would; the pods never finish during the run.
		cpus = cpumanager.New()
		var names []string
		for _, n := range nodes {
			cpus.AddNode(n.Name, n.NUMANode())
			names = append(names, n.Name)
		}
		zones = cpus
		wg.Go(func() { cpus.RunAgent(runCtx, r.c.Topology, cpumanager.DefaultPublishInterval) })
		kl := kubelet.New(r.c.Kube, kubelet.Options{Nodes: names, DefaultRunTime: 24 * time.Hour, Admitter: cpus})
		wg.Go(func() {
			if err := kl.Run(runCtx); err != nil && runCtx.Err() == nil {
				logger.Error(err, "Sandbox kubelet failed")
			}
		})
	}
	rec := record.New(r.c.Kube, r.c.PodGroups, []string{ns}, zones, false)
	if err := rec.Start(runCtx); err != nil {
		return m, err
	}

	cr := &creator{c: r.c, objs: s.objects(ns, sched.PodSchedulerName), workers: r.opts.Workers}
	counter := controlplane.NewRequestCounter()
	schedOpts := []controlplane.SchedulerOption{controlplane.CountRequests(counter)}
	if gates := r.featureGates(sched); gates != "" {
		schedOpts = append(schedOpts, controlplane.WithFeatureGates(gates))
	}
	var origin time.Time
	switch mode {
	case Precreated:
		if err := cr.run(runCtx, 0); err != nil {
			return m, err
		}
		if err := waitSeen(runCtx, rec, s.Pods()); err != nil {
			return m, err
		}
		origin = time.Now()
		if sch, err = r.start(runCtx, sched, schedOpts); err != nil {
			return m, fmt.Errorf("starting the scheduler: %w", err)
		}
	case Arriving:
		if sch, err = r.start(runCtx, sched, schedOpts); err != nil {
			return m, fmt.Errorf("starting the scheduler: %w", err)
		}
		if err := sandbox.ProbeScheduler(runCtx, r.c.Kube, probeNamespace, sched.PodSchedulerName, nodes[0].Name); err != nil {
			return m, err
		}
		origin = time.Now()
		wg.Go(func() {
			if err := cr.run(runCtx, r.opts.ArrivalRate); err != nil && runCtx.Err() == nil {
				logger.Error(err, "Creating pods failed")
			}
		})
	}
	logger.Info("Measuring", "mode", mode, "scheduler", sched.Name, "pods", s.Pods())

	ended, err := r.watch(runCtx, s, rec, cr, origin)
	if err != nil {
		return m, err
	}
	// The run's duration is the scheduler's, without the kubelet's wait.
	endedAt := time.Now()
	apiCounts, bindTimes := counter.Counts(), counter.BindTimes()
	var peakRSS *float64
	if rss, ok, err := sch.PeakRSS(); err != nil {
		logger.Error(err, "Reading the scheduler's peak memory")
	} else if ok {
		peakRSS = val(float64(rss) / (1 << 20))
	}
	if s.Topology {
		if err := waitRunning(runCtx, rec); err != nil {
			return m, err
		}
	}
	gangs, pods := rec.Snapshot()
	run := report.Run{Gangs: gangs, Pods: pods}
	for _, n := range nodes {
		run.Nodes = append(run.Nodes, report.Node{Name: n.Name, Rack: n.Rack, Zone: n.Zone, CPUs: n.CPUs, Memory: n.Memory.Value()})
	}
	m = measure(run, origin)
	m.countAPI(apiCounts)
	m.apiSkew(run, bindTimes)
	m.SchedulerPeakRSSMiB = peakRSS
	if cpus != nil {
		m.NUMAStrandedCPUs = val(float64(stranded(cpus, nodes, s.smallestPinned())))
	}
	m.Ended, m.DurationSeconds = ended, endedAt.Sub(origin).Seconds()
	logger.Info("Run ended", "ended", ended, "podsBound", m.PodsBound, "gangsComplete", m.GangsComplete, "gangsPartial", m.GangsPartial)
	return m, nil
}

// stranded counts the free CPUs of NUMA zones that hold pods but have too
// few left for the smallest pinned pod of the run: room nobody can use.
func stranded(cpus *cpumanager.Manager, nodes []cluster.Node, smallest int64) int64 {
	var n int64
	for _, node := range nodes {
		capacity := node.NUMANode().Capacity
		for i, free := range cpus.Free(node.Name) {
			if free > 0 && free < smallest && free < capacity[i] {
				n += free
			}
		}
	}
	return n
}

// start runs a scheduler: in this process, or its binary as a child.
func (r *runner) start(ctx context.Context, sched Scheduler, opts []controlplane.SchedulerOption) (*controlplane.Scheduler, error) {
	if sched.Binary != "" {
		return r.cp.StartSchedulerProcess(ctx, sched.Binary, sched.Config, opts...)
	}
	return r.cp.StartScheduler(ctx, sched.Config, opts...)
}

// featureGates are the gates for a scheduler's run: Lockstep's own (the
// lockstep-scheduler binary's defaults unless the bench was told others),
// and for the other schedulers the same gates at kube-scheduler's defaults
// (gates are global to the process).
func (r *runner) featureGates(sched Scheduler) string {
	lockstep := r.opts.LockstepFeatureGates
	if lockstep == "" {
		lockstep = gang.FeatureGatesFlag()
	}
	switch sched.Name {
	case Lockstep.Name:
		return lockstep
	case Coscheduling.Name:
		// Another build: its own defaults; it may not know our gates.
		return ""
	}
	all := utilfeature.DefaultMutableFeatureGate.GetAll()
	var out []string
	for _, kv := range strings.Split(lockstep, ",") {
		name, _, _ := strings.Cut(kv, "=")
		if spec, ok := all[featuregate.Feature(name)]; ok {
			out = append(out, fmt.Sprintf("%s=%t", name, spec.Default))
		}
	}
	return strings.Join(out, ",")
}

// createNodes creates the nodes, and with topology their
// NodeResourceTopologies, a few at a time.
func (r *runner) createNodes(ctx context.Context, nodes []cluster.Node, topology bool, id string) error {
	return parallel(ctx, r.opts.Workers, len(nodes), func(ctx context.Context, i int) error {
		n := nodes[i]
		node := n.NodeObject()
		node.Labels[runLabel] = id
		if _, err := r.c.Kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating node %s: %w", n.Name, err)
		}
		if !topology {
			return nil
		}
		t := n.TopologyObject()
		t.Labels = map[string]string{runLabel: id}
		if _, err := r.c.Topology.TopologyV1alpha2().NodeResourceTopologies().Create(ctx, t, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating NodeResourceTopology %s: %w", n.Name, err)
		}
		return nil
	})
}

// cleanup deletes what a run created. Pods go with no grace period, which
// removes them at once although no kubelet confirms it.
func (r *runner) cleanup(ctx context.Context, ns, id string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	now := metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}
	byRun := metav1.ListOptions{LabelSelector: labels.Set{runLabel: id}.String()}
	errs := []error{
		r.c.Kube.CoreV1().Pods(ns).DeleteCollection(ctx, now, metav1.ListOptions{}),
		r.c.PodGroups.SchedulingV1alpha1().PodGroups(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}),
		// Events of thousands of pods would only slow later runs' lists.
		r.c.Kube.CoreV1().Events(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}),
		r.c.Kube.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, byRun),
		r.c.Topology.TopologyV1alpha2().NodeResourceTopologies().DeleteCollection(ctx, metav1.DeleteOptions{}, byRun),
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleaning up after %s: %w", id, err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := r.c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil && len(pods.Items) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the pods of %s to go: %w", id, err)
	}
	return nil
}

// waitSeen waits until the recorder has seen n pods, so that every
// creation time is known before the scheduler starts.
func waitSeen(ctx context.Context, rec *record.Recorder, n int) error {
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		_, pods := rec.Snapshot()
		return len(pods) >= n, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the watch to see %d pods: %w", n, err)
	}
	return nil
}

// watch follows the run until it ends and says why. In a churn scenario it
// deletes the pods of complete gangs, in gang creation order, once they
// have been held long enough.
func (r *runner) watch(ctx context.Context, s Scenario, rec *record.Recorder, cr *creator, origin time.Time) (string, error) {
	logger := klog.FromContext(ctx)
	budget := s.Budget
	if budget <= 0 {
		budget = r.opts.RunTimeout
	}
	total := s.Pods()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastProgress, lastBound := origin, 0
	completeAt := map[string]time.Time{}
	deleted := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-tick.C:
		}
		now := time.Now()
		gangs, pods := rec.Snapshot()
		bound := 0
		boundOf := map[string]int{}
		for _, p := range pods {
			if !p.Bound.IsZero() {
				bound++
				boundOf[p.GangKey()]++
			}
		}
		if bound != lastBound {
			lastBound, lastProgress = bound, now
		}
		if err := cr.failed(); err != nil {
			return "", err
		}
		createdAll, createdAt := cr.finished()
		if s.Churn {
			for _, g := range gangs {
				k := g.Key()
				if _, ok := completeAt[k]; !ok && boundOf[k] >= max(g.MinMember, 1) {
					completeAt[k] = now
				}
				if at, ok := completeAt[k]; ok && !deleted[k] && now.Sub(at) >= s.Hold {
					if err := r.deleteGang(ctx, g.Namespace, g.Name); err != nil {
						return "", err
					}
					deleted[k], lastProgress = true, now
					logger.V(2).Info("Deleted a complete gang", "gang", k)
				}
			}
			if createdAll && len(completeAt) == len(s.Gangs) {
				return EndAllComplete, nil
			}
		} else if createdAll && bound >= total {
			return EndAllBound, nil
		}
		if now.Sub(origin) >= budget {
			settle(ctx, rec)
			return EndBudget, nil
		}
		if createdAll && now.Sub(later(lastProgress, createdAt)) >= r.opts.Stall {
			return EndStalled, nil
		}
	}
}

// drainEvents waits, after the measurement, until the scheduler has
// written the events it queued (one per bind at least): stopping it
// earlier cuts those writes off, and the API server's etcd client reports
// each one on stderr. It gives up quietly after 15 seconds.
func (r *runner) drainEvents(ctx context.Context, ns string) {
	count := func() int {
		l, err := r.c.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			return -1
		}
		n := len(l.Items)
		if l.RemainingItemCount != nil {
			n += int(*l.RemainingItemCount)
		}
		return n
	}
	last, since := count(), time.Now()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && time.Since(since) < time.Second; {
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		if n := count(); n != last {
			last, since = n, time.Now()
		}
	}
}

// waitRunning waits until the sandbox kubelet has started every bound pod:
// only then does the NUMA accounting know each pod's zones, and no status
// write is cut off when the run stops.
func waitRunning(ctx context.Context, rec *record.Recorder) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		_, pods := rec.Snapshot()
		for _, p := range pods {
			if !p.Bound.IsZero() && !p.Deleted && p.Running.IsZero() {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the sandbox kubelet to start the bound pods: %w", err)
	}
	return nil
}

// settle gives binds already under way a moment to land, so that a gang
// caught by the end of the budget between its first and last bind does
// not count as partial: it waits until a second passes without a bind,
// ten at most.
func settle(ctx context.Context, rec *record.Recorder) {
	count := func() int {
		_, pods := rec.Snapshot()
		n := 0
		for _, p := range pods {
			if !p.Bound.IsZero() {
				n++
			}
		}
		return n
	}
	last, quiet := count(), time.Now()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && time.Since(quiet) < time.Second; {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		if n := count(); n != last {
			last, quiet = n, time.Now()
		}
	}
}

// deleteGang deletes a gang's pods, as its job finishing would; the
// PodGroup stays, as a finished one does.
func (r *runner) deleteGang(ctx context.Context, ns, name string) error {
	sel := labels.Set{podgroup.Label: name}.String()
	err := r.c.Kube.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return fmt.Errorf("deleting the pods of gang %s/%s: %w", ns, name, err)
	}
	return nil
}

// creator creates a run's PodGroups and pods in order: PodGroups one at a
// time, pods by a few workers, at a steady rate or as fast as it can.
type creator struct {
	c       *sandbox.Clients
	objs    []workload.Object
	workers int

	mu   sync.Mutex
	done time.Time
	err  error
}

// run creates every object; rate is pods per second, 0 for no limit.
func (cr *creator) run(ctx context.Context, rate float64) error {
	pods := make(chan *v1.Pod)
	var wg sync.WaitGroup
	for range cr.workers {
		wg.Go(func() {
			for p := range pods {
				if _, err := cr.c.Kube.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					cr.fail(fmt.Errorf("creating pod %s/%s: %w", p.Namespace, p.Name, err))
				}
			}
		})
	}
	start, sent := time.Now(), 0
	err := func() error {
		for _, o := range cr.objs {
			if o.PodGroup != nil {
				pg := o.PodGroup.DeepCopy()
				if _, err := cr.c.PodGroups.SchedulingV1alpha1().PodGroups(pg.Namespace).Create(ctx, pg, metav1.CreateOptions{}); err != nil {
					return fmt.Errorf("creating PodGroup %s/%s: %w", pg.Namespace, pg.Name, err)
				}
				continue
			}
			if rate > 0 {
				at := start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Until(at)):
				}
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case pods <- o.Pod.DeepCopy():
				sent++
			}
		}
		return nil
	}()
	close(pods)
	wg.Wait()
	if err != nil {
		cr.fail(err)
	}
	cr.mu.Lock()
	defer cr.mu.Unlock()
	cr.done = time.Now()
	return cr.err
}

func (cr *creator) fail(err error) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.err == nil {
		cr.err = err
	}
}

// finished reports whether every object has been created, and when.
func (cr *creator) finished() (bool, time.Time) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return !cr.done.IsZero(), cr.done
}

func (cr *creator) failed() error {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return cr.err
}

// parallel runs do(0..n-1) on up to workers goroutines and returns the
// first error; the others stop early once one has failed.
func parallel(ctx context.Context, workers, n int, do func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := range next {
				if err := do(ctx, i); err != nil {
					cancel(err)
				}
			}
		})
	}
send:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break send
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}
