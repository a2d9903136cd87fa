package gang

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1beta1 "k8s.io/api/scheduling/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// upstreamGroup creates a scheduling.k8s.io PodGroup and waits for the
// plugin to have it.
func (h *harness) upstreamGroup(name string, policy schedulingv1beta1.PodGroupSchedulingPolicy, mutate ...func(*schedulingv1beta1.PodGroup)) *schedulingv1beta1.PodGroup {
	h.t.Helper()
	pg := &schedulingv1beta1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-upstream-" + name), CreationTimestamp: metav1.NewTime(epoch)},
		Spec:       schedulingv1beta1.PodGroupSpec{SchedulingPolicy: policy},
	}
	for _, m := range mutate {
		m(pg)
	}
	if _, err := h.client.SchedulingV1beta1().PodGroups(ns).Create(h.ctx, pg, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	h.waitFor("upstream PodGroup "+name+" in the plugin", func() bool {
		_, _, found := h.pl.s.groups.condition(podgroup.UpstreamKey(ns, name))
		return found
	})
	return pg
}

func gangPolicy(min int32) schedulingv1beta1.PodGroupSchedulingPolicy {
	return schedulingv1beta1.PodGroupSchedulingPolicy{Gang: &schedulingv1beta1.GangSchedulingPolicy{MinCount: min}}
}

// upstreamMember is a pod that joins an upstream PodGroup by
// spec.schedulingGroup, with no label.
func upstreamMember(group string, i int, cpu string) *v1.Pod {
	p := member("", i, cpu)
	p.Name, p.UID = group+"-"+p.Name, types.UID(group+"-"+string(p.UID))
	p.Spec.SchedulingGroup = &v1.PodSchedulingGroup{PodGroupName: ptr.To(group)}
	return p
}

// scheduledCondition is the PodGroupInitiallyScheduled condition as the
// API holds it.
func (h *harness) scheduledCondition(name string) *metav1.Condition {
	pg, err := h.client.SchedulingV1beta1().PodGroups(ns).Get(h.ctx, name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return meta.FindStatusCondition(pg.Status.Conditions, schedulingv1beta1.PodGroupInitiallyScheduled)
}

// A gang of Kubernetes' own PodGroup API gets the same contract as a
// scheduler-plugins one: held whole until minCount members are placed,
// released together, and its PodGroupInitiallyScheduled condition kept,
// false with the reason while it waits, true once placed.
func TestUpstreamPodGroupIsAGang(t *testing.T) {
	h := newHarness(t, node("n1", "4"), node("n2", "4"))
	h.upstreamGroup("up", gangPolicy(3))
	pods := h.pods(upstreamMember("up", 0, "2"), upstreamMember("up", 1, "2"))

	// Two of three exist: the pods wait before any cycle, and the
	// condition says why.
	if s := h.pl.PreEnqueue(h.ctx, pods[0]); s.IsSuccess() || !strings.Contains(s.Message(), "2/3 members exist") {
		t.Fatalf("PreEnqueue with 2 of 3 members: %v", s)
	}
	h.waitFor("condition false while members are missing", func() bool {
		c := h.scheduledCondition("up")
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == schedulingv1beta1.PodGroupReasonUnschedulable && strings.Contains(c.Message, "2/3 members exist")
	})

	pods = append(pods, h.pods(upstreamMember("up", 2, "2"))...)
	for _, p := range pods[:2] {
		if _, s := h.schedule(p); !s.IsWait() {
			t.Fatalf("%s: want Wait at Permit, got %v", p.Name, s)
		}
	}
	h.stillWaiting(pods[0])
	if c := h.scheduledCondition("up"); c != nil && c.Status == metav1.ConditionTrue {
		t.Fatalf("condition true before the quorum: %+v", c)
	}
	if _, s := h.schedule(pods[2]); !s.IsSuccess() {
		t.Fatalf("the member completing the quorum: %v", s)
	}
	for _, p := range pods[:2] {
		if s := h.outcome(p); !s.IsSuccess() {
			t.Fatalf("%s was not allowed at quorum: %v", p.Name, s)
		}
	}
	h.waitFor("condition true once placed", func() bool {
		c := h.scheduledCondition("up")
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == "Scheduled" && strings.Contains(c.Message, "placed 3 pods on 2 nodes")
	})
	if got := h.waitEvent("Placed"); !strings.Contains(got[0], "placed 3 pods") {
		t.Errorf("Placed Event: %q", got)
	}
}

// A PodGroup of either API may share a name: they are two gangs.
func TestUpstreamAndLegacyGroupsOfOneNameAreTwoGangs(t *testing.T) {
	h := newHarness(t, node("n1", "4"), node("n2", "4"))
	h.upstreamGroup("same", gangPolicy(2))
	legacy := h.gang("same", 3, 1, "1") // 1 of 3: waits
	up := h.pods(upstreamMember("same", 0, "2"), upstreamMember("same", 1, "2"))
	if s := h.pl.PreEnqueue(h.ctx, legacy[0]); s.IsSuccess() {
		t.Fatalf("the legacy gang has 1 of 3 members and must wait, got %v", s)
	}
	for _, p := range up {
		if s := h.pl.PreEnqueue(h.ctx, p); !s.IsSuccess() {
			t.Fatalf("%s: the upstream gang has its 2 members: %v", p.Name, s)
		}
	}
	if _, s := h.schedule(up[0]); !s.IsWait() {
		t.Fatalf("first upstream member: want Wait, got %v", s)
	}
	if _, s := h.schedule(up[1]); !s.IsSuccess() {
		t.Fatalf("second upstream member completes its quorum of 2: %v", s)
	}
}

// The upstream API's fields map onto the gang: a basic policy is a quorum
// of one, the topology constraint is the required level, and the
// disruption mode is the gang's.
func TestFromUpstream(t *testing.T) {
	up := &schedulingv1beta1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: "ns", UID: "u1", Annotations: map[string]string{"keep": "me"}},
		Spec: schedulingv1beta1.PodGroupSpec{
			SchedulingPolicy:      gangPolicy(5),
			SchedulingConstraints: &schedulingv1beta1.PodGroupSchedulingConstraints{Topology: []schedulingv1beta1.TopologyConstraint{{Key: "topology.kubernetes.io/rack"}}},
			DisruptionMode:        &schedulingv1beta1.DisruptionMode{All: &schedulingv1beta1.AllDisruptionMode{}},
		},
	}
	pg := podgroup.FromUpstream(up)
	if podgroup.MinMember(pg) != 5 || !podgroup.IsUpstream(pg) || podgroup.KeyOfGroup(pg) != podgroup.UpstreamKey("ns", "g") {
		t.Errorf("translated: minMember %d, upstream %v, key %q", podgroup.MinMember(pg), podgroup.IsUpstream(pg), podgroup.KeyOfGroup(pg))
	}
	if req, _, err := podgroup.TopologyConstraints(pg, []string{"topology.kubernetes.io/rack", "kubernetes.io/hostname"}); err != nil || req != "topology.kubernetes.io/rack" {
		t.Errorf("required topology %q, %v", req, err)
	}
	if mode, err := podgroup.DisruptionModeOf(pg); err != nil || mode != podgroup.DisruptionAll {
		t.Errorf("disruption mode %s, %v", mode, err)
	}
	if pg.Annotations["keep"] != "me" || up.Annotations[podgroup.AnnotationRequiredTopology] != "" {
		t.Errorf("annotations: translated %v, original %v", pg.Annotations, up.Annotations)
	}
	if ref := podgroup.Reference(pg); ref.APIVersion != "scheduling.k8s.io/v1beta1" || ref.UID != "u1" {
		t.Errorf("Event reference %+v", ref)
	}
	up.Spec.SchedulingPolicy = schedulingv1beta1.PodGroupSchedulingPolicy{Basic: &schedulingv1beta1.BasicSchedulingPolicy{}}
	if got := podgroup.MinMember(podgroup.FromUpstream(up)); got != 1 {
		t.Errorf("basic policy: minMember %d, want 1", got)
	}

	// Priority and preemption policy come from the spec (the Priority
	// admission plugin's), never from annotations anyone may write.
	if _, ok := podgroup.GroupPriority(pg); ok || podgroup.GroupNeverPreempts(pg) {
		t.Errorf("no priority in the spec: %v", pg.Annotations)
	}
	up.Spec.Priority, up.Spec.PreemptionPolicy = ptr.To[int32](1000), ptr.To(schedulingv1beta1.PreemptNever)
	if p, ok := podgroup.GroupPriority(podgroup.FromUpstream(up)); !ok || p != 1000 || !podgroup.GroupNeverPreempts(podgroup.FromUpstream(up)) {
		t.Errorf("spec priority 1000, Never: got %d %v, never %v", p, ok, podgroup.GroupNeverPreempts(podgroup.FromUpstream(up)))
	}
	forged := podgroup.FromUpstream(up)
	up.Spec.Priority, up.Spec.PreemptionPolicy = nil, nil
	up.Annotations = forged.Annotations // every annotation of a translation, set on the object by hand
	if _, ok := podgroup.GroupPriority(podgroup.FromUpstream(up)); ok || podgroup.GroupNeverPreempts(podgroup.FromUpstream(up)) {
		t.Errorf("annotations on the object gave the gang a priority: %v", podgroup.FromUpstream(up).Annotations)
	}
	legacy := &v1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: "ns", Annotations: forged.Annotations}}
	if _, ok := podgroup.GroupPriority(legacy); ok || podgroup.GroupNeverPreempts(legacy) {
		t.Errorf("a scheduler-plugins PodGroup's annotations gave the gang a priority")
	}
}

// An upstream PodGroup's priority is the gang's: members of no priority
// preempt a pod of lower priority for it, unless its preemptionPolicy is
// Never.
func TestUpstreamPodGroupPriorityPreempts(t *testing.T) {
	for _, never := range []bool{false, true} {
		t.Run(fmt.Sprintf("never=%v", never), func(t *testing.T) {
			h := newHarness(t, node("n1", "4"))
			h.pods(ordinaryAt("low", "n1", 10, "4"))
			h.upstreamGroup("up", gangPolicy(1), func(pg *schedulingv1beta1.PodGroup) {
				pg.Spec.Priority = ptr.To[int32](1000)
				if never {
					pg.Spec.PreemptionPolicy = ptr.To(schedulingv1beta1.PreemptNever)
				}
			})
			p := upstreamMember("up", 0, "4")
			h.pods(p)
			_, s := h.schedule(p)
			if preempts := strings.Contains(s.Message(), "preempting 1 pods"); preempts == never {
				t.Fatalf("preempts %v, want %v: %v", preempts, !never, s)
			}
		})
	}
}

// servedLater is discovery that starts serving the upstream PodGroup API
// when told to.
type servedLater struct {
	*fakediscovery.FakeDiscovery
	mu     sync.Mutex
	served bool
}

func (d *servedLater) serve() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.served = true
}

func (d *servedLater) ServerResourcesForGroupVersion(gv string) (*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.served || gv != podgroup.UpstreamGroupVersion.String() {
		return nil, apierrors.NewNotFound(schema.GroupResource{}, gv)
	}
	return &metav1.APIResourceList{GroupVersion: gv, APIResources: []metav1.APIResource{{Name: "podgroups", Namespaced: true}}}, nil
}

// A cluster that starts serving the upstream API is picked up without a
// restart: until then its pods wait saying the API is not served.
func TestUpstreamAPIServedLater(t *testing.T) {
	old := upstreamPollInterval
	upstreamPollInterval = 10 * time.Millisecond
	t.Cleanup(func() { upstreamPollInterval = old })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset()
	disc := &servedLater{FakeDiscovery: client.Discovery().(*fakediscovery.FakeDiscovery)}
	g := newGroups(nil)
	added := make(chan string, 1)
	g.start(ctx, client, disc, upstreamHandler{
		added:   func(pg *v1alpha1.PodGroup) { added <- pg.Name },
		updated: func(_, _ *v1alpha1.PodGroup) {},
		deleted: func(*v1alpha1.PodGroup) {},
	})
	if _, err := client.SchedulingV1beta1().PodGroups(ns).Create(ctx, &schedulingv1beta1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Name: "later", Namespace: ns}, Spec: schedulingv1beta1.PodGroupSpec{SchedulingPolicy: gangPolicy(1)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := upstreamMember("later", 0, "1")
	if _, err := g.of(pod); !errors.Is(err, errUpstreamNotServed) {
		t.Fatalf("before the API is served: %v, want %v", err, errUpstreamNotServed)
	}
	disc.serve()
	select {
	case name := <-added:
		if name != "later" {
			t.Fatalf("added %q", name)
		}
	case <-time.After(eventually):
		t.Fatal("the API served later was never picked up")
	}
	if pg, err := g.of(pod); err != nil || pg == nil || podgroup.MinMember(pg) != 1 {
		t.Fatalf("once served: %v, %v", pg, err)
	}
}
