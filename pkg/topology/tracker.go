package topology

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	nrtv1alpha2 "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/apis/topology/v1alpha2"
	nrtclientset "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/generated/clientset/versioned"
	nrtinformers "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/generated/informers/externalversions"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/lockstep-sched/lockstep/pkg/apidiscovery"
	"github.com/lockstep-sched/lockstep/pkg/numa"
)

// Attribute names and values kubelet-side agents publish.
const (
	attrPolicy   = "topologyManagerPolicy"
	attrScope    = "topologyManagerScope"
	zoneTypeNode = "Node"
)

// crdPollInterval is how often the tracker looks for the NRT CRD while it
// is missing.
var crdPollInterval = 10 * time.Second

// Tracker serves nodes' NUMA zones: what the node agent last published in
// their NodeResourceTopology, and the pods with exclusive CPUs bound or
// assumed there that the agent has not counted yet.
//
// The agent counts a pod once kubelet has admitted it, and publishes on
// its own schedule; an NRT object says nothing about which pods it counts.
// So a pod stays pending until the tracker has seen it running and, after
// that, an update of its node's NRT; or until the object was last written
// (its managed fields' time) more than a second after the pod started
// running, which is how the pods found running after a restart are
// counted without waiting for the agent to change anything. And when the
// CPUs an object shows in use cover every pod tracked on its node, all of
// them are counted: pods that ended since the agent last wrote are set
// aside for that check, as their CPUs may still show. Until it is counted
// a pod may be counted twice, which only ever makes a node look fuller
// than it is.
type Tracker struct {
	mu sync.RWMutex
	// nodes are the zones each node's agent published.
	nodes map[string]*published
	// pods are the pods with exclusive CPUs on a node, bound or assumed,
	// until they end; byNode indexes them.
	pods   map[types.UID]*podState
	byNode map[string]map[types.UID]*podState
	// seq orders what the tracker sees: a pod seen running at seq r is
	// counted by an NRT update seen at a later seq.
	seq       uint64
	listeners []func()
	// ended are, per node, the CPUs of pods that ran and ended since the
	// agent last wrote the node's object: they may still show as in use.
	ended map[string]int64
	// served is set once the NRT API is found, synced once its objects
	// are all listed: in between, what the tracker knows of zones is
	// incomplete.
	served, synced atomic.Bool
}

// Ready reports whether the tracker can be asked about NUMA zones: the
// NRT API is not served (nodes are placed by capacity), or its objects
// are listed. Right after a start or failover they may not be yet, and a
// pod with exclusive CPUs placed then could be sent to a kubelet that
// rejects it.
func (t *Tracker) Ready() bool {
	return !t.served.Load() || t.synced.Load()
}

// published is a node's NodeResourceTopology, read once per change.
type published struct {
	numa.Node
	// writtenAt is when the object was last written, to the second.
	writtenAt time.Time
	// used is the CPUs the object shows in use on the node's zones.
	used int64
}

type podState struct {
	node  string
	needs *numa.Needs
	// order is when the tracker first saw the pod on its node: the order
	// kubelet most likely admits pods in.
	order uint64
	// running is the seq at which the pod was first seen running, 0 if not
	// yet, and runningSince when its containers last started by its status;
	// counted is set once the agent has counted it.
	running      uint64
	runningSince time.Time
	counted      bool
}

// countedIn reports whether the agent counted the pod in the node's
// object: written after the pod was seen running, or more than a second
// after it started.
func (s *podState) countedIn(p *published, seq uint64) bool {
	if s.running != 0 && s.running < seq {
		return true
	}
	return !s.runningSince.IsZero() && !p.writtenAt.Before(s.runningSince.Add(agentClockSkew))
}

// agentClockSkew covers the objects' times being whole seconds.
const agentClockSkew = time.Second

// NewTracker returns a tracker that knows no zones until Start finds the
// NodeResourceTopology API.
func NewTracker() *Tracker {
	return &Tracker{nodes: map[string]*published{}, pods: map[types.UID]*podState{}, byNode: map[string]map[types.UID]*podState{}, ended: map[string]int64{}}
}

// OnChange registers f to run when a node may take more than before: an
// NRT object with more room, new pods counted, a pending pod gone.
func (t *Tracker) OnChange(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.listeners = append(t.listeners, f)
}

func (t *Tracker) changed() {
	t.mu.RLock()
	ls := slices.Clone(t.listeners)
	t.mu.RUnlock()
	for _, f := range ls {
		f()
	}
}

// Start looks for the NodeResourceTopology API and, once it is served,
// watches its objects, including those created later. A cluster without
// the CRD works as if no node published zones; the tracker says so once
// and picks the CRD up if it is installed later.
func (t *Tracker) Start(ctx context.Context, cfg *rest.Config) error {
	logger := klog.FromContext(ctx)
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	client, err := nrtclientset.NewForConfig(cfg)
	if err != nil {
		return err
	}
	// Asked once before the scheduler runs, so that it never places pinned
	// pods as if no node had zones while the objects are on their way.
	found := apidiscovery.WhenServed(ctx, disc, nrtv1alpha2.SchemeGroupVersion.WithResource("noderesourcetopologies"), crdPollInterval,
		func() {
			logger.Info("NodeResourceTopology CRD is not installed; placing by node capacity until it is", "resource", "noderesourcetopologies.topology.node.k8s.io")
		},
		func() {
			t.served.Store(true)
			t.watch(ctx, client)
			logger.Info("NodeResourceTopology API found; placing pods by NUMA zone where nodes publish them")
		})
	if found {
		// Only true: the watch may have begun already, and set it.
		t.served.Store(true)
	}
	return nil
}

func (t *Tracker) watch(ctx context.Context, client nrtclientset.Interface) {
	factory := nrtinformers.NewSharedInformerFactory(client, 0)
	inf := factory.Topology().V1alpha2().NodeResourceTopologies()
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if nrt, ok := obj.(*nrtv1alpha2.NodeResourceTopology); ok {
				t.Published(nrt, false)
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			old, ok1 := oldObj.(*nrtv1alpha2.NodeResourceTopology)
			nrt, ok2 := obj.(*nrtv1alpha2.NodeResourceTopology)
			if ok1 && ok2 && old.ResourceVersion != nrt.ResourceVersion {
				t.Published(nrt, true)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if nrt, ok := obj.(*nrtv1alpha2.NodeResourceTopology); ok {
				t.mu.Lock()
				delete(t.nodes, nrt.Name)
				t.mu.Unlock()
				t.changed()
			}
		},
	})
	factory.Start(ctx.Done())
	if cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		t.synced.Store(true)
		// Pods held back until now may go.
		t.changed()
	}
}

// Published records a node's NRT object. An update (not the first sight of
// the object, which may predate pods the tracker sees running) counts the
// pods seen running before it.
func (t *Tracker) Published(nrt *nrtv1alpha2.NodeResourceTopology, update bool) {
	p := parse(nrt)
	t.mu.Lock()
	t.seq++
	old := t.nodes[nrt.Name]
	t.nodes[nrt.Name] = p
	counted := false
	seq := uint64(0)
	if update {
		seq = t.seq
	}
	if update {
		delete(t.ended, nrt.Name)
	}
	for _, s := range t.byNode[nrt.Name] {
		if !s.counted && s.countedIn(p, seq) {
			s.counted, counted = true, true
		}
	}
	counted = t.reconcileLocked(nrt.Name) || counted
	t.mu.Unlock()
	if old == nil || counted || roomGrew(old, p) {
		t.changed()
	}
}

// WatchPods feeds the tracker from the scheduler's pod informer.
func (t *Tracker) WatchPods(inf cache.SharedIndexInformer) error {
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { t.podChanged(obj) },
		UpdateFunc: func(_, obj any) { t.podChanged(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pod, ok := obj.(*v1.Pod); ok {
				t.Forget(pod.UID)
			}
		},
	})
	return err
}

func (t *Tracker) podChanged(obj any) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	switch {
	case pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed:
		// Kubelet gives back a finished pod's CPUs.
		t.Forget(pod.UID)
	case pod.Spec.NodeName != "":
		t.track(pod.Spec.NodeName, pod, pod.Status.Phase == v1.PodRunning)
	}
}

// startedAt is when the pod's containers last started, by its status.
func startedAt(pod *v1.Pod) time.Time {
	var at time.Time
	if pod.Status.StartTime != nil {
		at = pod.Status.StartTime.Time
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if r := cs.State.Running; r != nil && r.StartedAt.After(at) {
			at = r.StartedAt.Time
		}
	}
	return at
}

// Assume records a pod the scheduler reserved on a node: kubelet will
// admit it there.
func (t *Tracker) Assume(node string, pod *v1.Pod) {
	t.track(node, pod, false)
}

func (t *Tracker) track(node string, pod *v1.Pod, running bool) {
	t.mu.Lock()
	counted := false
	defer func() {
		t.mu.Unlock()
		if counted {
			t.changed()
		}
	}()
	s := t.pods[pod.UID]
	if s == nil || s.node != node {
		needs := numa.NeedsOf(pod)
		if needs == nil {
			return
		}
		t.forgetLocked(pod.UID)
		t.seq++
		s = &podState{node: node, needs: needs, order: t.seq}
		t.pods[pod.UID] = s
		if t.byNode[node] == nil {
			t.byNode[node] = map[types.UID]*podState{}
		}
		t.byNode[node][pod.UID] = s
	}
	if running && s.running == 0 {
		t.seq++
		s.running, s.runningSince = t.seq, startedAt(pod)
		if p := t.nodes[node]; p != nil && s.countedIn(p, 0) {
			s.counted, counted = true, true
		}
		counted = t.reconcileLocked(node) || counted
	}
}

// reconcileLocked counts every pod tracked on a node when the CPUs its
// object shows in use, less those of pods that ended since, cover them
// all; it reports whether it counted any.
func (t *Tracker) reconcileLocked(node string) bool {
	p := t.nodes[node]
	if p == nil {
		return false
	}
	var cpus int64
	uncounted := false
	for _, s := range t.byNode[node] {
		cpus += s.needs.For(p.Scope).CPUs()
		uncounted = uncounted || !s.counted
	}
	if !uncounted || p.used-t.ended[node] < cpus {
		return false
	}
	for _, s := range t.byNode[node] {
		s.counted = true
	}
	return true
}

// Forget drops a pod: unreserved, finished or gone.
func (t *Tracker) Forget(pod types.UID) {
	t.mu.Lock()
	s := t.pods[pod]
	pending := s != nil && !s.counted
	if s != nil && s.running != 0 {
		if p := t.nodes[s.node]; p != nil {
			t.ended[s.node] += s.needs.For(p.Scope).CPUs()
		}
	}
	t.forgetLocked(pod)
	t.mu.Unlock()
	if pending {
		t.changed()
	}
}

func (t *Tracker) forgetLocked(pod types.UID) {
	s, ok := t.pods[pod]
	if !ok {
		return
	}
	delete(t.pods, pod)
	delete(t.byNode[s.node], pod)
	if len(t.byNode[s.node]) == 0 {
		delete(t.byNode, s.node)
	}
}

// NodeOf returns a node's NUMA zones with the room the agent published and
// the pods it has yet to count; nil when the node publishes no zones. The
// result is read only.
func (t *Tracker) NodeOf(node string) *numa.Node {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := t.zonesLocked(node)
	if n == nil {
		return nil
	}
	var pending []*podState
	for _, s := range t.byNode[node] {
		if !s.counted {
			pending = append(pending, s)
		}
	}
	slices.SortFunc(pending, func(a, b *podState) int { return int(a.order) - int(b.order) })
	for _, s := range pending {
		if d := s.needs.For(n.Scope); len(d) > 0 {
			n.Pending = append(n.Pending, d)
		}
	}
	return n
}

// EmptyNodeOf returns a node's NUMA zones as if it ran nothing.
func (t *Tracker) EmptyNodeOf(node string) *numa.Node {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := t.zonesLocked(node)
	if n != nil {
		n.Free = n.Allocatable
	}
	return n
}

// zonesLocked returns a copy of what a node's agent published, nil when it
// publishes no zones; its slices are shared and read only.
func (t *Tracker) zonesLocked(node string) *numa.Node {
	p := t.nodes[node]
	if p == nil || len(p.Free) == 0 {
		return nil
	}
	n := p.Node
	return &n
}

// roomGrew reports whether an NRT update may let a pod fit that did not:
// a zone with more room, a new zone, or a policy less strict.
func roomGrew(old, now *published) bool {
	if strictness(now.Policy) < strictness(old.Policy) || old.Scope != now.Scope || len(now.Free) != len(old.Free) {
		return true
	}
	for i := range now.Free {
		if now.Free[i] > old.Free[i] || now.Names[i] != old.Names[i] {
			return true
		}
	}
	return false
}

// strictness orders the policies by how many pods they may reject.
func strictness(p numa.Policy) int {
	switch p {
	case numa.PolicySingleNUMANode:
		return 3
	case numa.PolicyRestricted:
		return 2
	case numa.PolicyBestEffort:
		return 1
	}
	return 0
}

// parse reads the NUMA zones of an NRT object, in NUMA id order: the room
// of a zone is what the agent last reported available, capped by what is
// allocatable; its capacity decides how few zones a pod could fit.
func parse(nrt *nrtv1alpha2.NodeResourceTopology) *published {
	type zone struct {
		name                        string
		id                          int
		capacity, allocatable, free int64
	}
	var zones []zone
	for _, z := range nrt.Zones {
		if z.Type != zoneTypeNode {
			continue
		}
		zn := zone{name: z.Name, id: numaID(z.Name)}
		for _, r := range z.Resources {
			if v1.ResourceName(r.Name) != v1.ResourceCPU {
				continue
			}
			zn.allocatable = max(r.Allocatable.Value(), 0)
			zn.free = min(max(r.Available.Value(), 0), zn.allocatable)
			zn.capacity = max(r.Capacity.Value(), zn.allocatable)
		}
		zones = append(zones, zn)
	}
	if len(zones) > numa.MaxZones {
		// Not a machine kubelet runs on: place by node capacity alone.
		zones = nil
	}
	slices.SortStableFunc(zones, func(a, b zone) int {
		if a.id != b.id {
			return a.id - b.id
		}
		return strings.Compare(a.name, b.name)
	})
	p := &published{Node: numa.Node{Policy: numa.PolicyNone, Scope: numa.ScopeContainer}}
	for _, f := range nrt.ManagedFields {
		if f.Time != nil && f.Time.After(p.writtenAt) {
			p.writtenAt = f.Time.Time
		}
	}
	for _, z := range zones {
		p.Names = append(p.Names, z.name)
		p.Capacity = append(p.Capacity, z.capacity)
		p.Free = append(p.Free, z.free)
		p.Allocatable = append(p.Allocatable, z.allocatable)
		p.used += z.allocatable - z.free
	}
	for _, pol := range nrt.TopologyPolicies {
		if l, ok := legacyPolicies[nrtv1alpha2.TopologyManagerPolicy(pol)]; ok {
			p.Policy, p.Scope = l.policy, l.scope
		}
	}
	// The attributes are the current form and win over the deprecated
	// list.
	for _, a := range nrt.Attributes {
		switch a.Name {
		case attrPolicy:
			switch pol := numa.Policy(a.Value); pol {
			case numa.PolicyNone, numa.PolicyBestEffort, numa.PolicyRestricted, numa.PolicySingleNUMANode:
				p.Policy = pol
			}
		case attrScope:
			switch sc := numa.Scope(a.Value); sc {
			case numa.ScopeContainer, numa.ScopePod:
				p.Scope = sc
			}
		}
	}
	return p
}

// legacyPolicies reads the deprecated topologyPolicies list.
var legacyPolicies = map[nrtv1alpha2.TopologyManagerPolicy]struct {
	policy numa.Policy
	scope  numa.Scope
}{
	nrtv1alpha2.SingleNUMANodeContainerLevel: {numa.PolicySingleNUMANode, numa.ScopeContainer},
	nrtv1alpha2.SingleNUMANodePodLevel:       {numa.PolicySingleNUMANode, numa.ScopePod},
	nrtv1alpha2.RestrictedContainerLevel:     {numa.PolicyRestricted, numa.ScopeContainer},
	nrtv1alpha2.RestrictedPodLevel:           {numa.PolicyRestricted, numa.ScopePod},
	nrtv1alpha2.BestEffortContainerLevel:     {numa.PolicyBestEffort, numa.ScopeContainer},
	nrtv1alpha2.BestEffortPodLevel:           {numa.PolicyBestEffort, numa.ScopePod},
}

// numaID is the NUMA node number in a zone name such as node-1; zones
// named otherwise sort last, by name.
func numaID(name string) int {
	i := strings.LastIndexAny(name, "-_")
	if id, err := strconv.Atoi(name[i+1:]); err == nil && id >= 0 {
		return id
	}
	return 1 << 30
}
