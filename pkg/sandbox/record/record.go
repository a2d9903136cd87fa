// Package record watches the pods and PodGroups of a sandbox run and notes,
// to the millisecond, when each was created, bound, started and finished.
// The API's own timestamps have whole seconds, too coarse for bind skew.
package record

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1beta1 "k8s.io/api/scheduling/v1beta1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	resourcehelper "k8s.io/component-helpers/resource"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgclientset "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned"
	pginformers "sigs.k8s.io/scheduler-plugins/pkg/generated/informers/externalversions"

	"github.com/lockstep-sched/lockstep/pkg/controller"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/cpumanager"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/report"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/workload"
)

// Recorder keeps what it saw of the run's namespaces.
type Recorder struct {
	namespaces sets.Set[string]
	zones      cpumanager.Source
	now        func() time.Time

	podInformer      cache.SharedIndexInformer
	pgInformer       cache.SharedIndexInformer
	upstreamInformer cache.SharedIndexInformer

	mu    sync.Mutex
	pods  map[string]*podRecord
	gangs map[string]*report.Gang
	order []string // gang keys in the order first seen
	// upstream are the gangs of Kubernetes' own PodGroups, by key: they
	// have no phase, so the recorder derives it from their pods as the
	// controller would.
	upstream map[string]*v1alpha1.PodGroup
}

type podRecord struct {
	rec report.Pod
	uid types.UID
	// last is the latest pod object, for the NUMA zones at the end.
	last *v1.Pod
}

// New returns a Recorder of the pods and PodGroups in namespaces; zones
// says which NUMA zones each pod took. With upstream, it records
// Kubernetes' own PodGroups too (the cluster must serve them).
func New(client kubernetes.Interface, pgs pgclientset.Interface, namespaces []string, zones cpumanager.Source, upstream bool) *Recorder {
	r := &Recorder{
		namespaces: sets.New(namespaces...),
		zones:      zones,
		now:        time.Now,
		pods:       map[string]*podRecord{},
		gangs:      map[string]*report.Gang{},
		upstream:   map[string]*v1alpha1.PodGroup{},
	}
	r.podInformer = informers.NewSharedInformerFactory(client, 0).Core().V1().Pods().Informer()
	r.pgInformer = pginformers.NewSharedInformerFactory(pgs, 0).Scheduling().V1alpha1().PodGroups().Informer()
	if upstream {
		r.upstreamInformer = informers.NewSharedInformerFactory(client, 0).Scheduling().V1beta1().PodGroups().Informer()
	}
	return r
}

// Start watches until ctx ends and returns once the caches have synced.
func (r *Recorder) Start(ctx context.Context) error {
	if _, err := r.podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.onPod(obj, false) },
		UpdateFunc: func(_, obj any) { r.onPod(obj, false) },
		DeleteFunc: func(obj any) { r.onPod(obj, true) },
	}); err != nil {
		return fmt.Errorf("watching pods: %w", err)
	}
	if _, err := r.pgInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    r.onPodGroup,
		UpdateFunc: func(_, obj any) { r.onPodGroup(obj) },
	}); err != nil {
		return fmt.Errorf("watching PodGroups: %w", err)
	}
	synced := []cache.InformerSynced{r.podInformer.HasSynced, r.pgInformer.HasSynced}
	if r.upstreamInformer != nil {
		onUpstream := func(obj any) {
			if up, ok := obj.(*schedulingv1beta1.PodGroup); ok {
				r.onPodGroup(podgroup.FromUpstream(up))
			}
		}
		if _, err := r.upstreamInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    onUpstream,
			UpdateFunc: func(_, obj any) { onUpstream(obj) },
		}); err != nil {
			return fmt.Errorf("watching upstream PodGroups: %w", err)
		}
		go r.upstreamInformer.RunWithContext(ctx)
		synced = append(synced, r.upstreamInformer.HasSynced)
	}
	go r.podInformer.RunWithContext(ctx)
	go r.pgInformer.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("waiting for the pod and PodGroup watches: %w", ctx.Err())
	}
	return nil
}

func (r *Recorder) onPod(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*v1.Pod)
	if !ok || !r.namespaces.Has(pod.Namespace) {
		return
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	key := pod.Namespace + "/" + pod.Name
	pr := r.pods[key]
	if pr == nil || pr.uid != pod.UID {
		req := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
		pr = &podRecord{uid: pod.UID, rec: report.Pod{
			Namespace: pod.Namespace, Name: pod.Name,
			Gang:     podgroup.NameOf(pod) + podgroup.UpstreamNameOf(pod),
			CPUMilli: req.Cpu().MilliValue(),
			Memory:   req.Memory().Value(),
			Created:  now,
		}}
		r.pods[key] = pr
	}
	pr.last = pod
	rec := &pr.rec
	rec.Phase = pod.Status.Phase
	if pod.Spec.NodeName != "" && rec.Bound.IsZero() {
		rec.Bound, rec.Node = now, pod.Spec.NodeName
	}
	if pod.Status.Phase == v1.PodRunning && rec.Running.IsZero() {
		rec.Running = now
	}
	if pod.Status.Phase == v1.PodFailed && rec.Running.IsZero() && pod.Status.Reason != "" {
		// Failed without ever running: kubelet refused it at admission.
		rec.Rejected = pod.Status.Reason
	}
	if podgroup.IsTerminal(pod) && rec.Finished.IsZero() {
		rec.Finished = now
		if rec.Running.IsZero() {
			rec.Running = now
		}
	}
	if deleted {
		rec.Deleted = true
		if rec.Finished.IsZero() {
			rec.Finished = now
		}
	}
	if pg := r.upstream[rec.GangKey()]; pg != nil && podgroup.UpstreamNameOf(pod) != "" {
		r.derivePhaseLocked(pg, now)
	}
}

// derivePhaseLocked gives an upstream PodGroup's gang the phase the
// controller would give its pods.
func (r *Recorder) derivePhaseLocked(pg *v1alpha1.PodGroup, now time.Time) {
	var pods []v1.Pod
	for _, pr := range r.pods {
		if pr.last != nil && !pr.rec.Deleted && podgroup.Belongs(pr.last, pg) {
			pods = append(pods, *pr.last)
		}
	}
	g := r.gangs[podgroup.Key(pg.Namespace, pg.Name)]
	if g == nil {
		return
	}
	g.Phase = string(controller.Phase(pg, pods))
	if _, seen := g.PhaseSeen[g.Phase]; !seen {
		g.PhaseSeen[g.Phase] = now
	}
}

func (r *Recorder) onPodGroup(obj any) {
	pg, ok := obj.(*v1alpha1.PodGroup)
	if !ok || !r.namespaces.Has(pg.Namespace) {
		return
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	key := podgroup.Key(pg.Namespace, pg.Name)
	g := r.gangs[key]
	if g == nil {
		g = &report.Gang{Namespace: pg.Namespace, Name: pg.Name, Created: now, PhaseSeen: map[string]time.Time{}}
		r.gangs[key] = g
		r.order = append(r.order, key)
	}
	g.MinMember = podgroup.MinMember(pg)
	g.RequiredTopology = pg.Annotations[workload.RequiredTopologyAnnotation]
	if podgroup.IsUpstream(pg) {
		r.upstream[key] = pg
		r.derivePhaseLocked(pg, now)
		return
	}
	g.Phase = string(pg.Status.Phase)
	if _, seen := g.PhaseSeen[g.Phase]; !seen && g.Phase != "" {
		g.PhaseSeen[g.Phase] = now
	}
}

// Snapshot returns what has been seen so far: gangs in the order they
// appeared, pods in the order they were created.
func (r *Recorder) Snapshot() (gangs []report.Gang, pods []report.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.order {
		g := *r.gangs[k]
		g.PhaseSeen = make(map[string]time.Time, len(r.gangs[k].PhaseSeen))
		for p, t := range r.gangs[k].PhaseSeen {
			g.PhaseSeen[p] = t
		}
		gangs = append(gangs, g)
	}
	for _, pr := range r.pods {
		p := pr.rec
		if p.Node != "" && r.zones != nil {
			p.NUMAZones = r.zones.Zones(pr.last)
		}
		pods = append(pods, p)
	}
	sortPods(pods)
	return gangs, pods
}

func sortPods(pods []report.Pod) {
	slices.SortStableFunc(pods, func(a, b report.Pod) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
}
