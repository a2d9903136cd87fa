package gang

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	fakediscovery "k8s.io/client-go/discovery/fake"
	clientfeatures "k8s.io/client-go/features"
	clientfeaturestesting "k8s.io/client-go/features/testing"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	internalcache "k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/defaultbinder"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/feature"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/noderesources"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgfake "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned/fake"

	lockstepconfig "github.com/lockstep-sched/lockstep/apis/config"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// Test timing, in one place. Waits are for conditions; these bound them.
const (
	// eventually bounds waiting for an informer or a goroutine to catch up.
	eventually = 10 * time.Second
	// quiet is the one negative window: how long a waiting member is
	// watched to make sure it is not let go.
	quiet = 200 * time.Millisecond
	// gangTimeout is the plugin's default gang timeout in these tests.
	gangTimeout = 60 * time.Second
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const ns = "ns"

// harness is the plugin in a real framework instance with a fake
// clientset, a fake clock and a snapshot the test controls. It runs a pod's
// scheduling cycle the way the scheduler does, and its binding cycle's
// wait at Permit on a goroutine.
type harness struct {
	t         *testing.T
	ctx       context.Context
	fw        framework.Framework
	pl        *Gang
	factory   *Factory
	client    *fake.Clientset
	pgs       *pgfake.Clientset
	clock     *clocktesting.FakeClock
	lister    *swapLister
	activated *activations
	// evictions records what the plugin evicts (preempt_test.go).
	evictions *evictions

	mu       sync.Mutex
	nodes    []*v1.Node
	assumed  map[string]*v1.Pod
	outcomes map[string]chan *fwk.Status
	// waits records how long Permit told each member to wait.
	waits map[string]time.Duration
	// rejectMu serializes rejections of waiting pods: the framework's
	// waitingPod.Reject writes its done flag under a read lock, so two
	// concurrent rejections of one pod race inside kube-scheduler 1.37.2.
	rejectMu sync.Mutex
	// holdUnreserve, per pod, delays the Unreserve of a rejected waiting
	// member until the channel is closed, as a busy binding goroutine may.
	holdUnreserve map[string]chan struct{}
}

func newHarness(t *testing.T, nodes ...*v1.Node) *harness {
	t.Helper()
	// The generated PodGroup fake clientset predates watch-list streaming.
	clientfeaturestesting.SetFeatureDuringTest(t, clientfeatures.WatchListClient, false)
	schedmetrics.Register()
	logger, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	h := &harness{
		t: t, ctx: ctx, client: fake.NewClientset(), pgs: pgfake.NewSimpleClientset(),
		clock: clocktesting.NewFakeClock(epoch), lister: &swapLister{s: internalcache.NewEmptySnapshot()},
		activated: &activations{pods: map[string]int{}}, nodes: nodes,
		assumed: map[string]*v1.Pod{}, outcomes: map[string]chan *fwk.Status{},
		waits: map[string]time.Duration{}, holdUnreserve: map[string]chan struct{}{},
	}
	h.evictions = h.recordEvictions()
	// The fake cluster serves Kubernetes' own PodGroups too.
	h.client.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{{
		GroupVersion: podgroup.UpstreamGroupVersion.String(),
		APIResources: []metav1.APIResource{{Name: "podgroups", Namespaced: true, Kind: "PodGroup"}, {Name: "podgroups/status", Namespaced: true, Kind: "PodGroup"}},
	}}
	for _, n := range nodes {
		if _, err := h.client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	informerFactory := informers.NewSharedInformerFactory(h.client, 0)
	h.factory = NewFactory(WithClock(h.clock), WithPodGroupClient(h.pgs), withRejectLock(&h.rejectMu))
	registry := frameworkruntime.Registry{
		Name:               h.factory.New,
		defaultbinder.Name: defaultbinder.New,
		noderesources.Name: frameworkruntime.FactoryAdapter(feature.Features{}, noderesources.NewFit),
	}
	fit := config.PluginSet{Enabled: []config.Plugin{{Name: noderesources.Name}, {Name: Name}}}
	enabled := config.PluginSet{Enabled: []config.Plugin{{Name: Name}}}
	profile := &config.KubeSchedulerProfile{
		SchedulerName: "lockstep",
		Plugins: &config.Plugins{
			QueueSort: enabled, PreEnqueue: enabled, PreFilter: fit, Filter: fit,
			PostFilter: enabled, Reserve: enabled, Permit: enabled,
			Bind: config.PluginSet{Enabled: []config.Plugin{{Name: defaultbinder.Name}}},
		},
		PluginConfig: []config.PluginConfig{{Name: noderesources.Name, Args: &config.NodeResourcesFitArgs{
			ScoringStrategy: &config.ScoringStrategy{Type: config.LeastAllocated, Resources: []config.ResourceSpec{{Name: "cpu", Weight: 1}}},
		}}, {Name: Name, Args: &lockstepconfig.GangArgs{
			DefaultScheduleTimeoutSeconds: ptr.To(int32(gangTimeout / time.Second)),
			HeadReservation:               ptr.To(true),
			TopologyLevels:                []string{"topology.kubernetes.io/rack", "kubernetes.io/hostname"},
			PodGroupSyncTimeoutSeconds:    ptr.To[int32](5),
		}}},
	}
	fw, err := frameworkruntime.NewFramework(ctx, registry, profile,
		frameworkruntime.WithClientSet(h.client),
		frameworkruntime.WithInformerFactory(informerFactory),
		frameworkruntime.WithSnapshotSharedLister(h.lister),
		frameworkruntime.WithWaitingPods(frameworkruntime.NewWaitingPodsMap()),
		frameworkruntime.WithPodActivator(h.activated),
		frameworkruntime.WithLogger(logger),
	)
	if err != nil {
		t.Fatalf("creating framework: %v", err)
	}
	h.fw = fw
	h.pl = fw.PreEnqueuePlugins()[0].(*Gang)
	informerFactory.Start(ctx.Done())
	informerFactory.WaitForCacheSync(ctx.Done())
	h.refresh()
	return h
}

func node(name, cpu string, labels ...string) *v1.Node {
	w := st.MakeNode().Name(name).Capacity(map[v1.ResourceName]string{v1.ResourceCPU: cpu, v1.ResourceMemory: "64Gi", v1.ResourcePods: "110"}).
		Label("kubernetes.io/hostname", name)
	for i := 0; i+1 < len(labels); i += 2 {
		w = w.Label(labels[i], labels[i+1])
	}
	return w.Obj()
}

// member is a gang member asking for cpu.
func member(gang string, i int, cpu string) *v1.Pod {
	name := fmt.Sprintf("%s-%d", gang, i)
	p := st.MakePod().Name(name).Namespace(ns).UID(name).SchedulerName("lockstep").
		Req(map[v1.ResourceName]string{v1.ResourceCPU: cpu}).Obj()
	p.CreationTimestamp = metav1.NewTime(epoch)
	if gang != "" {
		p.Labels = map[string]string{podgroup.Label: gang}
	}
	return p
}

// podGroup creates a PodGroup and waits for the plugin's informer to have it.
func (h *harness) podGroup(name string, min int32, mutate ...func(*v1alpha1.PodGroup)) *v1alpha1.PodGroup {
	h.t.Helper()
	pg := &v1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-" + podgroup.Key(ns, name)), CreationTimestamp: metav1.NewTime(epoch)},
		Spec:       v1alpha1.PodGroupSpec{MinMember: min},
	}
	for _, m := range mutate {
		m(pg)
	}
	if _, err := h.pgs.SchedulingV1alpha1().PodGroups(ns).Create(h.ctx, pg, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	h.waitFor("PodGroup "+name+" in the plugin's informer", func() bool {
		_, err := h.pl.s.groups.legacy.PodGroups(ns).Get(name)
		return err == nil
	})
	return pg
}

// pods creates pods and waits for the scheduler's informer to have them.
func (h *harness) pods(pods ...*v1.Pod) []*v1.Pod {
	h.t.Helper()
	for _, p := range pods {
		if _, err := h.client.CoreV1().Pods(ns).Create(h.ctx, p, metav1.CreateOptions{}); err != nil {
			h.t.Fatal(err)
		}
	}
	h.waitFor("pods in the informer", func() bool {
		for _, p := range pods {
			if !h.informerHas(p, func(got *v1.Pod) bool { return got.Spec.NodeName == p.Spec.NodeName }) {
				return false
			}
		}
		return true
	})
	h.refresh()
	return pods
}

func (h *harness) gang(name string, min int32, count int, cpu string) []*v1.Pod {
	h.podGroup(name, min)
	pods := make([]*v1.Pod, count)
	for i := range pods {
		pods[i] = member(name, i, cpu)
	}
	return h.pods(pods...)
}

func (h *harness) informerHas(p *v1.Pod, cond func(*v1.Pod) bool) bool {
	obj, ok, err := h.fw.SharedInformerFactory().Core().V1().Pods().Informer().GetStore().GetByKey(p.Namespace + "/" + p.Name)
	return err == nil && ok && cond(obj.(*v1.Pod))
}

// deletePod deletes a pod and waits until the informer no longer has it.
func (h *harness) deletePod(p *v1.Pod) {
	h.t.Helper()
	if err := h.client.CoreV1().Pods(p.Namespace).Delete(h.ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		h.t.Fatal(err)
	}
	h.waitFor("pod "+p.Name+" gone from the informer", func() bool { return !h.informerHas(p, func(*v1.Pod) bool { return true }) })
	h.mu.Lock()
	delete(h.assumed, p.Name)
	h.mu.Unlock()
	h.refresh()
}

// bind binds an allowed pod as the binding cycle would.
func (h *harness) bind(p *v1.Pod, nodeName string) {
	h.t.Helper()
	if err := h.client.CoreV1().Pods(p.Namespace).Bind(h.ctx, &v1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}, Target: v1.ObjectReference{Kind: "Node", Name: nodeName},
	}, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	// The fake clientset does not apply bindings: write the node name.
	got, err := h.client.CoreV1().Pods(p.Namespace).Get(h.ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	got.Spec.NodeName = nodeName
	if _, err := h.client.CoreV1().Pods(p.Namespace).Update(h.ctx, got, metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	h.waitFor("pod "+p.Name+" bound in the informer", func() bool {
		return h.informerHas(p, func(got *v1.Pod) bool { return got.Spec.NodeName == nodeName })
	})
	h.mu.Lock()
	delete(h.assumed, p.Name)
	h.mu.Unlock()
	h.refresh()
}

// setNodes replaces (or, deleted, removes) a node in the snapshot.
func (h *harness) setNodes(n *v1.Node, deleted bool) {
	h.mu.Lock()
	var nodes []*v1.Node
	for _, old := range h.nodes {
		if old.Name != n.Name {
			nodes = append(nodes, old)
		} else if !deleted {
			nodes = append(nodes, n)
		}
	}
	h.nodes = nodes
	h.mu.Unlock()
	h.refresh()
}

// refresh rebuilds the snapshot from the nodes, the bound pods and the
// pods the scheduler assumed, as the scheduler's cache would.
func (h *harness) refresh() {
	h.mu.Lock()
	defer h.mu.Unlock()
	var pods []*v1.Pod
	for _, obj := range h.fw.SharedInformerFactory().Core().V1().Pods().Informer().GetStore().List() {
		if p := obj.(*v1.Pod); p.Spec.NodeName != "" {
			pods = append(pods, p)
		}
	}
	for _, p := range h.assumed {
		pods = append(pods, p)
	}
	h.lister.set(internalcache.NewSnapshot(pods, h.nodes))
}

// schedule runs a pod's scheduling cycle: PreFilter, Filter on the nodes
// PreFilter allows (in name order), PostFilter when none passes, Reserve
// and Permit on the first that passes. A member told to wait waits on a
// goroutine as its binding cycle would, and is unreserved if rejected.
func (h *harness) schedule(p *v1.Pod) (string, *fwk.Status) {
	h.t.Helper()
	cs := framework.NewCycleState()
	res, status, _ := h.fw.RunPreFilterPlugins(h.ctx, cs, p)
	if !status.IsSuccess() {
		return "", status
	}
	infos, err := h.lister.NodeInfos().List()
	if err != nil {
		h.t.Fatal(err)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Node().Name < infos[j].Node().Name })
	chosen := ""
	statuses := framework.NewDefaultNodeToStatus()
	for _, ni := range infos {
		if res != nil && !res.AllNodes() && !res.NodeNames.Has(ni.Node().Name) {
			continue
		}
		if s := h.fw.RunFilterPlugins(h.ctx, cs, p, ni); !s.IsSuccess() {
			statuses.Set(ni.Node().Name, s)
			continue
		}
		chosen = ni.Node().Name
		break
	}
	if chosen == "" {
		_, s := h.fw.RunPostFilterPlugins(h.ctx, cs, p, statuses)
		return "", s
	}
	assumed := p.DeepCopy()
	assumed.Spec.NodeName = chosen
	if s := h.fw.RunReservePluginsReserve(h.ctx, cs, assumed, chosen); !s.IsSuccess() {
		h.t.Fatalf("Reserve %s: %v", p.Name, s)
	}
	h.mu.Lock()
	h.assumed[p.Name] = assumed
	h.mu.Unlock()
	waits, s := h.fw.RunPermitPlugins(h.ctx, cs, assumed, chosen)
	out := make(chan *fwk.Status, 1)
	h.mu.Lock()
	h.outcomes[p.Name] = out
	h.waits[p.Name] = waits[Name]
	hold := h.holdUnreserve[p.Name]
	h.mu.Unlock()
	switch {
	case s.IsWait():
		h.fw.AddWaitingPod(assumed, waits)
		go func() {
			res := h.fw.WaitOnPermit(h.ctx, assumed)
			if hold != nil && !res.IsSuccess() {
				out <- res
				<-hold
				h.unreserve(cs, assumed, chosen)
				return
			}
			if !res.IsSuccess() {
				h.unreserve(cs, assumed, chosen)
			}
			out <- res
		}()
	case !s.IsSuccess():
		h.unreserve(cs, assumed, chosen)
		out <- s
	default:
		out <- s
	}
	h.refresh()
	return chosen, s
}

func (h *harness) unreserve(cs fwk.CycleState, p *v1.Pod, node string) {
	h.fw.RunReservePluginsUnreserve(h.ctx, cs, p, node)
	h.mu.Lock()
	delete(h.assumed, p.Name)
	h.mu.Unlock()
	h.refresh()
}

// outcome waits for the end of a pod's wait at Permit.
func (h *harness) outcome(p *v1.Pod) *fwk.Status {
	h.t.Helper()
	h.mu.Lock()
	out := h.outcomes[p.Name]
	h.mu.Unlock()
	if out == nil {
		h.t.Fatalf("%s never reached Permit", p.Name)
	}
	select {
	case s := <-out:
		out <- s
		return s
	case <-time.After(eventually):
		h.t.Fatalf("%s still waits at Permit", p.Name)
		return nil
	}
}

// stillWaiting checks that a pod is held at Permit for the quiet window.
func (h *harness) stillWaiting(p *v1.Pod) {
	h.t.Helper()
	h.mu.Lock()
	out := h.outcomes[p.Name]
	h.mu.Unlock()
	select {
	case s := <-out:
		h.t.Fatalf("%s was let go while its gang lacks its quorum: %v", p.Name, s)
	case <-time.After(quiet):
	}
	if h.fw.GetWaitingPod(p.UID) == nil {
		h.t.Fatalf("%s is not waiting at Permit", p.Name)
	}
}

// step moves the fake clock and lets the timers' goroutines run.
func (h *harness) step(d time.Duration) { h.clock.Step(d) }

func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	if err := wait.PollUntilContextTimeout(h.ctx, time.Millisecond, eventually, true, func(context.Context) (bool, error) {
		return cond(), nil
	}); err != nil {
		h.t.Fatalf("waiting for %s: %v", what, err)
	}
}

// events returns the messages of the Events recorded with reason.
func (h *harness) events(reason string) []string {
	list, err := h.client.CoreV1().Events("").List(h.ctx, metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.Reason == reason {
			out = append(out, e.Message)
		}
	}
	return out
}

func (h *harness) waitEvent(reason string) []string {
	h.t.Helper()
	var got []string
	h.waitFor("an Event "+reason, func() bool { got = h.events(reason); return len(got) > 0 })
	return got
}

// swapLister is the framework's snapshot lister over a snapshot the test
// replaces.
type swapLister struct {
	mu sync.Mutex
	s  *internalcache.Snapshot
}

func (l *swapLister) set(s *internalcache.Snapshot) { l.mu.Lock(); l.s = s; l.mu.Unlock() }
func (l *swapLister) get() *internalcache.Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s
}
func (l *swapLister) NodeInfos() fwk.NodeInfoLister           { return l.get().NodeInfos() }
func (l *swapLister) StorageInfos() fwk.StorageInfoLister     { return l.get().StorageInfos() }
func (l *swapLister) PodGroupStates() fwk.PodGroupStateLister { return l.get().PodGroupStates() }
func (l *swapLister) PodGroups() fwk.PodGroupLister           { return l.get().PodGroups() }

// activations records the pods the plugin moved to the active queue.
type activations struct {
	mu   sync.Mutex
	pods map[string]int
}

func (a *activations) Activate(_ klog.Logger, pods map[string]*v1.Pod) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range pods {
		a.pods[k]++
	}
}

func (a *activations) count(p *v1.Pod) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pods[p.Namespace+"/"+p.Name]
}
func (l *swapLister) CompositePodGroupStates() fwk.CompositePodGroupStateLister {
	return l.get().CompositePodGroupStates()
}
func (l *swapLister) CompositePodGroups() fwk.CompositePodGroupLister {
	return l.get().CompositePodGroups()
}

// withRejectLock makes the plugin's rejections of waiting pods take mu.
func withRejectLock(mu *sync.Mutex) Option {
	return func(o *options) {
		o.wrapHandle = func(h fwk.Handle) fwk.Handle { return lockedHandle{Handle: h, mu: mu} }
	}
}

type lockedHandle struct {
	fwk.Handle
	mu *sync.Mutex
}

func (h lockedHandle) GetWaitingPod(uid types.UID) fwk.WaitingPod {
	if wp := h.Handle.GetWaitingPod(uid); wp != nil {
		return lockedWaitingPod{WaitingPod: wp, mu: h.mu}
	}
	return nil
}

type lockedWaitingPod struct {
	fwk.WaitingPod
	mu *sync.Mutex
}

func (wp lockedWaitingPod) Reject(plugin, msg string) bool {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	return wp.WaitingPod.Reject(plugin, msg)
}

// rejectWaiting rejects a waiting pod as the framework does, serialized
// with the plugin's rejections.
func (h *harness) rejectWaiting(uid types.UID) {
	h.rejectMu.Lock()
	defer h.rejectMu.Unlock()
	h.fw.RejectWaitingPod(uid)
}
