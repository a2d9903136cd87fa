package record

import (
	"context"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1beta1 "k8s.io/api/scheduling/v1beta1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	clientfeatures "k8s.io/client-go/features"
	clientfeaturestesting "k8s.io/client-go/features/testing"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgfake "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned/fake"

	"github.com/lockstep-sched/lockstep/pkg/sandbox/report"
)

type zonesOf map[string][]string

func (z zonesOf) Zones(pod *v1.Pod) []string { return z[pod.Name] }

// clock hands out times 10ms apart, so the order of events shows.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(10 * time.Millisecond)
	return c.t
}

func TestRecorder(t *testing.T) {
	// The PodGroup fake clientset predates streaming lists; an informer
	// would wait for their bookmark forever.
	clientfeaturestesting.SetFeatureDuringTest(t, clientfeatures.WatchListClient, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kube := fake.NewClientset()
	pgs := pgfake.NewSimpleClientset()
	r := New(kube, pgs, []string{"ns"}, zonesOf{"p": {"node-1"}}, true)
	r.now = (&clock{t: time.Unix(0, 0)}).now
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}

	pg := &v1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: "ns",
		Annotations: map[string]string{"lockstep.io/required-topology": "topology.kubernetes.io/rack"}},
		Spec: v1alpha1.PodGroupSpec{MinMember: 1}}
	if _, err := pgs.SchedulingV1alpha1().PodGroups("ns").Create(ctx, pg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1", Labels: map[string]string{v1alpha1.PodGroupLabel: "g"}},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1500m"), v1.ResourceMemory: resource.MustParse("1Gi")}}}}},
	}
	other := pod.DeepCopy()
	other.Namespace = "elsewhere"
	for _, p := range []*v1.Pod{pod, other} {
		if _, err := kube.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, cond func([]report.Gang, []report.Pod) bool) {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
			return cond(r.Snapshot()), nil
		})
		if err != nil {
			g, p := r.Snapshot()
			t.Fatalf("never saw %s: gangs %+v pods %+v", what, g, p)
		}
	}
	waitFor("the pod", func(_ []report.Gang, p []report.Pod) bool { return len(p) == 1 })

	update := func(mutate func(*v1.Pod)) {
		t.Helper()
		p, err := kube.CoreV1().Pods("ns").Get(ctx, "p", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		mutate(p)
		if _, err := kube.CoreV1().Pods("ns").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	update(func(p *v1.Pod) { p.Spec.NodeName = "n1" })
	waitFor("the bind", func(_ []report.Gang, p []report.Pod) bool { return !p[0].Bound.IsZero() })
	update(func(p *v1.Pod) { p.Status.Phase = v1.PodRunning })
	waitFor("it run", func(_ []report.Gang, p []report.Pod) bool { return !p[0].Running.IsZero() })
	update(func(p *v1.Pod) { p.Status.Phase = v1.PodSucceeded })
	pg.Status.Phase = v1alpha1.PodGroupFinished
	if _, err := pgs.SchedulingV1alpha1().PodGroups("ns").UpdateStatus(ctx, pg, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the end", func(g []report.Gang, p []report.Pod) bool {
		return !p[0].Finished.IsZero() && len(g) == 1 && g[0].Phase == "Finished"
	})

	gangs, pods := r.Snapshot()
	g, p := gangs[0], pods[0]
	if g.Key() != "ns/g" || g.MinMember != 1 || g.RequiredTopology != "topology.kubernetes.io/rack" || g.PhaseSeen["Finished"].IsZero() {
		t.Errorf("gang = %+v", g)
	}
	if p.Gang != "g" || p.Node != "n1" || p.CPUMilli != 1500 || p.Memory != 1<<30 || p.Phase != v1.PodSucceeded {
		t.Errorf("pod = %+v", p)
	}
	if !(p.Created.Before(p.Bound) && p.Bound.Before(p.Running) && p.Running.Before(p.Finished)) {
		t.Errorf("times out of order: created %v bound %v running %v finished %v", p.Created, p.Bound, p.Running, p.Finished)
	}
	if len(p.NUMAZones) != 1 || p.NUMAZones[0] != "node-1" {
		t.Errorf("NUMA zones = %v", p.NUMAZones)
	}

	if err := kube.CoreV1().Pods("ns").Delete(ctx, "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the delete", func(_ []report.Gang, p []report.Pod) bool { return p[0].Deleted })
}

// A gang of Kubernetes' own PodGroup API has no phase in its status: the
// recorder gives it the phase the controller would give its pods.
func TestRecorderDerivesUpstreamPhase(t *testing.T) {
	clientfeaturestesting.SetFeatureDuringTest(t, clientfeatures.WatchListClient, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kube := fake.NewClientset()
	r := New(kube, pgfake.NewSimpleClientset(), []string{"ns"}, nil, true)
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	up := &schedulingv1beta1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: "ns"},
		Spec: schedulingv1beta1.PodGroupSpec{SchedulingPolicy: schedulingv1beta1.PodGroupSchedulingPolicy{
			Gang: &schedulingv1beta1.GangSchedulingPolicy{MinCount: 2}}}}
	if _, err := kube.SchedulingV1beta1().PodGroups("ns").Create(ctx, up, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name)},
			Spec: v1.PodSpec{SchedulingGroup: &v1.PodSchedulingGroup{PodGroupName: ptr.To("g")}, Containers: []v1.Container{{Name: "c"}}}}
		if _, err := kube.CoreV1().Pods("ns").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	phase := func(want string) {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
			g, _ := r.Snapshot()
			return len(g) == 1 && g[0].Phase == want, nil
		})
		if err != nil {
			g, p := r.Snapshot()
			t.Fatalf("never saw phase %s: gangs %+v pods %+v", want, g, p)
		}
	}
	set := func(mutate func(*v1.Pod)) {
		t.Helper()
		for _, name := range []string{"a", "b"} {
			p, err := kube.CoreV1().Pods("ns").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			mutate(p)
			if _, err := kube.CoreV1().Pods("ns").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	phase("Pending")
	set(func(p *v1.Pod) { p.Spec.NodeName = "n1" })
	phase("Scheduled")
	set(func(p *v1.Pod) { p.Status.Phase = v1.PodRunning })
	phase("Running")
	set(func(p *v1.Pod) { p.Status.Phase = v1.PodSucceeded })
	phase("Finished")
	gangs, pods := r.Snapshot()
	if g := gangs[0]; g.MinMember != 2 || g.PhaseSeen["Running"].IsZero() || g.PhaseSeen["Finished"].IsZero() {
		t.Errorf("gang = %+v", g)
	}
	if pods[0].Gang != "g" || pods[0].GangKey() != "ns/g" {
		t.Errorf("pod = %+v", pods[0])
	}
}
