package gang

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/features"
	"k8s.io/utils/clock"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgclientset "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned"
	pginformers "sigs.k8s.io/scheduler-plugins/pkg/generated/informers/externalversions"

	"github.com/lockstep-sched/lockstep/apis/config"
	"github.com/lockstep-sched/lockstep/pkg/placement"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
	"github.com/lockstep-sched/lockstep/pkg/topology"
)

// managerFor returns the manager of the scheduler h belongs to, creating it
// (and its PodGroup informer) for the first profile.
func managerFor(ctx context.Context, obj runtime.Object, h fwk.Handle) (*manager, error) {
	args, err := config.DecodeGangArgs(obj)
	if err != nil {
		return nil, err
	}
	logger := klog.FromContext(ctx).WithName(Name)

	managersMu.Lock()
	defer managersMu.Unlock()
	factory := h.SharedInformerFactory()
	if m, ok := managers[factory]; ok {
		m.mu.Lock()
		m.schedulers.Insert(h.ProfileName())
		m.mu.Unlock()
		return m, nil
	}

	podInformer := factory.Core().V1().Pods().Informer()
	if err := podInformer.AddIndexers(cache.Indexers{gangIndex: indexByGang}); err != nil {
		return nil, fmt.Errorf("indexing pods by PodGroup: %w", err)
	}

	// CRDs are served as JSON only; the scheduler's own config asks for protobuf.
	restCfg := rest.CopyConfig(h.KubeConfig())
	restCfg.ContentType = runtime.ContentTypeJSON
	client, err := pgclientset.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("building PodGroup client: %w", err)
	}
	pgFactory := pginformers.NewSharedInformerFactory(client, 0)
	pgInformer := pgFactory.Scheduling().V1alpha1().PodGroups()

	m := &manager{
		gangs:          map[string]*gangState{},
		parked:         map[types.UID]*v1.Pod{},
		clock:          clock.RealClock{},
		handle:         h,
		pgLister:       pgInformer.Lister(),
		podIndexer:     podInformer.GetIndexer(),
		schedulers:     sets.New(h.ProfileName()),
		defaultTimeout: time.Duration(*args.DefaultScheduleTimeoutSeconds) * time.Second,
		headEnabled:    *args.HeadReservation,
		levels:         args.TopologyLevels,
		topo:           topology.NewTracker(),
		placementOpts: placement.Options{
			EnableTaintComparisonOperators: utilfeature.DefaultFeatureGate.Enabled(features.TaintTolerationComparisonOperators),
		},
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: h.ClientSet().CoreV1().Events("")})
	go func() {
		<-ctx.Done()
		broadcaster.Shutdown()
	}()
	m.events = newEventer(broadcaster.NewRecorder(clientscheme.Scheme, v1.EventSource{Component: "lockstep-scheduler"}), m.pgLister, m.clock)

	if _, err := pgInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if pg, ok := obj.(*v1alpha1.PodGroup); ok {
				m.onPodGroupAdd(logger, pg)
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			old, ok1 := oldObj.(*v1alpha1.PodGroup)
			pg, ok2 := obj.(*v1alpha1.PodGroup)
			if ok1 && ok2 {
				m.onPodGroupUpdate(logger, old, pg)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pg, ok := obj.(*v1alpha1.PodGroup); ok {
				m.onPodGroupDelete(logger, pg.Namespace, pg.Name)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("watching PodGroups: %w", err)
	}
	pgFactory.Start(ctx.Done())

	// A pod gone gives back its NUMA zones. A gated member is announced
	// here: the scheduler may not run this plugin's PreEnqueue for it.
	if _, err := podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if pod, ok := obj.(*v1.Pod); ok && podgroup.IsGated(pod) && podgroup.NameOf(pod) != "" {
				m.reportMembers(pod)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pod, ok := obj.(*v1.Pod); ok {
				m.topo.Forget(pod.UID)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("watching pods: %w", err)
	}
	// New or changed zones may hold what waits.
	if err := m.topo.Start(ctx, restCfg, func() {
		m.mu.Lock()
		wake := m.releaseLocked()
		m.mu.Unlock()
		m.activate(logger, wake)
	}); err != nil {
		return nil, fmt.Errorf("watching NodeResourceTopologies: %w", err)
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
	managers[factory] = m
	go func() {
		<-ctx.Done()
		managersMu.Lock()
		delete(managers, factory)
		managersMu.Unlock()
	}()
	return m, nil
}

func indexByGang(obj any) ([]string, error) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return nil, nil
	}
	if key := podgroup.KeyOf(pod); key != "" {
		return []string{key}, nil
	}
	return nil, nil
}
