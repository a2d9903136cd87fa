package gang

import (
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fwk "k8s.io/kube-scheduler/framework"
)

// poll returns a pod's Permit outcome if its wait has ended.
func (h *harness) poll(p *v1.Pod) (*fwk.Status, bool) {
	h.mu.Lock()
	out := h.outcomes[p.Name]
	h.mu.Unlock()
	if out == nil {
		return nil, false
	}
	select {
	case s := <-out:
		out <- s
		return s, true
	default:
		return nil, false
	}
}

// Scheduling cycles run while, from other goroutines, gang deadlines fire,
// waiting members are rejected, and chaos gangs have their minMember
// changed, members deleted and PodGroups deleted and created again. Run
// under -race. Gangs left alone by the chaos end whole or not at all, and
// the chaos must really have happened.
func TestConcurrentTransitionsNeverLeaveAPartialGang(t *testing.T) {
	var nodes []*v1.Node
	for i := range 8 {
		nodes = append(nodes, node(fmt.Sprintf("n%d", i), "8"))
	}
	h := newHarness(t, nodes...)
	const members, rounds = 4, 4
	var mu sync.Mutex // guards pods, read by the rejecting goroutine
	var pods []*v1.Pod
	gangOf := map[string]string{}
	chaos := []string{"x0", "x1"}
	addGangs := func(names ...string) {
		for _, g := range names {
			created := h.gang(g, members, members, "2")
			mu.Lock()
			for _, p := range created {
				pods = append(pods, p)
				gangOf[p.Name] = g
			}
			mu.Unlock()
		}
	}
	addGangs(chaos...)
	control := func(round int) []string {
		return []string{fmt.Sprintf("c%d-0", round), fmt.Sprintf("c%d-1", round), fmt.Sprintf("c%d-2", round)}
	}
	addGangs(control(0)...)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var steps, rejects, chaosOps atomic.Int64
	rng := func(seed int64) *rand.Rand { return rand.New(rand.NewSource(seed)) }
	wg.Go(func() { // deadlines fire
		r := rng(1)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(r.Intn(30)) * time.Millisecond):
			}
			h.step(gangTimeout / 3)
			steps.Add(1)
		}
	})
	wg.Go(func() { // the framework rejects waiting members
		r := rng(2)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(r.Intn(3)) * time.Millisecond):
			}
			var waiting []fwk.WaitingPod
			h.fw.IterateOverWaitingPods(func(wp fwk.WaitingPod) { waiting = append(waiting, wp) })
			if len(waiting) > 0 {
				h.rejectWaiting(waiting[r.Intn(len(waiting))].GetPod().UID)
				rejects.Add(1)
			}
		}
	})
	wg.Go(func() { // chaos gangs change under the scheduler
		r := rng(3)
		pgs := h.pgs.SchedulingV1alpha1().PodGroups(ns)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(r.Intn(25)) * time.Millisecond):
			}
			g := chaos[r.Intn(len(chaos))]
			switch r.Intn(3) {
			case 0:
				if pg, err := pgs.Get(h.ctx, g, metav1.GetOptions{}); err == nil {
					pg.Spec.MinMember = int32(1 + r.Intn(members))
					_, _ = pgs.Update(h.ctx, pg, metav1.UpdateOptions{})
				}
			case 1:
				_ = h.client.CoreV1().Pods(ns).Delete(h.ctx, fmt.Sprintf("%s-%d", g, r.Intn(members)), metav1.DeleteOptions{})
			case 2:
				if pg, err := pgs.Get(h.ctx, g, metav1.GetOptions{}); err == nil {
					_ = pgs.Delete(h.ctx, g, metav1.DeleteOptions{})
					pg.ResourceVersion, pg.UID = "", pg.UID+"x"
					_, _ = pgs.Create(h.ctx, pg, metav1.CreateOptions{})
				}
			}
			chaosOps.Add(1)
		}
	})

	// The scheduling loop: one cycle at a time, as the scheduler runs them.
	// Each round places fresh control gangs; a round's gangs end whole or
	// not at all, then go away to make room for the next round's.
	bound := map[string]bool{}
	nodeOf := map[string]string{}
	complete := 0
	// More rounds while the chaos has not hit a waiting member yet.
	for round := 0; round < rounds || (rejects.Load() == 0 && round < 3*rounds); round++ {
		gangs := control(round)
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) && !allBound(bound, gangs, members) {
			mu.Lock()
			current := append([]*v1.Pod(nil), pods...)
			mu.Unlock()
			for _, p := range current {
				if bound[p.Name] {
					continue
				}
				if s, done := h.poll(p); done && s.IsSuccess() {
					if isControl(gangOf[p.Name], gangs) {
						h.bind(p, nodeOf[p.Name])
					}
					bound[p.Name] = true
					continue
				}
				if h.fw.GetWaitingPod(p.UID) != nil || !h.informerHas(p, func(*v1.Pod) bool { return true }) {
					continue
				}
				if n, s := h.schedule(p); s.IsSuccess() || s.IsWait() {
					nodeOf[p.Name] = n
				}
			}
		}
		// Members allowed in the last moments are bound too, then judged.
		for _, p := range current(pods, &mu) {
			if s, done := h.poll(p); done && s.IsSuccess() && !bound[p.Name] && isControl(gangOf[p.Name], gangs) {
				h.bind(p, nodeOf[p.Name])
				bound[p.Name] = true
			}
		}
		for _, g := range gangs {
			n := 0
			for i := range members {
				if bound[fmt.Sprintf("%s-%d", g, i)] {
					n++
				}
			}
			if n != 0 && n < members {
				t.Errorf("round %d: gang %s partially bound: %d of %d", round, g, n, members)
			}
			if n == members {
				complete++
			}
		}
		for _, p := range current(pods, &mu) {
			if isControl(gangOf[p.Name], gangs) {
				h.deletePod(p)
			}
		}
		addGangs(control(round + 1)...)
	}
	close(stop)
	wg.Wait()

	if steps.Load() == 0 || rejects.Load() == 0 || chaosOps.Load() == 0 {
		t.Fatalf("the chaos did not run: %d clock steps, %d rejections, %d chaos operations", steps.Load(), rejects.Load(), chaosOps.Load())
	}
	if complete == 0 {
		t.Errorf("no control gang completed in the time allowed")
	}
	t.Logf("%d clock steps, %d rejections, %d chaos operations; %d control gangs complete", steps.Load(), rejects.Load(), chaosOps.Load(), complete)
}

func current(pods []*v1.Pod, mu *sync.Mutex) []*v1.Pod {
	mu.Lock()
	defer mu.Unlock()
	return append([]*v1.Pod(nil), pods...)
}

func isControl(g string, control []string) bool {
	for _, c := range control {
		if c == g {
			return true
		}
	}
	return false
}

func allBound(bound map[string]bool, gangs []string, members int) bool {
	for _, g := range gangs {
		for i := range members {
			if !bound[fmt.Sprintf("%s-%d", g, i)] {
				return false
			}
		}
	}
	return true
}
