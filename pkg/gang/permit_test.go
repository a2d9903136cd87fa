package gang

import (
	"math"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/gang/gangstate"
)

// Permit holds every member until the quorum is assumed, then lets them
// all go in one step; members are placed on the planned nodes.
func TestPermitHoldsUntilQuorumThenReleasesAll(t *testing.T) {
	h := newHarness(t, node("n1", "4"), node("n2", "4"))
	pods := h.gang("g", 3, 3, "2")
	for _, p := range pods[:2] {
		n, s := h.schedule(p)
		if !s.IsWait() || n == "" {
			t.Fatalf("%s: want to wait at Permit on a node, got %q %v", p.Name, n, s)
		}
	}
	h.stillWaiting(pods[0])
	h.stillWaiting(pods[1])
	if got := h.pl.s.cache.Phase("ns/g"); got != gangstate.Planned {
		t.Fatalf("phase %s before quorum, want Planned", got)
	}
	if _, s := h.schedule(pods[2]); !s.IsSuccess() {
		t.Fatalf("the member completing the quorum: %v", s)
	}
	for _, p := range pods[:2] {
		if s := h.outcome(p); !s.IsSuccess() {
			t.Fatalf("%s was not allowed at quorum: %v", p.Name, s)
		}
	}
	if got := h.pl.s.cache.Phase("ns/g"); got != gangstate.Binding {
		t.Fatalf("phase %s after release, want Binding", got)
	}
	if got := h.waitEvent("Placed"); !strings.Contains(got[0], "placed 3 pods on 2 nodes") {
		t.Errorf("Placed event: %q", got)
	}
}

// The gang's deadline rejects every waiting member at once; Permit tells a
// member to wait longer than that, so the framework's per-pod timers never
// reject one member while its siblings are being allowed. A member that
// comes after the plan expired waits for a new quorum: it is not let go
// with siblings that were rejected.
func TestPlanDeadlineRejectsAllWaitingTogether(t *testing.T) {
	h := newHarness(t, node("n1", "4"), node("n2", "4"))
	pods := h.gang("g", 3, 3, "2")
	for _, p := range pods[:2] {
		if _, s := h.schedule(p); !s.IsWait() {
			t.Fatalf("%s: want Wait, got %v", p.Name, s)
		}
		if w := h.waits[p.Name]; w <= gangTimeout || w > 15*time.Minute {
			t.Fatalf("%s told to wait %s: must outlast the gang deadline (%s) and stay under the framework's cap", p.Name, w, gangTimeout)
		}
	}
	h.step(gangTimeout)
	for _, p := range pods[:2] {
		if s := h.outcome(p); s.IsSuccess() {
			t.Fatalf("%s allowed after its gang's plan expired", p.Name)
		}
	}
	h.waitEvent("PlanExpired")
	if got := h.pl.s.cache.Phase("ns/g"); got != gangstate.Waiting {
		t.Fatalf("phase %s after the deadline, want Waiting", got)
	}
	if _, s := h.schedule(pods[2]); !s.IsWait() {
		t.Fatalf("the third member must wait for a new quorum, got %v", s)
	}
	for _, p := range pods[:2] {
		h.schedule(p)
	}
	for _, p := range pods {
		if s := h.outcome(p); !s.IsSuccess() {
			t.Fatalf("%s after replanning: %v", p.Name, s)
		}
	}
}

// A member rejected after its gang was released (its binding failed, or it
// was rejected while the last member's Permit ran) keeps its place: its
// room stays held, it is retried at once, follows its plan and is let go.
func TestMemberFailingAfterReleaseKeepsItsPlace(t *testing.T) {
	h := newHarness(t, node("n1", "4"), node("n2", "4"), node("n3", "4"))
	pods := h.gang("g", 3, 3, "4")
	planned := map[string]string{}
	hold := make(chan struct{})
	h.holdUnreserve[pods[0].Name] = hold
	for _, p := range pods[:2] {
		n, s := h.schedule(p)
		if !s.IsWait() {
			t.Fatalf("%s: want Wait, got %v", p.Name, s)
		}
		planned[p.Name] = n
	}
	// The framework rejects a waiting member (its pod was updated, or
	// preempted); its Unreserve has not run when the last member arrives.
	h.rejectWaiting(pods[0].UID)
	if s := h.outcome(pods[0]); s.IsSuccess() {
		t.Fatal("rejected member allowed")
	}
	if _, s := h.schedule(pods[2]); !s.IsSuccess() {
		t.Fatalf("last member: %v", s)
	}
	if s := h.outcome(pods[1]); !s.IsSuccess() {
		t.Fatalf("sibling: %v", s)
	}
	close(hold)
	h.waitEvent("BindRetry")
	if h.activated.count(pods[0]) == 0 {
		t.Error("the failed member was not brought back to the active queue")
	}
	// Its room is held: an ordinary pod cannot take it.
	intruder := member("", 0, "4")
	intruder.Name, intruder.UID = "ordinary", "ordinary"
	h.pods(intruder)
	if n, s := h.schedule(intruder); s.IsSuccess() || s.IsWait() {
		t.Fatalf("ordinary pod took the failed member's room on %s", n)
	}
	n, s := h.schedule(pods[0])
	if !s.IsSuccess() {
		t.Fatalf("retried member must be let go at once, got %v", s)
	}
	if n != planned[pods[0].Name] {
		t.Fatalf("retried member went to %s, its place was %s", n, planned[pods[0].Name])
	}
}

// A gang whose members all went away forms a gang again with new members:
// the first new member is held, not bound alone.
func TestRecreatedWorkersFormAGangAgain(t *testing.T) {
	h := newHarness(t, node("n1", "8"))
	pods := h.gang("g", 2, 2, "2")
	h.schedule(pods[0])
	h.schedule(pods[1])
	for _, p := range pods {
		if s := h.outcome(p); !s.IsSuccess() {
			t.Fatal(s)
		}
		h.bind(p, "n1")
	}
	h.waitFor("the gang running", func() bool { return h.pl.s.cache.Phase("ns/g") == gangstate.Running })
	for _, p := range pods {
		h.deletePod(p)
	}
	fresh := []*v1.Pod{member("g", 10, "2"), member("g", 11, "2")}
	h.pods(fresh[0])
	if s := h.fw.PreEnqueuePlugins()[0].PreEnqueue(h.ctx, fresh[0]); s.IsSuccess() {
		t.Fatal("one new member of two passed PreEnqueue")
	}
	h.pods(fresh[1])
	if _, s := h.schedule(fresh[0]); !s.IsWait() {
		t.Fatalf("first new member must wait for its sibling, got %v", s)
	}
	h.stillWaiting(fresh[0])
	if _, s := h.schedule(fresh[1]); !s.IsSuccess() {
		t.Fatal(s)
	}
	if s := h.outcome(fresh[0]); !s.IsSuccess() {
		t.Fatal(s)
	}
	h.waitEvent("BelowQuorum")
}

// A tenant's huge scheduleTimeoutSeconds is capped, said in an Event, and
// the Permit wait stays under the framework's cap.
func TestHugeScheduleTimeoutIsCapped(t *testing.T) {
	h := newHarness(t, node("n1", "8"))
	h.podGroup("g", 2, func(pg *v1alpha1.PodGroup) { pg.Spec.ScheduleTimeoutSeconds = ptr.To[int32](math.MaxInt32) })
	pods := h.pods(member("g", 0, "2"), member("g", 1, "2"))
	if _, s := h.schedule(pods[0]); !s.IsWait() {
		t.Fatal(s)
	}
	if w := h.waits[pods[0].Name]; w > 15*time.Minute {
		t.Fatalf("Permit wait %s exceeds the framework's cap", w)
	}
	if got := h.waitEvent("TimeoutCapped"); !strings.Contains(got[0], "2147483647") {
		t.Errorf("TimeoutCapped: %q", got)
	}
	// The plan's room is released at the capped deadline.
	h.step(14 * time.Minute)
	if s := h.outcome(pods[0]); s.IsSuccess() {
		t.Fatal("allowed after the capped deadline")
	}
}
