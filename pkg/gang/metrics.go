package gang

import (
	"context"
	"maps"
	"slices"
	"sync"

	"k8s.io/klog/v2"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/lockstep-sched/lockstep/pkg/gang/gangstate"
)

var (
	gangNodes = metrics.NewHistogram(&metrics.HistogramOpts{
		Subsystem:      "lockstep",
		Name:           "gang_nodes",
		Help:           "Nodes a gang was placed on, at its release to binding.",
		Buckets:        metrics.ExponentialBuckets(1, 2, 10),
		StabilityLevel: metrics.ALPHA,
	})
	gangNodesOverIdeal = metrics.NewHistogram(&metrics.HistogramOpts{
		Subsystem:      "lockstep",
		Name:           "gang_nodes_over_ideal",
		Help:           "Nodes a gang was placed on divided by the fewest that could hold its CPU, ceil(gang CPU / node CPU).",
		Buckets:        []float64{1, 1.1, 1.25, 1.5, 2, 3, 4},
		StabilityLevel: metrics.ALPHA,
	})
	// The attempt metrics have the names and labels of kube-scheduler's own
	// pod-group metrics (KEP-4671), which it registers only with the
	// GenericWorkload gate on, a gate Lockstep runs without: dashboards
	// made for one read the other. An attempt is one planning of a whole
	// gang; the members that follow its plan are not attempts.
	podGroupAttempts = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      "scheduler",
		Name:           "podgroup_schedule_attempts_total",
		Help:           "Number of attempts to schedule pod group, by the result. 'unschedulable' means a pod group could not be scheduled, 'waiting_on_preemption' that it evicted victims to fit, while 'error' means an internal scheduler problem.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result", "profile"})
	podGroupAttemptDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Subsystem:      "scheduler",
		Name:           "podgroup_scheduling_attempt_duration_seconds",
		Help:           "Pod group scheduling attempt latency in seconds: planning the whole gang.",
		Buckets:        metrics.ExponentialBuckets(0.001, 2, 15),
		StabilityLevel: metrics.ALPHA,
	}, []string{"result", "profile"})
	gangSchedulingDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Subsystem:      "lockstep",
		Name:           "gang_scheduling_duration_seconds",
		Help:           "From a PodGroup's creation to its minMember-th member seen bound.",
		Buckets:        metrics.ExponentialBuckets(0.1, 2, 14),
		StabilityLevel: metrics.ALPHA,
	}, []string{"profile"})
	gangBindSkew = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Subsystem:      "lockstep",
		Name:           "gang_bind_skew_seconds",
		Help:           "From a gang's first member seen bound to its minMember-th, as the scheduler's informer sees the binds.",
		Buckets:        metrics.ExponentialBuckets(0.001, 2, 14),
		StabilityLevel: metrics.ALPHA,
	}, []string{"profile"})
	registerMetrics sync.Once
)

// ensureMetrics registers the metrics once, when the first gang is placed.
// A kube-scheduler built with GenericWorkload on registers the pod-group
// attempt metrics itself: Lockstep's are then left out rather than clash.
func ensureMetrics() {
	registerMetrics.Do(func() {
		legacyregistry.MustRegister(gangNodes, gangNodesOverIdeal, gangSchedulingDuration, gangBindSkew)
		for _, m := range []metrics.Registerable{podGroupAttempts, podGroupAttemptDuration} {
			if err := legacyregistry.Register(m); err != nil {
				klog.Background().Info("Pod-group attempt metrics are kube-scheduler's own in this process", "err", err)
			}
		}
		legacyregistry.CustomMustRegister(gangCollector)
	})
}

// metricNames are the names of the metrics the plugin exports.
func metricNames() []string {
	return []string{
		"lockstep_gang_nodes", "lockstep_gang_nodes_over_ideal",
		"scheduler_podgroup_schedule_attempts_total", "scheduler_podgroup_scheduling_attempt_duration_seconds",
		"lockstep_gang_scheduling_duration_seconds", "lockstep_gang_bind_skew_seconds",
		"lockstep_gangs_waiting", "lockstep_held_cpu_cores",
	}
}

// observeAttempt records one planning of a whole gang.
func observeAttempt(a *gangstate.Attempt) {
	ensureMetrics()
	podGroupAttempts.WithLabelValues(a.Result, a.Profile).Inc()
	podGroupAttemptDuration.WithLabelValues(a.Result, a.Profile).Observe(a.Duration.Seconds())
}

// observeStarted records a gang whose quorum was seen bound.
func observeStarted(s *gangstate.Started) {
	ensureMetrics()
	gangSchedulingDuration.WithLabelValues(s.Profile).Observe(s.Latency.Seconds())
	gangBindSkew.WithLabelValues(s.Profile).Observe(s.Skew.Seconds())
}

// gangCollector reports, at scrape time, the gangs waiting by reason and
// the room held in memory, summed over the caches of this process's
// schedulers.
var gangCollector = &cacheCollector{caches: map[*gangstate.Cache]struct{}{}}

var (
	gangsWaitingDesc = metrics.NewDesc("lockstep_gangs_waiting",
		"Gangs that have not started, by why they wait: members (fewer than minMember exist), room (they do not fit yet), never_fits (not even an empty cluster), preemption (waiting for victims to go), placing (planned, members being placed), bind_budget (quorum placed, waiting for the bind budget).",
		[]string{"reason"}, nil, metrics.ALPHA, "")
	heldCPUDesc = metrics.NewDesc("lockstep_held_cpu_cores",
		"CPU held in memory from other pods, by holder: plan (places of plans not yet taken), head (the head of the queue's reservation), preemption (room preemptions claim).",
		[]string{"holder"}, nil, metrics.ALPHA, "")
)

type cacheCollector struct {
	metrics.BaseStableCollector
	mu     sync.Mutex
	caches map[*gangstate.Cache]struct{}
}

// add counts a scheduler's cache until ctx ends.
func (c *cacheCollector) add(ctx context.Context, cache *gangstate.Cache) {
	c.mu.Lock()
	c.caches[cache] = struct{}{}
	c.mu.Unlock()
	go func() {
		<-ctx.Done()
		c.mu.Lock()
		delete(c.caches, cache)
		c.mu.Unlock()
	}()
}

func (c *cacheCollector) DescribeWithStability(ch chan<- *metrics.Desc) {
	ch <- gangsWaitingDesc
	ch <- heldCPUDesc
}

func (c *cacheCollector) CollectWithStability(ch chan<- metrics.Metric) {
	c.mu.Lock()
	caches := make([]*gangstate.Cache, 0, len(c.caches))
	for cache := range c.caches {
		caches = append(caches, cache)
	}
	c.mu.Unlock()
	waiting, held := map[string]int{}, map[string]int64{}
	for _, cache := range caches {
		st := cache.Stats()
		for reason, n := range st.Waiting {
			waiting[reason] += n
		}
		for holder, m := range st.HeldMilliCPU {
			held[holder] += m
		}
	}
	for _, reason := range slices.Sorted(maps.Keys(waiting)) {
		ch <- metrics.NewLazyConstMetric(gangsWaitingDesc, metrics.GaugeValue, float64(waiting[reason]), reason)
	}
	for _, holder := range slices.Sorted(maps.Keys(held)) {
		ch <- metrics.NewLazyConstMetric(heldCPUDesc, metrics.GaugeValue, float64(held[holder])/1000, holder)
	}
}

// observePlacement records how many nodes a released gang uses, and that
// against the ideal for its CPU, the largest node it uses giving the size.
func observePlacement(p *gangstate.Placement) {
	ensureMetrics()
	gangNodes.Observe(float64(p.Nodes.Len()))
	if p.NodeMilliCPU <= 0 || p.MilliCPU <= 0 {
		return
	}
	ideal := (p.MilliCPU + p.NodeMilliCPU - 1) / p.NodeMilliCPU
	gangNodesOverIdeal.Observe(float64(p.Nodes.Len()) / float64(ideal))
}
