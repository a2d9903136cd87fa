package gang

import (
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	schedulingv1beta1 "k8s.io/api/scheduling/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

// evictions records the evictions the fake clientset receives and, for
// those not dry runs, deletes the pod as the Eviction API would.
type evictions struct {
	mu            sync.Mutex
	dryRun, names []string
	// refuse, per pod, is how many more real evictions to refuse with a
	// 429, as a budget spent since the dry run would.
	refuse map[string]int
	// refuseLater is how many real evictions to refuse with a 429 once
	// one has succeeded: a budget spent since the dry run, whichever pod
	// of a unit goes first.
	refuseLater int
	// terminate, when set, leaves evicted pods terminating (a deletion
	// timestamp, a finalizer) as a kubelet that has not confirmed would,
	// instead of deleting them.
	terminate bool
}

// recordEvictions installs the reactor; newHarness calls it before any
// informer runs, as the fake's reactor chain may not change after.
func (h *harness) recordEvictions() *evictions {
	ev := &evictions{refuse: map[string]int{}}
	h.client.PrependReactor("create", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		e, ok := a.(clienttesting.CreateAction).GetObject().(*policyv1.Eviction)
		if !ok {
			return false, nil, nil
		}
		ev.mu.Lock()
		defer ev.mu.Unlock()
		if e.DeleteOptions != nil && len(e.DeleteOptions.DryRun) > 0 {
			ev.dryRun = append(ev.dryRun, e.Name)
			return true, nil, nil
		}
		if ev.refuse[e.Name] > 0 {
			ev.refuse[e.Name]--
			return true, nil, apierrors.NewTooManyRequests("the budget was spent since the dry run", 0)
		}
		if ev.refuseLater > 0 && len(ev.names) > 0 {
			ev.refuseLater--
			return true, nil, apierrors.NewTooManyRequests("the budget was spent since the dry run", 0)
		}
		ev.names = append(ev.names, e.Name)
		podsGVR := v1.SchemeGroupVersion.WithResource("pods")
		if ev.terminate {
			obj, err := h.client.Tracker().Get(podsGVR, e.Namespace, e.Name)
			if err != nil {
				return true, nil, err
			}
			p := obj.(*v1.Pod).DeepCopy()
			p.DeletionTimestamp = &metav1.Time{Time: h.clock.Now().Add(30 * time.Second)}
			p.Finalizers = append(p.Finalizers, "example.com/kubelet")
			return true, nil, h.client.Tracker().Update(podsGVR, p, e.Namespace)
		}
		return true, nil, h.client.Tracker().Delete(podsGVR, e.Namespace, e.Name)
	})
	return ev
}

// ordinaryAt is an ordinary pod of priority prio, bound to node ("" for
// none).
func ordinaryAt(name, node string, prio int32, cpu string) *v1.Pod {
	p := ordinary(name, cpu)
	p.Spec.NodeName, p.Spec.Priority = node, ptr.To(prio)
	return p
}

// gangOfOne creates a PodGroup of one member asking for 4 CPUs at
// priority prio, and the member.
func (h *harness) gangOfOne(name string, prio int32) *v1.Pod {
	h.t.Helper()
	h.podGroup(name, 1)
	p := member(name, 0, "4")
	p.Spec.Priority = ptr.To(prio)
	h.pods(p)
	return p
}

func (ev *evictions) evicted() []string {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return append([]string(nil), ev.names...)
}

// Through the framework: a gang of higher priority that does not fit
// evicts the lowest-priority pod whose room makes it fit (a dry run first),
// claims that room from an ordinary pod that comes meanwhile, and is placed
// there once the victim is gone.
func TestGangPreemptsThroughTheFramework(t *testing.T) {
	h := newHarness(t, node("n1", "4"), node("n2", "4"))
	ev := h.evictions
	low := ordinaryAt("low", "n1", 10, "4")
	mid := ordinaryAt("mid", "n2", 100, "4")
	h.pods(low, mid)

	g := h.gangOfOne("g", 1000)
	if _, s := h.schedule(g); s.IsSuccess() || !strings.Contains(s.Message(), "preempting 1 pods of lower priority") {
		t.Fatalf("the gang should preempt one pod, got %v", s)
	}
	h.waitFor("the lowest-priority pod evicted", func() bool {
		got := ev.evicted()
		return len(got) == 1 && got[0] == "low"
	})
	if len(ev.dryRun) == 0 {
		t.Error("no dry run before the eviction")
	}
	h.waitEvent("Preempting")
	h.waitFor("the victim gone from the informer", func() bool { return !h.informerHas(low, func(*v1.Pod) bool { return true }) })
	h.refresh()

	// An ordinary pod of middle priority may not take the claimed room.
	other := ordinaryAt("other", "", 500, "4")
	h.pods(other)
	if node, _ := h.schedule(other); node == "n1" {
		t.Fatal("an ordinary pod took the room the gang preempted for")
	}
	if node, s := h.schedule(g); node != "n1" || !s.IsSuccess() {
		t.Fatalf("the gang should go where its victim was: %q %v", node, s)
	}
	if got := ev.evicted(); len(got) != 1 {
		t.Errorf("evicted %v, want only the one victim", got)
	}
}

// A preemptor whose members go while it waits for its victims gives up
// the room it claimed.
func TestGangPreemptorGoneReleasesItsClaim(t *testing.T) {
	h := newHarness(t, node("n1", "4"))
	low := ordinaryAt("low", "n1", 10, "4")
	h.pods(low)
	g := h.gangOfOne("g", 1000)
	if _, s := h.schedule(g); !strings.Contains(s.Message(), "preempting 1 pods") {
		t.Fatalf("the gang should preempt, got %v", s)
	}
	h.waitFor("the victim gone", func() bool { return !h.informerHas(low, func(*v1.Pod) bool { return true }) })
	h.deletePod(g)
	other := ordinaryAt("other", "", 500, "4")
	h.pods(other)
	if node, s := h.schedule(other); node != "n1" || !s.IsSuccess() {
		t.Fatalf("with the preemptor gone its room is free: %q %v", node, s)
	}
}

// A claim is not held from a gang of higher priority that may preempt: it
// takes the room (it could evict the claimant anyway) and nothing more is
// evicted for it.
func TestHigherGangTakesAClaimedRoom(t *testing.T) {
	h := newHarness(t, node("n1", "4"), node("n2", "4"))
	ev := h.evictions
	low := ordinaryAt("low", "n1", 10, "4")
	mid := ordinaryAt("mid", "n2", 100, "4")
	h.pods(low, mid)
	claimant := h.gangOfOne("claimant", 50)
	if _, s := h.schedule(claimant); !strings.Contains(s.Message(), "preempting 1 pods") {
		t.Fatalf("the claimant should preempt the low pod, got %v", s)
	}
	h.waitFor("the low pod gone", func() bool { return !h.informerHas(low, func(*v1.Pod) bool { return true }) })
	h.refresh()

	high := h.gangOfOne("high", 1000)
	if node, s := h.schedule(high); node != "n1" || !s.IsSuccess() {
		t.Fatalf("the higher gang should take the claimed room on n1: %q %v", node, s)
	}
	if got := ev.evicted(); len(got) != 1 {
		t.Errorf("evicted %v, want only the claimant's victim", got)
	}
}

// A victim gang whose eviction has begun goes whole: a later member's
// eviction refused for a while (its budget spent since the dry run) is
// retried rather than left running without its gang.
func TestVictimGangEvictionBegunGoesWhole(t *testing.T) {
	h := newHarness(t, node("n1", "4"), node("n2", "4"))
	h.podGroup("victim", 2)
	victims := []*v1.Pod{member("victim", 0, "4"), member("victim", 1, "4")}
	for i, p := range victims {
		p.Spec.NodeName, p.Spec.Priority = []string{"n1", "n2"}[i], ptr.To[int32](10)
	}
	h.pods(victims...)
	h.evictions.mu.Lock()
	h.evictions.refuseLater = 2
	h.evictions.mu.Unlock()

	high := h.gangOfOne("high", 1000)
	if _, s := h.schedule(high); !strings.Contains(s.Message(), "preempting 2 pods") {
		t.Fatalf("the gang should preempt the victim gang whole, got %v", s)
	}
	h.waitFor("both members of the victim gang evicted", func() bool { return len(h.evictions.evicted()) == 2 })
	if got := h.events("EvictionRefused"); len(got) > 0 {
		t.Errorf("a refusal within a begun unit must be retried, not reported: %v", got)
	}
}

// A pod stuck terminating (still there a gang's timeout past its grace
// period) is not waited for: the gang preempts others instead.
func TestStuckTerminatingPodIsNotWaitedFor(t *testing.T) {
	h := newHarness(t, node("n1", "4"), node("n2", "4"))
	stuck := ordinaryAt("stuck", "n1", 10, "4")
	stuck.DeletionTimestamp = &metav1.Time{Time: epoch.Add(30 * time.Second)}
	stuck.Finalizers = []string{"example.com/kubelet"}
	low := ordinaryAt("low", "n2", 20, "4")
	h.pods(stuck, low)
	g := h.gangOfOne("g", 1000)
	if _, s := h.schedule(g); !strings.Contains(s.Message(), "waiting for 1 terminating pods") {
		t.Fatalf("a pod terminating within its grace period is waited for, got %v", s)
	}
	h.clock.Step(30*time.Second + gangTimeout + time.Second)
	if _, s := h.schedule(g); !strings.Contains(s.Message(), "preempting 1 pods") {
		t.Fatalf("past its grace period and the gang's timeout the pod is stuck: the gang should preempt, got %v", s)
	}
	h.waitFor("the other pod evicted", func() bool {
		got := h.evictions.evicted()
		return len(got) == 1 && got[0] == "low"
	})
}

// A gang of lower priority does not count another gang's victims as room
// that frees for it: that room is claimed. It preempts its own victims
// rather than wait for room it will not get.
func TestAnotherGangsVictimsAreNotGoingRoom(t *testing.T) {
	h := newHarness(t, node("n1", "4"), node("n2", "4"))
	h.evictions.terminate = true
	v := ordinaryAt("v", "n1", 10, "4")
	l := ordinaryAt("l", "n2", 20, "4")
	h.pods(v, l)
	high := h.gangOfOne("high", 1000)
	if _, s := h.schedule(high); !strings.Contains(s.Message(), "preempting 1 pods") {
		t.Fatalf("the high gang should preempt, got %v", s)
	}
	h.waitFor("the high gang's victim terminating", func() bool {
		return h.informerHas(v, func(p *v1.Pod) bool { return p.DeletionTimestamp != nil })
	})
	h.refresh()
	mid := h.gangOfOne("mid", 500)
	if _, s := h.schedule(mid); !strings.Contains(s.Message(), "preempting 1 pods") {
		t.Fatalf("the middle gang should preempt the pod on n2, not wait for the high gang's victim: %v", s)
	}
	h.waitFor("the middle gang's victim evicted", func() bool {
		got := h.evictions.evicted()
		return len(got) == 2 && got[1] == "l"
	})
}

// A victim gang of Kubernetes' own PodGroup API is told before it goes:
// its DisruptionTarget condition is True with reason PreemptionByScheduler.
func TestPreemptedUpstreamGangSaysSo(t *testing.T) {
	h := newHarness(t, node("n1", "4"), node("n2", "4"))
	h.upstreamGroup("victim", gangPolicy(2))
	var victims []*v1.Pod
	for i, n := range []string{"n1", "n2"} {
		p := upstreamMember("victim", i, "4")
		p.Spec.NodeName, p.Spec.Priority = n, ptr.To[int32](10)
		victims = append(victims, p)
	}
	h.pods(victims...)
	h.refresh()
	h.podGroup("high", 2)
	high := []*v1.Pod{member("high", 0, "4"), member("high", 1, "4")}
	for _, p := range high {
		p.Spec.Priority = ptr.To[int32](1000)
	}
	h.pods(high...)
	if _, s := h.schedule(high[0]); !strings.Contains(s.Message(), "preempting 2 pods") {
		t.Fatalf("the high gang should preempt the victim gang whole, got %v", s)
	}
	h.waitFor("the victim PodGroup's DisruptionTarget condition", func() bool {
		pg, err := h.client.SchedulingV1beta1().PodGroups(ns).Get(h.ctx, "victim", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(pg.Status.Conditions, schedulingv1beta1.DisruptionTarget)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == schedulingv1beta1.PodGroupReasonPreemptionByScheduler &&
			strings.Contains(c.Message, "preempted by gang")
	})
	h.waitFor("both victims evicted", func() bool { return len(h.evictions.evicted()) == 2 })
}
