package gang

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	v1helper "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/features"
	"k8s.io/utils/clock"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgclientset "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned"
	pginformers "sigs.k8s.io/scheduler-plugins/pkg/generated/informers/externalversions"

	"github.com/lockstep-sched/lockstep/apis/config"
	"github.com/lockstep-sched/lockstep/pkg/gang/gangstate"
	"github.com/lockstep-sched/lockstep/pkg/placement"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
	"github.com/lockstep-sched/lockstep/pkg/topology"
)

// Option changes how NewFactory builds the plugin (tests inject a clock and
// a PodGroup client).
type Option func(*options)

type options struct {
	clock    clock.WithDelayedExecution
	pgClient pgclientset.Interface
	// wrapHandle lets tests see the plugin's calls into the framework.
	wrapHandle func(fwk.Handle) fwk.Handle
}

// WithClock sets the clock of gang deadlines and reservations.
func WithClock(c clock.WithDelayedExecution) Option { return func(o *options) { o.clock = c } }

// WithPodGroupClient sets the PodGroup client instead of one built from the
// scheduler's kubeconfig.
func WithPodGroupClient(c pgclientset.Interface) Option { return func(o *options) { o.pgClient = c } }

// NewFactory returns the plugin factory of one scheduler instance; main
// owns what it returns. The scheduler's profiles share the gang state it
// creates at the first profile: they share nodes, so plans and
// reservations must be seen by all. A new scheduler (a restart in the same
// process) needs a new factory, and so gets fresh state.
func NewFactory(opts ...Option) *Factory {
	f := &Factory{opts: options{clock: clock.RealClock{}}}
	for _, o := range opts {
		o(&f.opts)
	}
	return f
}

// Factory builds the gang plugin of each profile of one scheduler, and
// wraps the scheduler's Event recorders (see Recorders).
type Factory struct {
	opts options
	mu   sync.Mutex
	s    *shared
	// scheduledEvents holds each profile's ScheduledEvents setting, by
	// profile name, for the recorders to read.
	scheduledEvents sync.Map
	placed          placedMembers
	// standby is set while the scheduler waits to lead (see Standby).
	standby atomic.Bool
}

// Standby makes the plugin record no Events until Lead is called. A
// replica waiting for leadership runs its informers and plugins like the
// leader, and would otherwise report every gang a second time.
func (f *Factory) Standby() { f.standby.Store(true) }

// Lead lets the plugin record Events: the scheduler leads.
func (f *Factory) Lead() { f.standby.Store(false) }

// New builds the plugin for one profile; it is a
// frameworkruntime.PluginFactory.
func (f *Factory) New(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
	args, err := config.DecodeGangArgs(obj)
	if err != nil {
		return nil, err
	}
	f.scheduledEvents.Store(h.ProfileName(), args.ScheduledEvents)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.s == nil {
		if f.s, err = newShared(ctx, args, h, f); err != nil {
			return nil, err
		}
	} else {
		f.s.cache.AddScheduler(h.ProfileName())
	}
	return &Gang{s: f.s}, nil
}

// shared is what the profiles of one scheduler share: the gang cache, the
// informers that feed it, and the means to carry out its effects.
type shared struct {
	cache *gangstate.Cache
	// groups finds the PodGroup a pod names, in either API.
	groups *groups
	// conditions writes the status condition of upstream PodGroups.
	conditions *conditions
	topo       *topology.Tracker
	events     *eventer
	// handle is the first profile's: waiting pods and the queue belong to
	// the scheduler, not to a profile.
	handle fwk.Handle
	// placed are the members whose Placed Event has been recorded.
	placed *placedMembers
	logger klog.Logger
}

func newShared(ctx context.Context, args *config.GangArgs, h fwk.Handle, f *Factory) (*shared, error) {
	opts := f.opts
	logger := klog.FromContext(ctx).WithName(Name)
	podInformer := h.SharedInformerFactory().Core().V1().Pods().Informer()
	if err := podInformer.AddIndexers(cache.Indexers{gangstate.GangIndex: gangstate.IndexByGang}); err != nil {
		return nil, fmt.Errorf("indexing pods by PodGroup: %w", err)
	}
	var restCfg *rest.Config
	if h.KubeConfig() != nil {
		// CRDs are served as JSON only; the scheduler's own config asks for protobuf.
		restCfg = rest.CopyConfig(h.KubeConfig())
		restCfg.ContentType = runtime.ContentTypeJSON
	}
	client := opts.pgClient
	if client == nil {
		if restCfg == nil {
			return nil, fmt.Errorf("building PodGroup client: the scheduler has no kubeconfig")
		}
		var err error
		if client, err = pgclientset.NewForConfig(restCfg); err != nil {
			return nil, fmt.Errorf("building PodGroup client: %w", err)
		}
	}
	pgFactory := pginformers.NewSharedInformerFactory(client, 0)
	pgInformer := pgFactory.Scheduling().V1alpha1().PodGroups()
	handle := h
	if opts.wrapHandle != nil {
		handle = opts.wrapHandle(h)
	}
	s := &shared{groups: newGroups(pgInformer.Lister()), topo: topology.NewTracker(), handle: handle, placed: &f.placed, logger: logger}
	s.cache = gangstate.New(gangstate.Config{
		Clock:          opts.clock,
		Pods:           podInformer.GetIndexer(),
		Schedulers:     sets.New(h.ProfileName()),
		DefaultTimeout: time.Duration(*args.DefaultScheduleTimeoutSeconds) * time.Second,
		HeadEnabled:    *args.HeadReservation,
		BindBudget:     int(*args.BindBudget),
		Preemption:     *args.Preemption,
		Budgets:        budgets{lister: h.SharedInformerFactory().Policy().V1().PodDisruptionBudgets().Lister()},
		Levels:         args.TopologyLevels,
		Placement: placement.Options{
			EnableTaintComparisonOperators: compareTaints(),
		},
		Zones:  s.topo,
		Apply:  func(eff gangstate.Effects) { s.apply(logger, eff) },
		Logger: logger,
	})
	ensureMetrics()
	gangCollector.add(ctx, s.cache)
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: h.ClientSet().CoreV1().Events("")})
	go func() {
		<-ctx.Done()
		broadcaster.Shutdown()
	}()
	s.events = newEventer(broadcaster.NewRecorder(clientscheme.Scheme, v1.EventSource{Component: "lockstep-scheduler"}), opts.clock, &f.standby)

	// Before any handler can apply effects.
	s.conditions = newConditions(h.ClientSet(), client, s.groups, opts.clock, &f.standby)
	go s.conditions.run(ctx)

	if err := s.watch(pgInformer.Informer(), podInformer, h.SharedInformerFactory().Core().V1().Nodes().Informer()); err != nil {
		return nil, err
	}
	// New or changed zones, or pods counted, may hold what waits.
	s.topo.OnChange(func() { s.apply(logger, s.cache.RoomChanged()) })
	if err := s.topo.WatchPods(podInformer); err != nil {
		return nil, fmt.Errorf("watching pods for NUMA accounting: %w", err)
	}
	pgFactory.Start(ctx.Done())
	// Kubernetes' own PodGroups, once the cluster serves them; the
	// scheduler keeps their PodGroupInitiallyScheduled condition.
	s.groups.start(ctx, h.ClientSet(), h.ClientSet().Discovery(), upstreamHandler{
		added:   func(pg *v1alpha1.PodGroup) { s.apply(logger, s.cache.PodGroupAdded(pg)) },
		updated: func(old, pg *v1alpha1.PodGroup) { s.apply(logger, s.cache.PodGroupUpdated(old, pg)) },
		deleted: func(pg *v1alpha1.PodGroup) {
			key := podgroup.KeyOfGroup(pg)
			s.conditions.forget(key)
			s.apply(logger, s.cache.PodGroupDeleted(key, pg.UID))
		},
	})
	if restCfg != nil {
		if err := s.topo.Start(ctx, restCfg); err != nil {
			return nil, fmt.Errorf("watching NodeResourceTopologies: %w", err)
		}
	}
	// Do not hang the scheduler on a missing CRD: wait a bounded time, say
	// what is wrong, and go on. The informer keeps retrying and picks the
	// PodGroups up once the CRD exists; until then gang pods wait with an
	// Event naming their PodGroup.
	syncCtx, cancel := context.WithTimeout(ctx, time.Duration(*args.PodGroupSyncTimeoutSeconds)*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), pgInformer.Informer().HasSynced) {
		logger.Error(nil, "PodGroup informer did not sync; is the PodGroup CRD installed? Gang pods wait until it is",
			"resource", podgroup.GVR.String(), "timeout", *args.PodGroupSyncTimeoutSeconds)
	}
	return s, nil
}

// minResourcesNotUsed says, on a PodGroup that sets minResources (the MPI
// Operator, Training Operator, KubeRay and Trainer all do), that Lockstep
// does not read it: a gang goes only where a placement of its members
// exists, which a sum of free resources cannot promise, and a sum that
// says no would refuse gangs that fit.
func (s *shared) minResourcesNotUsed(pg *v1alpha1.PodGroup) {
	if len(pg.Spec.MinResources) == 0 {
		return
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(pg.Spec.MinResources)) {
		q := pg.Spec.MinResources[name]
		parts = append(parts, fmt.Sprintf("%s: %s", name, q.String()))
	}
	s.events.podGroupObj(pg, v1.EventTypeNormal, "MinResourcesNotUsed", fmt.Sprintf(
		"minResources (%s) is not used: Lockstep starts the gang only when its members can be placed, node by node, which no sum of free resources promises",
		strings.Join(parts, ", ")))
}

// watch feeds the cache from the PodGroup and pod informers.
func (s *shared) watch(pgInformer, podInformer, nodeInformer cache.SharedIndexInformer) error {
	if _, err := pgInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if pg, ok := obj.(*v1alpha1.PodGroup); ok {
				s.minResourcesNotUsed(pg)
				s.apply(s.logger, s.cache.PodGroupAdded(pg))
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			old, ok1 := oldObj.(*v1alpha1.PodGroup)
			pg, ok2 := obj.(*v1alpha1.PodGroup)
			if ok1 && ok2 {
				if !equality.Semantic.DeepEqual(old.Spec.MinResources, pg.Spec.MinResources) {
					s.minResourcesNotUsed(pg)
				}
				s.apply(s.logger, s.cache.PodGroupUpdated(old, pg))
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pg, ok := obj.(*v1alpha1.PodGroup); ok {
				s.conditions.forget(waitingKeyPrefix + podgroup.KeyOfGroup(pg))
				s.apply(s.logger, s.cache.PodGroupDeleted(podgroup.KeyOfGroup(pg), pg.UID))
			}
		},
	}); err != nil {
		return fmt.Errorf("watching PodGroups: %w", err)
	}
	if _, err := podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		// A gated member is announced here: the scheduler may not run this
		// plugin's PreEnqueue for it.
		AddFunc: func(obj any) {
			if pod, ok := obj.(*v1.Pod); ok && podgroup.IsGated(pod) && podgroup.KeyOf(pod) != "" {
				if pg, err := s.groups.of(pod); err == nil && pg != nil {
					s.membersMissing(s.logger, pg)
				}
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			old, ok1 := oldObj.(*v1.Pod)
			pod, ok2 := obj.(*v1.Pod)
			if !ok1 || !ok2 {
				return
			}
			if old.Spec.NodeName == "" && pod.Spec.NodeName != "" {
				if podgroup.KeyOf(pod) != "" {
					s.apply(s.logger, s.cache.PodBound(pod))
				} else {
					s.apply(s.logger, s.cache.OrdinaryDone(pod))
				}
			}
			if pod.Spec.NodeName != "" && !podgroup.IsTerminal(old) && podgroup.IsTerminal(pod) {
				s.cache.RoomFreed()
			}
		},
		// A pod gone gives back its place in a plan.
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pod, ok := obj.(*v1.Pod); ok {
				s.placed.take(pod.UID)
				s.apply(s.logger, s.cache.PodDeleted(pod))
			}
		},
	}); err != nil {
		return fmt.Errorf("watching pods: %w", err)
	}
	// A new node, or one that can take more, may hold the head of the
	// queue; status heartbeats change nothing. A node that can no longer
	// take pods must not keep the plans that put members on it.
	if _, err := nodeInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { s.cache.RoomFreed() },
		UpdateFunc: func(oldObj, obj any) {
			old, ok1 := oldObj.(*v1.Node)
			node, ok2 := obj.(*v1.Node)
			if !ok1 || !ok2 {
				return
			}
			if why, refuses := nodeLost(s.logger, old, node); why != "" {
				s.apply(s.logger, s.cache.NodeLost(node.Name, why, refuses))
			}
			if nodeRoomChanged(old, node) {
				s.cache.RoomFreed()
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if node, ok := obj.(*v1.Node); ok {
				s.apply(s.logger, s.cache.NodeLost(node.Name, "was deleted", func(*v1.Pod) bool { return true }))
			}
		},
	}); err != nil {
		return fmt.Errorf("watching nodes: %w", err)
	}
	return nil
}

// nodeLost says why a node updated from old can no longer take pods it
// could take ("" when it still can), and which pods it refuses: all of
// them once cordoned or not ready, those that do not tolerate a new
// NoSchedule or NoExecute taint.
func nodeLost(logger klog.Logger, old, node *v1.Node) (string, func(*v1.Pod) bool) {
	all := func(*v1.Pod) bool { return true }
	if !old.Spec.Unschedulable && node.Spec.Unschedulable {
		return "was cordoned", all
	}
	if nodeReady(old) && !nodeReady(node) {
		return "is not ready", all
	}
	var added []v1.Taint
	for _, t := range node.Spec.Taints {
		if t.Effect != v1.TaintEffectPreferNoSchedule && !slices.ContainsFunc(old.Spec.Taints, func(o v1.Taint) bool { return o.MatchTaint(&t) }) {
			added = append(added, t)
		}
	}
	if len(added) == 0 {
		return "", nil
	}
	return fmt.Sprintf("was tainted %s:%s", added[0].Key, added[0].Effect), func(pod *v1.Pod) bool {
		for i := range added {
			if !v1helper.TolerationsTolerateTaint(logger, pod.Spec.Tolerations, &added[i], compareTaints()) {
				return true
			}
		}
		return false
	}
}

// compareTaints is whether tolerations may compare taint values, as the
// scheduler's TaintToleration plugin does under the same gate.
func compareTaints() bool {
	return utilfeature.DefaultFeatureGate.Enabled(features.TaintTolerationComparisonOperators)
}

// nodeReady reports whether the node's Ready condition is True.
func nodeReady(node *v1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// nodeRoomChanged reports whether a node update may change where pods fit.
func nodeRoomChanged(old, node *v1.Node) bool {
	return old.Spec.Unschedulable != node.Spec.Unschedulable ||
		!equality.Semantic.DeepEqual(old.Status.Allocatable, node.Status.Allocatable) ||
		!equality.Semantic.DeepEqual(old.Spec.Taints, node.Spec.Taints) ||
		!maps.Equal(old.Labels, node.Labels)
}

// apply carries out what the cache decided. It must not be called with the
// cache's lock held: allowing and rejecting waiting pods and activating
// pods call into the framework, and Events reach the API.
func (s *shared) apply(logger klog.Logger, eff gangstate.Effects) {
	if eff.Placed != nil {
		// Before Allow: the members may be bound, and their Scheduled
		// Events filtered, as soon as they are let go.
		s.placed.add(eff.Placed.Members)
	}
	for _, uid := range eff.Allow {
		if wp := s.handle.GetWaitingPod(uid); wp != nil {
			wp.Allow(Name)
		}
	}
	for _, r := range eff.Reject {
		if wp := s.handle.GetWaitingPod(r.UID); wp != nil {
			wp.Reject(Name, r.Message)
		}
	}
	if len(eff.Activate) > 0 {
		s.handle.Activate(logger, eff.Activate)
	}
	for _, e := range eff.Events {
		switch {
		case e.PodGroup != nil:
			s.events.podGroupObj(e.PodGroup, e.Type, e.Reason, e.Message)
			s.conditions.note(e.PodGroup, e.Reason, e.Message)
		case e.Pod != nil:
			s.events.pod(e.Pod, e.Type, e.Reason, e.Message)
		}
	}
	if eff.Placed != nil {
		observePlacement(eff.Placed)
	}
	if eff.Attempt != nil {
		observeAttempt(eff.Attempt)
	}
	if eff.Started != nil {
		observeStarted(eff.Started)
	}
	if len(eff.Evict) > 0 {
		go s.evict(logger, eff.Evict)
	}
}

// evictTimeout bounds one preemption's evictions.
const evictTimeout = time.Minute

// evict evicts the victims of a gang's preemption through the Eviction
// API, which keeps PodDisruptionBudgets and marks each pod with a
// DisruptionTarget condition, and says so on each victim. Every eviction
// is tried as a dry run first: if the apiserver would refuse any, none is
// made, so that no victim gang is left partial for a preemption that
// cannot happen, and the cache is told to choose again without that unit.
func (s *shared) evict(logger klog.Logger, victims []gangstate.Eviction) {
	ctx, cancel := context.WithTimeout(klog.NewContext(context.Background(), logger), evictTimeout)
	defer cancel()
	client := s.handle.ClientSet()
	evict := func(p *v1.Pod, dryRun bool) error {
		opts := &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		err := client.PolicyV1().Evictions(p.Namespace).Evict(ctx, &policyv1.Eviction{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}, DeleteOptions: opts,
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil // gone already, or replaced
		}
		return err
	}
	refuse := func(v gangstate.Eviction, err error) {
		logger.Error(err, "Evicting a preemption victim", "pod", klog.KObj(v.Pod), "preemptor", v.Preemptor)
		if pg, gerr := s.groups.byKey(v.Preemptor); gerr == nil && pg != nil {
			s.events.podGroupObj(pg, v1.EventTypeWarning, "EvictionRefused", fmt.Sprintf(
				"evicting %s/%s: %v; choosing other victims", v.Pod.Namespace, v.Pod.Name, err))
		}
		// A refusal of the pod's eviction (a budget's 429, RBAC, an
		// admission policy) rules its unit out; a busy or failing
		// apiserver says nothing about it.
		transient := apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) ||
			apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || errors.Is(err, context.DeadlineExceeded)
		avoid := !transient
		s.apply(logger, s.cache.EvictionRefused(v.Preemptor, v.Preemption, v.Unit, avoid))
	}
	for _, v := range victims {
		if err := evict(v.Pod, true); err != nil {
			refuse(v, err)
			return
		}
	}
	started := sets.New[string]()
	for _, v := range victims {
		if !started.Has(v.Unit) {
			// A victim gang of Kubernetes' own API says, before it goes,
			// that the scheduler preempts it.
			if pg, err := s.groups.byKey(v.Unit); err == nil && pg != nil {
				if err := s.conditions.preempted(ctx, pg, v.Message); err != nil {
					logger.Error(err, "Marking a preempted PodGroup", "podGroup", v.Unit)
				}
			}
		}
		err := evict(v.Pod, false)
		if err != nil && started.Has(v.Unit) {
			// Part of this unit is gone already: the rest of it must go
			// too, or a victim gang is left partial. A budget spent by
			// someone else since the dry run frees up again; keep trying
			// until the deadline.
			err = wait.ExponentialBackoffWithContext(ctx, evictRetry, func(context.Context) (bool, error) {
				if err := evict(v.Pod, false); err != nil {
					logger.V(2).Info("Retrying the eviction of a preemption victim", "pod", klog.KObj(v.Pod), "err", err)
					return false, nil
				}
				return true, nil
			})
		}
		if err != nil {
			// Refused between the dry run and now: the rest of the
			// preemption stays, and the gang chooses again.
			refuse(v, err)
			return
		}
		started.Insert(v.Unit)
		s.events.pod(v.Pod, v1.EventTypeNormal, "Preempted", v.Message)
	}
}

// evictRetry paces the evictions retried within a victim unit begun.
var evictRetry = wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Steps: 10, Cap: 10 * time.Second}

// membersMissing reports, and records as an Event, why a gang that has not
// started cannot start yet for want of members; "" when enough exist.
func (s *shared) membersMissing(logger klog.Logger, pg *v1alpha1.PodGroup) string {
	m, eff := s.cache.Members(pg)
	s.apply(logger, eff)
	if len(m.Foreign) > 0 {
		s.events.podGroupObj(pg, v1.EventTypeWarning, "ForeignMembers", fmt.Sprintf(
			"%d member(s) name another scheduler and are not placed by this one: %v", len(m.Foreign), m.Foreign))
	}
	min := podgroup.MinMember(pg)
	if m.Started || m.Exist >= min {
		s.events.settle(pg, "WaitingForMembers")
		return ""
	}
	msg := fmt.Sprintf("%d/%d members exist", m.Exist, min)
	if m.Gated > 0 {
		msg += fmt.Sprintf(" (%d more scheduling-gated)", m.Gated)
	}
	s.events.podGroupProgress(pg, v1.EventTypeNormal, "WaitingForMembers", msg)
	s.conditions.note(pg, "WaitingForMembers", msg)
	return msg
}
