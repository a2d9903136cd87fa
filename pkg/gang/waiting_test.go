package gang

import (
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clienttesting "k8s.io/client-go/testing"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// A scheduler-plugins PodGroup says why its gang waits in the
// lockstep.io/waiting annotation (the Waiting column of kubectl get
// podgroups), once it has waited a moment, and loses it when placed; a
// gang placed at once is never written to.
func TestWaitingAnnotation(t *testing.T) {
	h := newHarness(t, node("n1", "4"))
	annotation := func(name string) string {
		pg, err := h.pgs.SchedulingV1alpha1().PodGroups(ns).Get(h.ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return pg.Annotations[podgroup.AnnotationWaiting]
	}
	patched := func(name string) int {
		n := 0
		for _, a := range h.pgs.Actions() {
			if p, ok := a.(clienttesting.PatchAction); ok && p.GetResource().Resource == "podgroups" && p.GetName() == name {
				n++
			}
		}
		return n
	}

	// Members that arrive together and fit: nothing to say.
	h.podGroup("quick", 2)
	first, second := member("quick", 0, "500m"), member("quick", 1, "500m")
	h.pods(first)
	if s := h.pl.PreEnqueue(h.ctx, first); s.IsSuccess() {
		t.Fatalf("one member of two: %v", s)
	}
	h.pods(second)
	for _, p := range []*v1.Pod{first, second} {
		h.schedule(p)
	}
	// Two members of 3 CPUs and one node: they wait for another node.
	later := h.gang("later", 2, 2, "3")
	if _, s := h.schedule(later[0]); s.IsSuccess() {
		t.Fatalf("later fits one node of 4: %v", s)
	}
	if got := annotation("later"); got != "" {
		t.Fatalf("annotated before it waited %s: %q", waitingDelay, got)
	}
	h.step(waitingDelay)
	h.waitFor("the waiting gang's annotation", func() bool {
		return strings.HasPrefix(annotation("later"), "Unschedulable: gang can never fit this cluster as it is")
	})
	t.Logf("later: %s", annotation("later"))
	h.waitFor("the quick gang's notes written out", func() bool {
		h.pl.s.conditions.mu.Lock()
		defer h.pl.s.conditions.mu.Unlock()
		_, pending := h.pl.s.conditions.waiting[waitingKeyPrefix+"ns/quick"]
		return !pending
	})
	if n := patched("quick"); n != 0 {
		t.Errorf("the gang placed at once was patched %d times", n)
	}

	// Room comes; placed, the gang loses the annotation.
	n2 := node("n2", "4")
	if _, err := h.client.CoreV1().Nodes().Create(h.ctx, n2, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.nodes = append(h.nodes, n2)
	h.mu.Unlock()
	h.refresh()
	for _, p := range later {
		h.schedule(p)
	}
	h.waitFor("the gang placed", func() bool {
		return slices.ContainsFunc(h.events("Placed"), func(m string) bool { return strings.Contains(m, "placed 2 pods") })
	})
	h.waitFor("the annotation removed once placed", func() bool { return annotation("later") == "" })
	if n := patched("later"); n != 2 {
		t.Errorf("later patched %d times, want 2 (set, then removed)", n)
	}
}
