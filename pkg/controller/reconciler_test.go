package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1beta1 "k8s.io/api/scheduling/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// harness is a reconciler on a fake client that counts status writes.
type harness struct {
	r        *reconciler
	client   client.Client
	recorder *events.FakeRecorder
	writes   int
	// failWrite, when set, is returned by status writes.
	failWrite error
	// failEviction, when set, is returned by evictions.
	failEviction error
}

func newHarness(t *testing.T, objs ...client.Object) *harness {
	t.Helper()
	scheme, err := newScheme()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{recorder: events.NewFakeRecorder(10)}
	// Only PodGroup status writes are the reconciler's; tests move pods too.
	count := func(obj client.Object) error {
		if _, ok := obj.(*v1alpha1.PodGroup); !ok {
			return nil
		}
		h.writes++
		return h.failWrite
	}
	h.client = fake.NewClientBuilder().
		WithScheme(scheme).
		WithObjects(objs...).
		WithStatusSubresource(&v1alpha1.PodGroup{}, &schedulingv1beta1.PodGroup{}).
		WithInterceptorFuncs(interceptor.Funcs{
			SubResourceCreate: func(ctx context.Context, c client.Client, sub string, obj, subObj client.Object, opts ...client.SubResourceCreateOption) error {
				if sub == "eviction" && h.failEviction != nil {
					return h.failEviction
				}
				return c.SubResource(sub).Create(ctx, obj, subObj, opts...)
			},
			SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
				if err := count(obj); err != nil {
					return err
				}
				return c.SubResource(sub).Update(ctx, obj, opts...)
			},
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				if err := count(obj); err != nil {
					return err
				}
				return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
			},
		}).
		Build()
	h.r = &reconciler{client: h.client, recorder: h.recorder, now: func() metav1.Time { return t0 },
		timeout: time.Minute, grace: 30 * time.Second}
	return h
}

func (h *harness) reconcile(t *testing.T, name string) {
	t.Helper()
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: testNS, Name: name}}
	res, err := h.r.Reconcile(context.Background(), req)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if !res.IsZero() {
		t.Errorf("Reconcile result = %+v, want zero", res)
	}
}

func (h *harness) status(t *testing.T, name string) v1alpha1.PodGroupStatus {
	t.Helper()
	var pg v1alpha1.PodGroup
	if err := h.client.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: name}, &pg); err != nil {
		t.Fatalf("get PodGroup: %v", err)
	}
	return pg.Status
}

// events drains what was recorded so far.
func (h *harness) events() []string {
	var got []string
	for {
		select {
		case e := <-h.recorder.Events:
			got = append(got, e)
		default:
			return got
		}
	}
}

func podObjects(pods []corev1.Pod) []client.Object {
	objs := make([]client.Object, 0, len(pods))
	for i := range pods {
		objs = append(objs, &pods[i])
	}
	return objs
}

func TestReconcileWritesStatusOnce(t *testing.T) {
	pods := concat(gang("w", 4, "n1", corev1.PodRunning), []corev1.Pod{member("other", "x", "n1", corev1.PodFailed)})
	h := newHarness(t, append(podObjects(pods), newGroup("g", 4))...)

	h.reconcile(t, "g")
	got := h.status(t, "g")
	if got.Phase != v1alpha1.PodGroupRunning || got.Running != 4 || got.Failed != 0 {
		t.Errorf("status = %+v, want Running with 4 running", got)
	}
	if !got.ScheduleStartTime.Equal(&t0) {
		t.Errorf("scheduleStartTime = %v, want %v", got.ScheduleStartTime, t0)
	}
	if h.writes != 1 {
		t.Errorf("status writes = %d, want 1", h.writes)
	}
	if ev := h.events(); len(ev) != 1 || ev[0] != "Normal Running all 4 members running" {
		t.Errorf("events = %q, want one Running event", ev)
	}

	// Nothing changed: no write, no event.
	h.reconcile(t, "g")
	if h.writes != 1 {
		t.Errorf("status writes after a no-op reconcile = %d, want 1", h.writes)
	}
	if ev := h.events(); len(ev) != 0 {
		t.Errorf("events after a no-op reconcile = %q, want none", ev)
	}
}

func TestReconcileFollowsMembers(t *testing.T) {
	pods := gang("w", 2, "", corev1.PodPending)
	h := newHarness(t, append(podObjects(pods), newGroup("g", 2))...)
	ctx := context.Background()

	// A new gang going to Pending writes status but is not news.
	h.reconcile(t, "g")
	if got := h.status(t, "g"); got.Phase != v1alpha1.PodGroupPending || !got.ScheduleStartTime.IsZero() {
		t.Errorf("status = %+v, want Pending without scheduleStartTime", got)
	}
	if ev := h.events(); len(ev) != 0 {
		t.Errorf("events = %q, want none", ev)
	}

	bind := func(name, node string, phase corev1.PodPhase) {
		t.Helper()
		var pod corev1.Pod
		key := types.NamespacedName{Namespace: testNS, Name: name}
		if err := h.client.Get(ctx, key, &pod); err != nil {
			t.Fatal(err)
		}
		pod.Spec.NodeName = node
		if err := h.client.Update(ctx, &pod); err != nil {
			t.Fatal(err)
		}
		pod.Status.Phase = phase
		if err := h.client.Status().Update(ctx, &pod); err != nil {
			t.Fatal(err)
		}
	}

	bind("w-0", "n1", corev1.PodPending)
	h.reconcile(t, "g")
	if got := h.status(t, "g"); got.Phase != v1alpha1.PodGroupScheduling {
		t.Errorf("phase = %q, want Scheduling", got.Phase)
	}
	if ev := h.events(); len(ev) != 1 || ev[0] != "Normal Scheduling 1/2 members scheduled" {
		t.Errorf("events = %q", ev)
	}

	bind("w-1", "n2", corev1.PodFailed)
	h.reconcile(t, "g")
	got := h.status(t, "g")
	if got.Phase != v1alpha1.PodGroupFailed || got.Failed != 1 {
		t.Errorf("status = %+v, want Failed with 1 failed", got)
	}
	if !got.ScheduleStartTime.Equal(&t0) {
		t.Errorf("scheduleStartTime = %v, want it kept at %v", got.ScheduleStartTime, t0)
	}
	want := "Warning Failed member w-1 failed: 1 failed, 0 running, 0 succeeded of minMember 2"
	if ev := h.events(); len(ev) != 1 || ev[0] != want {
		t.Errorf("events = %q, want %q", ev, want)
	}
}

func TestReconcileMissingGroup(t *testing.T) {
	h := newHarness(t)
	h.reconcile(t, "nope")
	if h.writes != 0 {
		t.Errorf("status writes = %d, want 0", h.writes)
	}
}

func TestReconcileConflictIsNotAnError(t *testing.T) {
	h := newHarness(t, newGroup("g", 1))
	h.failWrite = apierrors.NewConflict(schema.GroupResource{Group: "scheduling.x-k8s.io", Resource: "podgroups"}, "g", fmt.Errorf("stale"))
	h.reconcile(t, "g")
	if ev := h.events(); len(ev) != 0 {
		t.Errorf("events after a failed write = %q, want none", ev)
	}
}

func TestReconcileWriteErrorReturned(t *testing.T) {
	h := newHarness(t, newGroup("g", 1))
	h.failWrite = apierrors.NewInternalError(fmt.Errorf("boom"))
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: testNS, Name: "g"}}
	if _, err := h.r.Reconcile(context.Background(), req); err == nil || !apierrors.IsInternalError(err) {
		t.Errorf("Reconcile error = %v, want the wrapped internal error", err)
	}
}

func TestPodToGroup(t *testing.T) {
	pod := member("g", "w-0", "", corev1.PodPending)
	got := podToGroup(context.Background(), &pod)
	want := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: testNS, Name: "g"}}
	if len(got) != 1 || got[0] != want {
		t.Errorf("podToGroup = %v, want [%v]", got, want)
	}
	loose := member("", "solo", "", corev1.PodPending)
	if got := podToGroup(context.Background(), &loose); len(got) != 0 {
		t.Errorf("podToGroup of a pod without PodGroup = %v, want none", got)
	}
}

func TestMemberChanged(t *testing.T) {
	p := memberChanged()
	base := member("g", "w-0", "", corev1.PodPending)
	loose := member("", "solo", "", corev1.PodPending)

	if !p.Create(event.CreateEvent{Object: &base}) || p.Create(event.CreateEvent{Object: &loose}) {
		t.Error("Create: want members only")
	}
	if !p.Delete(event.DeleteEvent{Object: &base}) || p.Delete(event.DeleteEvent{Object: &loose}) {
		t.Error("Delete: want members only")
	}

	update := func(mutate func(*corev1.Pod)) bool {
		newPod := base.DeepCopy()
		mutate(newPod)
		return p.Update(event.UpdateEvent{ObjectOld: &base, ObjectNew: newPod})
	}
	if update(func(p *corev1.Pod) {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady})
	}) {
		t.Error("Update of conditions only: want dropped")
	}
	if !update(func(p *corev1.Pod) { p.Spec.NodeName = "n1" }) {
		t.Error("Update of nodeName: want passed")
	}
	if !update(func(p *corev1.Pod) { p.Status.Phase = corev1.PodRunning }) {
		t.Error("Update of phase: want passed")
	}
	if !update(func(p *corev1.Pod) { p.Labels[podgroup.Label] = "h" }) {
		t.Error("Update of gang label: want passed")
	}
	if !update(func(p *corev1.Pod) { delete(p.Labels, podgroup.Label) }) {
		t.Error("Update leaving the gang: want passed")
	}
}
