package gang

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

func TestEventsAreNotRepeated(t *testing.T) {
	clock := clocktesting.NewFakeClock(epoch)
	rec := record.NewFakeRecorder(100)
	e := newEventer(rec, clock, nil)
	pg := &v1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: ns}}
	recorded := func() int {
		n := 0
		for {
			select {
			case <-rec.Events:
				n++
			default:
				return n
			}
		}
	}

	// Members arriving together: one progress Event, not one per member.
	for _, msg := range []string{"1/8 members exist", "2/8 members exist", "3/8 members exist"} {
		e.podGroupProgress(pg, "Normal", "WaitingForMembers", msg)
	}
	if n := recorded(); n != 1 {
		t.Fatalf("%d progress Events for one arrival burst, want 1", n)
	}
	// The burst's last count is recorded when the interval ends.
	clock.Step(progressRepeat)
	select {
	case got := <-rec.Events:
		if !strings.Contains(got, "3/8 members exist") {
			t.Fatalf("held-back Event %q, want the newest count", got)
		}
	case <-time.After(eventually):
		t.Fatal("the newest count was never recorded")
	}

	// Other Events: a new message goes at once, the same one not again
	// within eventRepeat.
	e.podGroupObj(pg, "Normal", "WaitingForRoom", "a")
	e.podGroupObj(pg, "Normal", "WaitingForRoom", "a")
	e.podGroupObj(pg, "Normal", "WaitingForRoom", "b")
	if n := recorded(); n != 2 {
		t.Fatalf("%d Events, want 2", n)
	}
	clock.Step(eventRepeat + time.Second)
	e.podGroupObj(pg, "Normal", "WaitingForRoom", "b")
	if n := recorded(); n != 1 {
		t.Fatalf("%d Events after eventRepeat, want 1", n)
	}
}
