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

	next := func(what string) string {
		t.Helper()
		select {
		case got := <-rec.Events:
			return got
		case <-time.After(eventually):
			t.Fatalf("%s was never recorded", what)
			return ""
		}
	}

	// Members arriving together: no Event at once, then one with the
	// newest count once progressDelay has passed.
	for _, msg := range []string{"1/8 members exist", "2/8 members exist", "3/8 members exist"} {
		e.podGroupProgress(pg, "Normal", "WaitingForMembers", msg)
	}
	if n := recorded(); n != 0 {
		t.Fatalf("%d progress Events at once for an arrival burst, want none before %s", n, progressDelay)
	}
	clock.Step(progressDelay)
	if got := next("the burst's count"); !strings.Contains(got, "3/8 members exist") {
		t.Fatalf("held-back Event %q, want the newest count", got)
	}
	// Later counts: at most one Event per progressRepeat, the newest.
	e.podGroupProgress(pg, "Normal", "WaitingForMembers", "4/8 members exist")
	e.podGroupProgress(pg, "Normal", "WaitingForMembers", "5/8 members exist")
	if n := recorded(); n != 0 {
		t.Fatalf("%d progress Events within %s of the last, want none", n, progressRepeat)
	}
	clock.Step(progressRepeat)
	if got := next("the newest count"); !strings.Contains(got, "5/8 members exist") {
		t.Fatalf("held-back Event %q, want the newest count", got)
	}
	// A gang whose members all arrived within progressDelay gets none.
	quick := &v1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "quick", Namespace: ns}}
	e.podGroupProgress(quick, "Normal", "WaitingForMembers", "1/8 members exist")
	e.settle(quick, "WaitingForMembers")
	clock.Step(progressDelay)
	select {
	case got := <-rec.Events:
		t.Fatalf("a settled progress Event was recorded: %q", got)
	case <-time.After(100 * time.Millisecond): // a negative window: the flush runs on its own goroutine
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
