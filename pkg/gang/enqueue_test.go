package gang

import (
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
)

func TestPreEnqueue(t *testing.T) {
	gated := member("g", 1, "1")
	gated.Spec.SchedulingGates = []v1.PodSchedulingGate{{Name: "hold"}}
	foreign := member("g", 2, "1")
	foreign.Spec.SchedulerName = "default-scheduler"
	for _, tc := range []struct {
		name      string
		pg        bool
		existing  []*v1.Pod
		pod       *v1.Pod
		wantCode  fwk.Code
		wantMsg   string
		wantEvent string
	}{
		{name: "ordinary pod", pod: ordinary("o", "1"), wantCode: fwk.Success},
		{name: "no PodGroup", pod: member("g", 0, "1"), wantCode: fwk.UnschedulableAndUnresolvable,
			wantMsg: "waiting for PodGroup ns/g (podgroups.scheduling.x-k8s.io) to exist", wantEvent: "PodGroupNotFound"},
		{name: "too few members", pg: true, pod: member("g", 0, "1"), wantCode: fwk.UnschedulableAndUnresolvable,
			wantMsg: "1/2 members exist", wantEvent: "WaitingForMembers"},
		{name: "gated members do not count", pg: true, existing: []*v1.Pod{gated}, pod: member("g", 0, "1"),
			wantCode: fwk.UnschedulableAndUnresolvable, wantMsg: "1/2 members exist (1 more scheduling-gated)"},
		{name: "members of another scheduler do not count", pg: true, existing: []*v1.Pod{foreign}, pod: member("g", 0, "1"),
			wantCode: fwk.UnschedulableAndUnresolvable, wantMsg: "1/2 members exist", wantEvent: "ForeignMembers"},
		{name: "quorum exists", pg: true, existing: []*v1.Pod{member("g", 3, "1")}, pod: member("g", 0, "1"), wantCode: fwk.Success},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, node("n1", "8"))
			if tc.pg {
				h.podGroup("g", 2)
			}
			h.pods(append(tc.existing, tc.pod)...)
			s := h.fw.PreEnqueuePlugins()[0].PreEnqueue(h.ctx, tc.pod)
			if s.Code() != tc.wantCode || !strings.Contains(s.Message(), tc.wantMsg) {
				t.Fatalf("got %v, want %v with %q", s, tc.wantCode, tc.wantMsg)
			}
			if tc.wantEvent != "" {
				// Progress Events wait progressDelay for the other members.
				h.clock.Step(progressDelay)
				h.waitEvent(tc.wantEvent)
			}
		})
	}
}

// Members created together get no WaitingForMembers Event: the one held
// back at the first member is dropped once the last one exists.
func TestMembersArrivingTogetherGetNoEvent(t *testing.T) {
	h := newHarness(t, node("n1", "8"))
	pg := h.podGroup("g", 2)
	first, second := member("g", 0, "1"), member("g", 1, "1")
	h.pods(first)
	if s := h.pl.PreEnqueue(h.ctx, first); s.IsSuccess() {
		t.Fatalf("one member of two: %v", s)
	}
	held := func() bool {
		h.pl.s.events.mu.Lock()
		defer h.pl.s.events.mu.Unlock()
		_, ok := h.pl.s.events.pending[progressKey(pg, "WaitingForMembers")]
		return ok
	}
	if !held() {
		t.Fatal("no WaitingForMembers Event held back for the first member")
	}
	h.pods(second)
	if s := h.pl.PreEnqueue(h.ctx, second); !s.IsSuccess() {
		t.Fatalf("both members exist: %v", s)
	}
	if held() {
		t.Fatal("the WaitingForMembers Event is still held back after the last member arrived")
	}
}

func TestQueueingHints(t *testing.T) {
	h := newHarness(t, node("n1", "8"))
	events, err := h.pl.EventsToRegister(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	hintOf := func(r fwk.EventResource, a fwk.ActionType) fwk.QueueingHintFn {
		for _, e := range events {
			if e.Event.Resource == r && e.Event.ActionType&a != 0 {
				return e.QueueingHintFn
			}
		}
		t.Fatalf("no hint registered for %s/%s", r, a)
		return nil
	}
	logger, _ := ktesting.NewTestContext(t)
	pod := member("g", 0, "1")
	cordoned := st.MakeNode().Name("n").Unschedulable(true).Obj()
	for _, tc := range []struct {
		name     string
		fn       fwk.QueueingHintFn
		old, new any
		want     fwk.QueueingHint
	}{
		{"a new member of the same gang", hintOf(fwk.UnscheduledPod, fwk.Add), nil, member("g", 1, "1"), fwk.Queue},
		{"a pod of another gang", hintOf(fwk.UnscheduledPod, fwk.Add), nil, member("other", 1, "1"), fwk.QueueSkip},
		{"an ordinary pod", hintOf(fwk.UnscheduledPod, fwk.Add), nil, ordinary("o", "1"), fwk.QueueSkip},
		{"a member bound", hintOf(fwk.AssignedPod, fwk.Add), nil, member("g", 1, "1"), fwk.Queue},
		{"a pod leaving frees room", hintOf(fwk.AssignedPod, fwk.Delete), ordinary("o", "1"), nil, fwk.Queue},
		{"a new node", hintOf(fwk.Node, fwk.Add), nil, node("n2", "8"), fwk.Queue},
		{"a cordoned node changing", hintOf(fwk.Node, fwk.UpdateNodeLabel), cordoned, cordoned, fwk.QueueSkip},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.fn(logger, pod, tc.old, tc.new)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// Members of one gang sort together, by priority, then the gang's age.
func TestQueueSortKeepsGangsTogether(t *testing.T) {
	h := newHarness(t, node("n1", "8"))
	h.podGroup("a", 1)
	h.podGroup("b", 1)
	less := h.fw.QueueSortFunc()
	info := func(p *v1.Pod, prio int32) fwk.QueuedEntityInfo {
		p.Spec.Priority = &prio
		pi, err := frameworkPodInfo(p)
		if err != nil {
			t.Fatal(err)
		}
		return pi
	}
	a0, a1, b0 := info(member("a", 0, "1"), 0), info(member("a", 1, "1"), 0), info(member("b", 0, "1"), 0)
	if !less(a0, b0) || !less(a1, b0) || less(b0, a0) {
		t.Error("gang a's members must come before gang b's")
	}
	if !less(info(member("b", 1, "1"), 10), a0) {
		t.Error("higher priority comes first")
	}
}

func frameworkPodInfo(p *v1.Pod) (fwk.QueuedEntityInfo, error) {
	pi, err := framework.NewPodInfo(p)
	if err != nil {
		return nil, err
	}
	return &framework.QueuedPodInfo{PodInfo: pi, QueueingParams: framework.QueueingParams{Timestamp: epoch}}, nil
}
