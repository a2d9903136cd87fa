package topology

import (
	"context"
	"slices"
	"sync"
	"time"

	nrtv1alpha2 "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/apis/topology/v1alpha2"
	nrtclientset "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/generated/clientset/versioned"
	nrtinformers "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/generated/informers/externalversions"
	nrtlisters "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/generated/listers/topology/v1alpha2"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/lockstep-sched/lockstep/pkg/placement"
)

// Attribute names and values kubelet-side agents publish.
const (
	attrPolicy       = "topologyManagerPolicy"
	policySingleNUMA = "single-numa-node"
	zoneTypeNode     = "Node"
)

// Unlimited stands for a resource a zone does not report.
const Unlimited = int64(1) << 60

// crdPollInterval is how often the tracker looks for the NRT CRD while it
// is missing.
var crdPollInterval = 10 * time.Second

// Tracker serves nodes' NUMA zones: what their NodeResourceTopology
// publishes, less the zones the scheduler gave pods since.
type Tracker struct {
	mu       sync.RWMutex
	lister   nrtlisters.NodeResourceTopologyLister
	assigned map[string]map[types.UID]map[string]placement.Resources
	podNode  map[types.UID]string
	onChange func()
}

// NewTracker returns a tracker that knows no zones until Start finds the
// NodeResourceTopology API.
func NewTracker() *Tracker {
	return &Tracker{assigned: map[string]map[types.UID]map[string]placement.Resources{}, podNode: map[types.UID]string{}}
}

// Start looks for the NodeResourceTopology API and, once it is served,
// watches its objects, including those created later. A cluster without
// the CRD works as if no node published zones; the tracker says so once
// and picks the CRD up if it is installed later. onChange runs when an
// object changes, so waiting pods can be retried.
func (t *Tracker) Start(ctx context.Context, cfg *rest.Config, onChange func()) error {
	logger := klog.FromContext(ctx)
	t.onChange = onChange
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	client, err := nrtclientset.NewForConfig(cfg)
	if err != nil {
		return err
	}
	go func() {
		said := false
		for {
			if served(disc) {
				t.watch(ctx, client)
				logger.Info("NodeResourceTopology API found; placing pods by NUMA zone where nodes publish them")
				return
			}
			if !said {
				logger.Info("NodeResourceTopology CRD is not installed; placing by node capacity until it is", "resource", "noderesourcetopologies.topology.node.k8s.io")
				said = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(crdPollInterval):
			}
		}
	}()
	return nil
}

func served(disc discovery.DiscoveryInterface) bool {
	list, err := disc.ServerResourcesForGroupVersion(nrtv1alpha2.SchemeGroupVersion.String())
	if err != nil {
		return false
	}
	for _, r := range list.APIResources {
		if r.Name == "noderesourcetopologies" {
			return true
		}
	}
	return false
}

func (t *Tracker) watch(ctx context.Context, client nrtclientset.Interface) {
	factory := nrtinformers.NewSharedInformerFactory(client, 0)
	inf := factory.Topology().V1alpha2().NodeResourceTopologies()
	changed := func(any) {
		if t.onChange != nil {
			t.onChange()
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: changed,
		// The agent reports every pod it admits: most updates only shrink
		// zones, and waking every waiting gang for them would be wasted.
		UpdateFunc: func(oldObj, obj any) {
			old, ok1 := oldObj.(*nrtv1alpha2.NodeResourceTopology)
			nrt, ok2 := obj.(*nrtv1alpha2.NodeResourceTopology)
			if !ok1 || !ok2 || roomGrew(old, nrt) {
				changed(obj)
			}
		},
		DeleteFunc: changed,
	})
	lister := inf.Lister()
	factory.Start(ctx.Done())
	cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced)
	t.mu.Lock()
	t.lister = lister
	t.mu.Unlock()
}

// ZonesOf returns a node's NUMA zones with the room left in each, and
// whether kubelet enforces single-numa-node; nil when the node publishes no
// zones.
func (t *Tracker) ZonesOf(node string) ([]placement.Zone, bool) {
	return t.zones(node, false)
}

// CapacityOf returns a node's NUMA zones as if it ran nothing.
func (t *Tracker) CapacityOf(node string) ([]placement.Zone, bool) {
	return t.zones(node, true)
}

func (t *Tracker) zones(node string, empty bool) ([]placement.Zone, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.lister == nil {
		return nil, false
	}
	nrt, err := t.lister.Get(node)
	if err != nil {
		return nil, false
	}
	zones, single := parse(nrt, empty)
	if empty {
		return zones, single
	}
	for _, byZone := range t.assigned[node] {
		for i := range zones {
			if r, ok := byZone[zones[i].Name]; ok {
				zones[i].Free.Sub(&r)
			}
		}
	}
	return zones, single
}

// roomGrew reports whether an NRT update may let a pod fit that did not:
// a zone with more room, a new zone, or a policy no longer single-numa-node.
func roomGrew(old, nrt *nrtv1alpha2.NodeResourceTopology) bool {
	before, wasSingle := parse(old, false)
	after, single := parse(nrt, false)
	if wasSingle && !single {
		return true
	}
	for _, z := range after {
		i := slices.IndexFunc(before, func(b placement.Zone) bool { return b.Name == z.Name })
		if i < 0 || z.Free.MilliCPU > before[i].Free.MilliCPU || z.Free.Memory > before[i].Free.Memory {
			return true
		}
	}
	return false
}

// parse reads the NUMA zones of an NRT object. The room of a zone is what
// the agent last reported available, capped by what is allocatable (or,
// with empty, all that is allocatable).
func parse(nrt *nrtv1alpha2.NodeResourceTopology, empty bool) ([]placement.Zone, bool) {
	var zones []placement.Zone
	for _, z := range nrt.Zones {
		if z.Type != zoneTypeNode {
			continue
		}
		// A zone that reports no memory does not limit it.
		zone := placement.Zone{Name: z.Name, Free: placement.Resources{Memory: Unlimited}}
		for _, r := range z.Resources {
			avail := r.Available
			if empty || r.Allocatable.Cmp(avail) < 0 {
				avail = r.Allocatable
			}
			switch v1.ResourceName(r.Name) {
			case v1.ResourceCPU:
				zone.Free.MilliCPU = avail.MilliValue()
			case v1.ResourceMemory:
				zone.Free.Memory = avail.Value()
			}
		}
		zones = append(zones, zone)
	}
	single := false
	for _, a := range nrt.Attributes {
		if a.Name == attrPolicy && a.Value == policySingleNUMA {
			single = true
		}
	}
	for _, p := range nrt.TopologyPolicies {
		if p == string(nrtv1alpha2.SingleNUMANodeContainerLevel) || p == string(nrtv1alpha2.SingleNUMANodePodLevel) {
			single = true
		}
	}
	return zones, single
}

// Assign records the zones a pod takes on a node.
func (t *Tracker) Assign(node string, pod types.UID, zones map[string]placement.Resources) {
	if len(zones) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forgetLocked(pod)
	if t.assigned[node] == nil {
		t.assigned[node] = map[types.UID]map[string]placement.Resources{}
	}
	t.assigned[node][pod] = zones
	t.podNode[pod] = node
}

// Forget drops what a pod took (it was unreserved, or is gone).
func (t *Tracker) Forget(pod types.UID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forgetLocked(pod)
}

func (t *Tracker) forgetLocked(pod types.UID) {
	if node, ok := t.podNode[pod]; ok {
		delete(t.assigned[node], pod)
		if len(t.assigned[node]) == 0 {
			delete(t.assigned, node)
		}
		delete(t.podNode, pod)
	}
}

// Choose picks zones for a pod's need on a node: the tightest single zone
// that holds it, else (where the policy allows) the roomiest zones first.
// ok is false when kubelet would refuse the pod.
func Choose(zones []placement.Zone, single bool, need *placement.Resources) (map[string]placement.Resources, bool) {
	best := -1
	for i := range zones {
		z := &zones[i].Free
		if need.MilliCPU <= z.MilliCPU && need.Memory <= z.Memory {
			if best < 0 || z.MilliCPU < zones[best].Free.MilliCPU {
				best = i
			}
		}
	}
	if best >= 0 {
		return map[string]placement.Resources{zones[best].Name: {MilliCPU: need.MilliCPU, Memory: need.Memory}}, true
	}
	if single {
		return nil, false
	}
	out := map[string]placement.Resources{}
	cpu, mem := need.MilliCPU, need.Memory
	for cpu > 0 || mem > 0 {
		roomiest := -1
		for i := range zones {
			if _, used := out[zones[i].Name]; used {
				continue
			}
			if roomiest < 0 || zones[i].Free.MilliCPU > zones[roomiest].Free.MilliCPU {
				roomiest = i
			}
		}
		if roomiest < 0 {
			break
		}
		z := zones[roomiest].Free
		c, m := min(cpu, max(z.MilliCPU, 0)), min(mem, max(z.Memory, 0))
		out[zones[roomiest].Name] = placement.Resources{MilliCPU: c, Memory: m}
		cpu, mem = cpu-c, mem-m
	}
	return out, true
}
