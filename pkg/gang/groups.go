package gang

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1beta1 "k8s.io/api/scheduling/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pglisters "sigs.k8s.io/scheduler-plugins/pkg/generated/listers/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/apidiscovery"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// upstreamPollInterval is how often the scheduler looks for the upstream
// PodGroup API while the cluster does not serve it.
var upstreamPollInterval = 10 * time.Second

// groups finds the PodGroup a pod names, in either API: scheduler-plugins'
// (a label) or Kubernetes' own (spec.schedulingGroup), the latter
// translated once per change into the shape the gang core works with.
type groups struct {
	legacy pglisters.PodGroupLister
	// served is set once the cluster serves scheduling.k8s.io/v1beta1
	// PodGroups, synced once they are all listed.
	served, synced atomic.Bool

	mu sync.RWMutex
	// upstream are the upstream PodGroups translated, raw as listed.
	upstream map[string]*v1alpha1.PodGroup
	raw      map[string]*schedulingv1beta1.PodGroup
}

func newGroups(legacy pglisters.PodGroupLister) *groups {
	return &groups{legacy: legacy, upstream: map[string]*v1alpha1.PodGroup{}, raw: map[string]*schedulingv1beta1.PodGroup{}}
}

// errUpstreamNotServed says why a pod naming an upstream PodGroup waits.
var errUpstreamNotServed = fmt.Errorf("the cluster does not serve %s PodGroups (feature gate GenericWorkload and runtime-config %s=true on kube-apiserver)",
	podgroup.UpstreamGroupVersion, podgroup.UpstreamGroupVersion)

// of returns the PodGroup a pod names; a NotFound error when it does not
// exist (yet), and nil, nil when the pod names none.
func (g *groups) of(pod *v1.Pod) (*v1alpha1.PodGroup, error) {
	if name := podgroup.UpstreamNameOf(pod); name != "" {
		if !g.served.Load() {
			return nil, errUpstreamNotServed
		}
		g.mu.RLock()
		pg := g.upstream[podgroup.UpstreamKey(pod.Namespace, name)]
		g.mu.RUnlock()
		if pg == nil {
			return nil, apierrors.NewNotFound(podgroup.UpstreamGVR.GroupResource(), name)
		}
		return pg, nil
	}
	if name := podgroup.NameOf(pod); name != "" {
		return g.legacy.PodGroups(pod.Namespace).Get(name)
	}
	return nil, nil
}

// byKey returns the PodGroup of a gang key (podgroup.KeyOfGroup), nil
// when it is not known.
func (g *groups) byKey(key string) (*v1alpha1.PodGroup, error) {
	g.mu.RLock()
	pg, ok := g.upstream[key]
	g.mu.RUnlock()
	if ok {
		return pg, nil
	}
	ns, name, found := strings.Cut(key, "/")
	if !found || strings.Contains(name, "/") {
		return nil, nil
	}
	return g.legacy.PodGroups(ns).Get(name)
}

// apiOf names the API a pod's PodGroup is in, for messages.
func apiOf(pod *v1.Pod) string {
	if podgroup.UpstreamNameOf(pod) != "" {
		return podgroup.UpstreamGVR.GroupResource().String()
	}
	return podgroup.GVR.GroupResource().String()
}

// upstreamHandler is told of upstream PodGroups, translated.
type upstreamHandler struct {
	added   func(pg *v1alpha1.PodGroup)
	updated func(old, pg *v1alpha1.PodGroup)
	deleted func(pg *v1alpha1.PodGroup)
}

// start looks for the upstream PodGroup API, once before the scheduler
// runs and then every upstreamPollInterval, and watches its objects once
// it is served: a cluster that does not serve it works as before, and one
// that starts serving it is picked up without a restart.
func (g *groups) start(ctx context.Context, client kubernetes.Interface, disc discovery.DiscoveryInterface, h upstreamHandler) {
	logger := klog.FromContext(ctx)
	if apidiscovery.WhenServed(ctx, disc, podgroup.UpstreamGVR, upstreamPollInterval,
		func() {
			logger.V(2).Info("Upstream PodGroup API is not served; pods that name its PodGroups wait until it is", "groupVersion", podgroup.UpstreamGroupVersion.String())
		},
		func() {
			g.served.Store(true)
			logger.Info("Upstream PodGroup API found; scheduling the pods that name its PodGroups", "groupVersion", podgroup.UpstreamGroupVersion.String())
			g.watch(ctx, client, h)
		}) {
		g.served.Store(true)
	}
}

func (g *groups) watch(ctx context.Context, client kubernetes.Interface, h upstreamHandler) {
	factory := informers.NewSharedInformerFactory(client, 0)
	inf := factory.Scheduling().V1beta1().PodGroups().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if up, ok := obj.(*schedulingv1beta1.PodGroup); ok {
				h.added(g.store(up))
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			old, ok1 := oldObj.(*schedulingv1beta1.PodGroup)
			up, ok2 := obj.(*schedulingv1beta1.PodGroup)
			if ok1 && ok2 && old.ResourceVersion != up.ResourceVersion {
				h.updated(podgroup.FromUpstream(old), g.store(up))
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if up, ok := obj.(*schedulingv1beta1.PodGroup); ok {
				key := podgroup.UpstreamKey(up.Namespace, up.Name)
				g.mu.Lock()
				delete(g.upstream, key)
				delete(g.raw, key)
				g.mu.Unlock()
				h.deleted(podgroup.FromUpstream(up))
			}
		},
	})
	factory.Start(ctx.Done())
	if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		g.synced.Store(true)
	}
}

// store keeps an upstream PodGroup's translation and returns it.
func (g *groups) store(up *schedulingv1beta1.PodGroup) *v1alpha1.PodGroup {
	pg := podgroup.FromUpstream(up)
	key := podgroup.UpstreamKey(up.Namespace, up.Name)
	g.mu.Lock()
	g.upstream[key] = pg
	g.raw[key] = up
	g.mu.Unlock()
	return pg
}

// condition returns an upstream PodGroup's PodGroupInitiallyScheduled
// condition as listed (nil when it has none) and its UID; found is false
// when the PodGroup is not listed.
func (g *groups) condition(key string) (cond *metav1.Condition, uid types.UID, found bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	up, ok := g.raw[key]
	if !ok {
		return nil, "", false
	}
	return meta.FindStatusCondition(up.Status.Conditions, schedulingv1beta1.PodGroupInitiallyScheduled), up.UID, true
}
