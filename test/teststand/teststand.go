// Package teststand plays, for tests on an embedded control plane, the
// parts of a cluster that are not there: a kubelet finishing deletions,
// and lockstep-controller run in the test's process.
package teststand

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/lockstep-sched/lockstep/pkg/controller"
)

// FinishDeletions plays the kubelet's part in a deletion in namespace ns:
// pods given a grace period (evictions) go at once. It stops before the
// test ends and never calls the test from its own goroutine.
func FinishDeletions(ctx context.Context, t testing.TB, client kubernetes.Interface, ns string) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		for {
			if list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
				for _, p := range list.Items {
					if p.DeletionTimestamp != nil {
						_ = client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

// StartController runs lockstep-controller with opts, without metrics or
// probe endpoints, until the test ends.
func StartController(ctx context.Context, t testing.TB, cfg *rest.Config, opts controller.Options) {
	t.Helper()
	opts.MetricsBindAddress, opts.HealthProbeBindAddress = "0", ""
	mgr, err := controller.NewManager(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("lockstep-controller: %v", err)
		}
	})
}
