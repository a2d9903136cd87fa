package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// floorWorkers is how many bindings the floor measurement keeps in flight:
// more than any scheduler here sends for one gang.
const floorWorkers = 64

// DefaultFloorMinMembers is the gang size from which a scenario's bind
// skew is compared with the floor: for small gangs the floor is a few
// milliseconds and says little.
const DefaultFloorMinMembers = 64

// bindFloor measures the apiserver's floor for binding a gang of n: the
// time from the first to the last of n bindings sent as fast as
// floorWorkers clients can, with no scheduler in the way. A gang's bind
// skew cannot be below it.
func (r *runner) bindFloor(ctx context.Context, n int) (time.Duration, error) {
	ns := fmt.Sprintf("bind-floor-%d", n)
	if err := ensureNamespace(ctx, r.c, ns); err != nil {
		return 0, err
	}
	defer func() {
		_ = r.c.Kube.CoreV1().Pods(ns).DeleteCollection(context.WithoutCancel(ctx),
			metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{})
	}()
	err := parallel(ctx, r.opts.Workers, n, func(ctx context.Context, i int) error {
		p := pod(ns, fmt.Sprintf("floor-%04d", i), "", "no-scheduler", Shape{Members: 1, CPUMilli: 1}, false)
		_, err := r.c.Kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("creating the floor's pods: %w", err)
	}
	var mu sync.Mutex
	var first, last time.Time
	err = parallel(ctx, floorWorkers, n, func(ctx context.Context, i int) error {
		name := fmt.Sprintf("floor-%04d", i)
		err := r.c.Kube.CoreV1().Pods(ns).Bind(ctx, &v1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			// No kubelet runs the pods: the node need not exist.
			Target: v1.ObjectReference{Kind: "Node", Name: "bind-floor"},
		}, metav1.CreateOptions{})
		done := time.Now()
		mu.Lock()
		if first.IsZero() || done.Before(first) {
			first = done
		}
		if done.After(last) {
			last = done
		}
		mu.Unlock()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("binding the floor's pods: %w", err)
	}
	return last.Sub(first), nil
}
