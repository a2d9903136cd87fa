//go:build linux

package restart

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/lockstep-sched/lockstep/manifests"
	"github.com/lockstep-sched/lockstep/pkg/controlplane"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// Timing of the failover test. The Lease settings are the shipped ones
// (kube-scheduler's defaults: 15 s lease, 10 s renew deadline, 2 s retry),
// so a takeover after a hard kill takes up to about 17 s.
const (
	// upTimeout bounds a replica's start, to the lease or to its wait for it.
	upTimeout = time.Minute
	// takeoverTimeout bounds the standby's takeover after the kill.
	takeoverTimeout = time.Minute
	// failoverQPS paces the replicas' clients: the batch takes about
	// totalPods/failoverQPS seconds to bind, longer than creating it.
	failoverQPS = 30
)

// Two replicas with leader election; the leader is killed hard while it
// binds gangs. The standby writes nothing while it waits (no Event, no
// binding, no status), takes the lease over, and completes every gang with
// none left partial. It sees the same pods and PodGroups as the leader, and
// the workload gives it things to report: a gang short of members and a
// pod whose PodGroup does not exist.
func TestFailoverToStandby(t *testing.T) {
	e := newEnv(t)
	nodes := e.addNodes(nodeCount)
	leaseNS := shippedLeaseNamespace(t)
	e.ensureNamespace(leaseNS)
	lease := "lockstep-" + e.ns
	writes := map[string]*controlplane.RequestCounter{}
	start := func(name string) *child {
		counter := controlplane.NewRequestCounter()
		kc := filepath.Join(e.dir, name+".kubeconfig")
		if err := cp.CountingKubeconfig(e.ctx, counter, kc, ""); err != nil {
			t.Fatal(err)
		}
		writes[name] = counter
		return e.startSchedulerWith(name, e.schedulerConfig(name+"-config.yaml", kc, lease, failoverQPS))
	}

	leader := start("leader")
	holder := e.waitLeaseHolder(leaseNS, lease, "", upTimeout)
	standby := start("standby")
	standby.waitLog(t, "Attempting to acquire leader lease", upTimeout)

	// Things to report, which both replicas see: the leader reports them
	// (so there was something to report); the standby must not.
	e.createShortGang("short", 4, 3)
	e.createOrphan("orphan", "missing")
	e.waitEventFrom("PodGroup", "short", "WaitingForMembers")
	e.waitEventFrom("Pod", "orphan", "PodGroupNotFound")

	// The gangs are created while the leader runs; it binds at failoverQPS,
	// slower than they are created, so it is still binding when the kill
	// point (a quarter of the pods) is seen.
	tr := e.track(totalPods / 4)
	for g := range gangCount {
		e.createGang(fmt.Sprintf("gang-%02d", g), gangSize)
	}
	select {
	case <-tr.reached:
	case <-leader.exited:
		t.Fatalf("the leader exited before the kill point: %v", leader.err)
	case <-time.After(killTimeout):
		t.Fatalf("the kill point was not reached within %s: %d of %d bound", killTimeout, tr.boundCount(), totalPods)
	}
	leader.kill(t)
	killed := time.Now()
	// The lease the leader renewed a moment ago keeps the standby waiting
	// for seconds more: whatever it wrote so far, it wrote as a standby.
	if n := writes["standby"].Writes(); n != 0 {
		t.Errorf("the standby wrote %d times while not leading: %v", n, writes["standby"].Counts())
	}
	if writes["leader"].Counts()[controlplane.RequestEvent] == 0 {
		t.Fatal("the leader recorded no Event: the standby's silence proves nothing")
	}
	atKill := e.boundPods()
	if len(atKill) == 0 || len(atKill) >= totalPods {
		t.Fatalf("the kill did not happen mid-binding: %d of %d pods bound", len(atKill), totalPods)
	}
	e.waitLeaseHolder(leaseNS, lease, holder, takeoverTimeout)
	takeover := time.Since(killed)
	select {
	case <-tr.allBound:
	case <-standby.exited:
		t.Fatalf("the standby exited (%v) with %d of %d pods bound", standby.err, tr.boundCount(), totalPods)
	case <-time.After(doneTimeout):
		t.Fatalf("not every gang completed within %s of the kill: %d of %d bound; partial: %v",
			doneTimeout, tr.boundCount(), totalPods, partialGangs(e.boundPods()))
	}
	t.Logf("failover: killed with %d of %d pods bound (%d gangs partial); the standby led %s later and every gang was complete %s after the kill",
		len(atKill), totalPods, len(partialGangs(atKill)), takeover.Round(100*time.Millisecond), time.Since(killed).Round(100*time.Millisecond))

	// Leading, it reports again: a gang it placed got its Placed Event.
	boundAtKill := gangCounts(atKill)
	for g := range gangCount {
		if name := fmt.Sprintf("gang-%02d", g); boundAtKill[name] == 0 {
			e.waitEventFrom("PodGroup", name, "Placed")
			break
		}
	}

	final := e.boundPods()
	if p := partialGangs(final); len(p) > 0 {
		t.Errorf("gangs partially bound at the end: %v", p)
	}
	delete(final, "orphan")
	for pod, node := range atKill {
		if final[pod] != node {
			t.Errorf("pod %s was bound to %s at the kill and is on %q at the end", pod, node, final[pod])
		}
	}
	e.checkNodes(final, nodes)
	standby.checkLog(t)
}

// shippedLeaseNamespace is the namespace of the shipped configuration's
// Lease.
func shippedLeaseNamespace(t *testing.T) string {
	t.Helper()
	var cfg struct {
		LeaderElection struct {
			ResourceNamespace string `json:"resourceNamespace"`
		} `json:"leaderElection"`
	}
	if err := yaml.Unmarshal(manifests.SchedulerConfig, &cfg); err != nil || cfg.LeaderElection.ResourceNamespace == "" {
		t.Fatalf("no lease namespace in the shipped configuration: %v", err)
	}
	return cfg.LeaderElection.ResourceNamespace
}

func (e *env) ensureNamespace(name string) {
	e.t.Helper()
	_, err := e.client.CoreV1().Namespaces().Create(e.ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatal(err)
	}
}

// waitLeaseHolder waits for the Lease to be held by someone other than
// notHolder, and returns the holder.
func (e *env) waitLeaseHolder(ns, name, notHolder string, timeout time.Duration) string {
	e.t.Helper()
	var holder string
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		l, err := e.client.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return false, nil
		}
		holder = *l.Spec.HolderIdentity
		return holder != "" && holder != notHolder, nil
	})
	if err != nil {
		e.t.Fatalf("Lease %s/%s: no holder other than %q within %s (last %q)", ns, name, notHolder, timeout, holder)
	}
	return holder
}

// createShortGang creates a PodGroup of minMember min with only n members.
func (e *env) createShortGang(name string, min int32, n int) {
	e.t.Helper()
	pg := &v1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}, Spec: v1alpha1.PodGroupSpec{MinMember: min}}
	if _, err := e.pgs.SchedulingV1alpha1().PodGroups(e.ns).Create(e.ctx, pg, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	for i := range n {
		e.createPod(fmt.Sprintf("%s-%d", name, i), name)
	}
}

// createOrphan creates a pod that names a PodGroup that does not exist.
func (e *env) createOrphan(name, pg string) {
	e.t.Helper()
	e.createPod(name, pg)
}

func (e *env) createPod(name, pg string) {
	e.t.Helper()
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns, Labels: map[string]string{podgroup.Label: pg}},
		Spec: v1.PodSpec{
			SchedulerName: schedulerName,
			Containers: []v1.Container{{Name: "main", Image: "registry.invalid/worker:latest",
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m")}}}},
		},
	}
	if _, err := e.client.CoreV1().Pods(e.ns).Create(e.ctx, pod, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// waitEventFrom waits for an Event with the reason on an object of the
// namespace.
func (e *env) waitEventFrom(kind, name, reason string) {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, upTimeout, true, func(ctx context.Context) (bool, error) {
		list, err := e.client.CoreV1().Events(e.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, ev := range list.Items {
			if ev.InvolvedObject.Kind == kind && ev.InvolvedObject.Name == name && ev.Reason == reason {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		e.t.Fatalf("no %s Event on %s %s within %s", reason, kind, name, upTimeout)
	}
}

// waitLog waits for a line containing s in the process's log.
func (c *child) waitLog(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		data, err := os.ReadFile(c.log)
		return err == nil && strings.Contains(string(data), s), nil
	})
	if err != nil {
		t.Fatalf("the %s scheduler did not log %q within %s", c.name, s, timeout)
	}
}
