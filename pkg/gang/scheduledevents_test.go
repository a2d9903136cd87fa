package gang

import (
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
)

// The members released together are named in the PodGroup's Placed Event,
// and kube-scheduler's Scheduled Event on each of them is not recorded; a
// pod no Placed Event named keeps its Scheduled Event, as does every other
// Event.
func TestScheduledEventsOfReleasedMembersGoToThePodGroup(t *testing.T) {
	h := newHarness(t, node("n1", "4"), node("n2", "4"))
	pods := h.gang("g", 3, 3, "2")
	for _, p := range pods {
		h.schedule(p)
	}
	placed := h.waitEvent("Placed")[0]
	for _, p := range pods {
		if !strings.Contains(placed, p.Name) {
			t.Errorf("Placed Event %q does not name member %s", placed, p.Name)
		}
	}
	rec := events.NewFakeRecorder(10)
	recorders := h.factory.Recorders(func(string) events.EventRecorderLogger { return rec })
	profileRec := recorders("lockstep").WithLogger(klog.Background())
	scheduled := func(pod *v1.Pod) {
		profileRec.Eventf(pod, nil, v1.EventTypeNormal, "Scheduled", "Binding", "Successfully assigned %v/%v to %v", pod.Namespace, pod.Name, "n1")
	}
	// A profile the plugin does not run in passes everything.
	recorders("default-scheduler").Eventf(pods[2], nil, v1.EventTypeNormal, "Scheduled", "Binding", "elsewhere")
	for _, p := range pods {
		scheduled(p)
	}
	ordinary := st.MakePod().Namespace("ns").Name("ordinary").UID("ordinary").Obj()
	scheduled(ordinary)
	// A member's second binding (after a failed one) is not in the Event
	// any more: it gets its own.
	scheduled(pods[0])
	profileRec.Eventf(pods[1], nil, v1.EventTypeWarning, "FailedScheduling", "Scheduling", "no room")
	close(rec.Events)
	var got []string
	for ev := range rec.Events {
		got = append(got, ev)
	}
	want := []string{
		"Normal Scheduled elsewhere",
		"Normal Scheduled Successfully assigned ns/ordinary to n1",
		"Normal Scheduled Successfully assigned ns/g-0 to n1",
		"Warning FailedScheduling no room",
	}
	if len(got) != len(want) {
		t.Fatalf("recorded %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("Event %d: got %q, want %q", i, got[i], want[i])
		}
	}
}
