package topology

import (
	"slices"
	"testing"
	"time"

	nrtv1alpha2 "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/apis/topology/v1alpha2"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/lockstep-sched/lockstep/pkg/numa"
)

// nrt is node n's object with zones of 8 CPUs (capacity 10: 2 reserved)
// and the CPUs available in each, listed in reverse NUMA order as agents
// may.
func nrt(policy string, available ...string) *nrtv1alpha2.NodeResourceTopology {
	obj := &nrtv1alpha2.NodeResourceTopology{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
	if policy != "" {
		obj.Attributes = nrtv1alpha2.AttributeList{{Name: "topologyManagerPolicy", Value: policy}}
	}
	for i := len(available) - 1; i >= 0; i-- {
		obj.Zones = append(obj.Zones, nrtv1alpha2.Zone{
			Name: []string{"node-0", "node-1", "node-2", "node-3"}[i], Type: "Node",
			Resources: nrtv1alpha2.ResourceInfoList{{Name: "cpu", Capacity: resource.MustParse("10"),
				Allocatable: resource.MustParse("8"), Available: resource.MustParse(available[i])}},
		})
	}
	obj.Zones = append(obj.Zones, nrtv1alpha2.Zone{Name: "socket-0", Type: "Socket"})
	return obj
}

func TestParse(t *testing.T) {
	p := parse(nrt("single-numa-node", "6", "9"))
	if p.Policy != numa.PolicySingleNUMANode || p.Scope != numa.ScopeContainer {
		t.Fatalf("policy %q scope %q; kubelet's default scope is container", p.Policy, p.Scope)
	}
	if !slices.Equal(p.Names, []string{"node-0", "node-1"}) {
		t.Fatalf("want the NUMA zones in NUMA order, sockets ignored: %v", p.Names)
	}
	if !slices.Equal(p.Free, []int64{6, 8}) || !slices.Equal(p.Capacity, []int64{10, 10}) || !slices.Equal(p.Allocatable, []int64{8, 8}) {
		t.Fatalf("free is what is available, at most what is allocatable: %+v", p)
	}
	scoped := nrt("restricted", "8")
	scoped.Attributes = append(scoped.Attributes, nrtv1alpha2.AttributeInfo{Name: "topologyManagerScope", Value: "pod"})
	if p := parse(scoped); p.Policy != numa.PolicyRestricted || p.Scope != numa.ScopePod {
		t.Fatalf("attributes give policy and scope: %+v", p.Node)
	}
	legacy := nrt("", "8", "8")
	legacy.TopologyPolicies = []string{string(nrtv1alpha2.SingleNUMANodePodLevel)}
	if p := parse(legacy); p.Policy != numa.PolicySingleNUMANode || p.Scope != numa.ScopePod {
		t.Fatalf("the legacy topologyPolicies field is understood too: %+v", p.Node)
	}
	if p := parse(nrt("no-such-policy", "8")); p.Policy != numa.PolicyNone {
		t.Fatalf("an unknown policy is kubelet's default, none: %q", p.Policy)
	}
}

// Only an update that gives a zone more room, adds one, or relaxes the
// policy may let a waiting pod fit.
func TestRoomGrew(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, nrt *nrtv1alpha2.NodeResourceTopology
		want     bool
	}{
		{"a pod admitted: a zone shrinks", nrt("single-numa-node", "8", "6"), nrt("single-numa-node", "8", "2"), false},
		{"nothing changed", nrt("single-numa-node", "8", "6"), nrt("single-numa-node", "8", "6"), false},
		{"a pod gone: a zone grows", nrt("single-numa-node", "8", "2"), nrt("single-numa-node", "8", "6"), true},
		{"a zone appears", nrt("single-numa-node", "8"), nrt("single-numa-node", "8", "8"), true},
		{"single-numa-node lifted", nrt("single-numa-node", "4", "4"), nrt("best-effort", "4", "4"), true},
		{"single-numa-node imposed", nrt("best-effort", "4", "4"), nrt("single-numa-node", "4", "4"), false},
	} {
		if got := roomGrew(parse(tc.old), parse(tc.nrt)); got != tc.want {
			t.Errorf("%s: roomGrew = %t, want %t", tc.name, got, tc.want)
		}
	}
}

func guaranteed(uid, node, cpu string, phase v1.PodPhase) *v1.Pod {
	l := v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse("1Gi")}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: uid, Namespace: "ns", UID: types.UID(uid)},
		Spec:       v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: l, Limits: l}}}},
		Status:     v1.PodStatus{Phase: phase},
	}
}

func pending(n *numa.Node) []int64 {
	var out []int64
	for _, d := range n.Pending {
		out = append(out, d.CPUs())
	}
	return out
}

// A pod counts on its node's zones from Reserve until the agent has counted
// it, once: never twice for long, never not at all.
func TestTrackerCountsEachPodOnce(t *testing.T) {
	tr := NewTracker()
	changes := 0
	tr.OnChange(func() { changes++ })
	if tr.NodeOf("n") != nil {
		t.Fatal("a node without an NRT object has no zones")
	}
	tr.Published(nrt("single-numa-node", "8", "8"), false)

	tr.Assume("n", guaranteed("a", "", "4", v1.PodPending))
	tr.Assume("n", guaranteed("burstable", "", "0", v1.PodPending))
	if got := pending(tr.NodeOf("n")); !slices.Equal(got, []int64{4}) {
		t.Fatalf("an assumed pod with exclusive CPUs is pending: %v", got)
	}
	// Bound, then running: still pending until the agent publishes again.
	tr.podChanged(guaranteed("a", "n", "4", v1.PodPending))
	tr.podChanged(guaranteed("b", "n", "2", v1.PodPending))
	tr.podChanged(guaranteed("a", "n", "4", v1.PodRunning))
	if got := pending(tr.NodeOf("n")); !slices.Equal(got, []int64{4, 2}) {
		t.Fatalf("bound pods are pending in bind order: %v", got)
	}
	// A re-list (an Add) proves nothing about what the agent counted.
	tr.Published(nrt("single-numa-node", "4", "8"), false)
	if got := pending(tr.NodeOf("n")); len(got) != 2 {
		t.Fatalf("an NRT add counts nobody: %v", got)
	}
	before := changes
	tr.Published(nrt("single-numa-node", "4", "8"), true)
	n := tr.NodeOf("n")
	if got := pending(n); !slices.Equal(got, []int64{2}) || !slices.Equal(n.Free, []int64{4, 8}) {
		t.Fatalf("an update after a pod ran counts it: pending %v, free %v", got, n.Free)
	}
	if changes == before {
		t.Fatal("counting a pod may let others fit: waiting pods must be told")
	}
	// b runs, then the agent publishes again: nothing pending. Later
	// status updates of a counted pod do not make it pending again.
	tr.podChanged(guaranteed("b", "n", "2", v1.PodRunning))
	tr.Published(nrt("single-numa-node", "4", "6"), true)
	tr.podChanged(guaranteed("b", "n", "2", v1.PodRunning))
	if got := pending(tr.NodeOf("n")); len(got) != 0 {
		t.Fatalf("counted pods are not pending: %v", got)
	}
	// A pending pod that finishes gives its CPUs back at once.
	tr.podChanged(guaranteed("c", "n", "3", v1.PodPending))
	before = changes
	tr.podChanged(guaranteed("c", "n", "3", v1.PodSucceeded))
	if got := pending(tr.NodeOf("n")); len(got) != 0 || changes == before {
		t.Fatalf("a finished pod is forgotten, and waiting pods told: %v", got)
	}
	if len(tr.pods) != 2 {
		t.Fatalf("want a and b tracked until they end, got %d", len(tr.pods))
	}
	tr.podChanged(guaranteed("a", "n", "4", v1.PodFailed))
	tr.Forget("b")
	if len(tr.pods) != 0 || len(tr.byNode) != 0 {
		t.Fatalf("ended pods hold nothing: %+v", tr.pods)
	}
	if e := tr.EmptyNodeOf("n"); !slices.Equal(e.Free, []int64{8, 8}) || len(e.Pending) != 0 {
		t.Fatalf("an empty node has all its allocatable CPUs: %+v", e)
	}
}

// After a restart the tracker finds pods already running. Those the agent
// wrote its object for more than a second after they started are counted;
// the others wait for their node's next update.
func TestTrackerAfterRestart(t *testing.T) {
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	runningSince := func(p *v1.Pod, at time.Time) *v1.Pod {
		p.Status.StartTime = &metav1.Time{Time: at.Add(-time.Second)}
		p.Status.ContainerStatuses = []v1.ContainerStatus{{State: v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: metav1.Time{Time: at}}}}}
		return p
	}
	written := func(obj *nrtv1alpha2.NodeResourceTopology, at time.Time) *nrtv1alpha2.NodeResourceTopology {
		obj.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "agent", Time: &metav1.Time{Time: at}}}
		return obj
	}
	tr := NewTracker()
	tr.podChanged(runningSince(guaranteed("old", "n", "4", v1.PodRunning), start))
	tr.podChanged(runningSince(guaranteed("new", "n", "2", v1.PodRunning), start.Add(10*time.Second)))
	tr.Published(written(nrt("single-numa-node", "4", "8"), start.Add(10*time.Second)), false)
	if got := pending(tr.NodeOf("n")); !slices.Equal(got, []int64{2}) {
		t.Fatalf("want the pod started 10s before the object was written counted, the one started with it pending: %v", got)
	}
	tr.Published(written(nrt("single-numa-node", "4", "6"), start.Add(10*time.Second)), true)
	if got := pending(tr.NodeOf("n")); len(got) != 0 {
		t.Fatalf("the next update counts the other: %v", got)
	}

	// Written the second they started: what the object shows in use
	// covers both pods, so both are counted.
	tr = NewTracker()
	tr.podChanged(runningSince(guaranteed("a", "n", "4", v1.PodRunning), start))
	tr.podChanged(runningSince(guaranteed("b", "n", "2", v1.PodRunning), start))
	tr.Published(written(nrt("single-numa-node", "4", "6"), start), false)
	if got := pending(tr.NodeOf("n")); len(got) != 0 {
		t.Fatalf("6 CPUs in use cover both pods: %v", got)
	}
	// a ends; until the agent writes again its 4 CPUs may still show, so
	// they do not vouch for a new pod of 4.
	tr.podChanged(guaranteed("a", "n", "4", v1.PodSucceeded))
	tr.podChanged(runningSince(guaranteed("c", "n", "4", v1.PodRunning), start.Add(time.Second)))
	if got := pending(tr.NodeOf("n")); !slices.Equal(got, []int64{4}) {
		t.Fatalf("the CPUs of a pod that ended do not count a new one: %v", got)
	}

	// The object may be known before the pod is.
	tr = NewTracker()
	tr.Published(written(nrt("single-numa-node", "4", "8"), start.Add(10*time.Second)), false)
	tr.podChanged(runningSince(guaranteed("old", "n", "4", v1.PodRunning), start))
	if got := pending(tr.NodeOf("n")); len(got) != 0 {
		t.Fatalf("a pod started long before the object was written is counted: %v", got)
	}
}

// Ready: without the NRT API the tracker answers at once (nodes are placed
// by capacity); with it, only once its objects are listed.
func TestTrackerReady(t *testing.T) {
	tr := NewTracker()
	if !tr.Ready() {
		t.Fatal("no NRT API: ready")
	}
	tr.served.Store(true)
	if tr.Ready() {
		t.Fatal("the API is served and its objects are not listed yet: not ready")
	}
	tr.synced.Store(true)
	if !tr.Ready() {
		t.Fatal("listed: ready")
	}
}
