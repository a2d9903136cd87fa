//go:build linux

// Package upstream checks Lockstep on Kubernetes' own PodGroup API
// (scheduling.k8s.io/v1beta1): pods that join a PodGroup with
// spec.schedulingGroup and name a Lockstep profile get the same contract as
// scheduler-plugins PodGroups, and the PodGroupInitiallyScheduled condition
// says where the gang stands.
//
// The control plane serves the API (feature gate GenericWorkload), a gate
// that belongs to the whole process: Lockstep's scheduler therefore runs as
// a child process, the lockstep-scheduler binary with its own defaults, as
// it would in a cluster. The default kube-scheduler, with upstream's
// GangScheduling, runs in this process where a test needs it beside, and
// so does lockstep-controller, which handles the disruption mode.
package upstream

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1beta1 "k8s.io/api/scheduling/v1beta1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/lockstep-sched/lockstep/manifests"
	"github.com/lockstep-sched/lockstep/pkg/controller"
	"github.com/lockstep-sched/lockstep/pkg/controlplane"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/cluster"
	"github.com/lockstep-sched/lockstep/test/testbin"
	"github.com/lockstep-sched/lockstep/test/testlog"
)

// Test timing, in one place.
const (
	// eventually bounds waiting for the scheduler to act.
	eventually = time.Minute
	// quiet is the one negative window: how long pods that must not bind
	// are watched.
	quiet = 3 * time.Second
)

var (
	cp *controlplane.ControlPlane
	// lockstep is the child Lockstep scheduler every test shares.
	lockstep *controlplane.Scheduler
)

func TestMain(m *testing.M) {
	os.Exit(testlog.Run("upstream", func() int {
		dir, err := os.MkdirTemp("", "lockstep-upstream-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		code := 1
		defer func() {
			if code == 0 {
				os.RemoveAll(dir)
			} else {
				fmt.Fprintf(os.Stderr, "etcd log, scheduler binary and log: %s\n", dir)
			}
		}()
		bin, err := testbin.BuildScheduler(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return code
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cp, err = controlplane.StartWithCRDs(ctx, controlplane.Options{Dir: filepath.Join(dir, "cp"), LogDir: dir, WorkloadAPI: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return code
		}
		defer cp.Stop()
		if lockstep, err = cp.StartSchedulerProcess(ctx, bin, manifests.SchedulerConfig); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return code
		}
		defer lockstep.Stop()
		mgr, err := controller.NewManager(cp.Config, controller.Options{MetricsBindAddress: "0"})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return code
		}
		ctrlDone := make(chan error, 1)
		go func() { ctrlDone <- mgr.Start(ctx) }()
		defer func() {
			cancel()
			if err := <-ctrlDone; err != nil {
				fmt.Fprintln(os.Stderr, "lockstep-controller:", err)
			}
		}()
		code = m.Run()
		return code
	}))
}

var nsCounter atomic.Int32

type env struct {
	t      *testing.T
	ctx    context.Context
	client kubernetes.Interface
	ns     string
	nodes  []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	client, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, client: client, ns: fmt.Sprintf("up%d", nsCounter.Add(1))}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cleanup)
	return e
}

// cleanup deletes what the test made; the next test's gangs must not see
// its nodes.
func (e *env) cleanup() {
	ctx := context.Background()
	zero := metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}
	_ = e.client.CoreV1().Pods(e.ns).DeleteCollection(ctx, zero, metav1.ListOptions{})
	_ = e.client.SchedulingV1beta1().PodGroups(e.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	for _, n := range e.nodes {
		_ = e.client.CoreV1().Nodes().Delete(ctx, n, metav1.DeleteOptions{})
	}
}

// addNodes creates ready nodes of cpus CPUs, spread over racks.
func (e *env) addNodes(count, cpus, racks int) {
	e.t.Helper()
	for i := range count {
		name := fmt.Sprintf("%s-node-%d", e.ns, i)
		n := cluster.Node{Name: name, Rack: fmt.Sprintf("%s-rack-%d", e.ns, i%racks), Zone: "z", CPUs: cpus, Memory: resource.MustParse("64Gi")}
		if _, err := e.client.CoreV1().Nodes().Create(e.ctx, n.NodeObject(), metav1.CreateOptions{}); err != nil {
			e.t.Fatal(err)
		}
		e.nodes = append(e.nodes, name)
	}
}

// podGroup creates an upstream PodGroup with a gang policy of minCount.
func (e *env) podGroup(name string, minCount int32, mutate ...func(*schedulingv1beta1.PodGroup)) {
	e.t.Helper()
	pg := &schedulingv1beta1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: schedulingv1beta1.PodGroupSpec{SchedulingPolicy: schedulingv1beta1.PodGroupSchedulingPolicy{
			Gang: &schedulingv1beta1.GangSchedulingPolicy{MinCount: minCount},
		}},
	}
	for _, m := range mutate {
		m(pg)
	}
	if _, err := e.client.SchedulingV1beta1().PodGroups(e.ns).Create(e.ctx, pg, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// members creates count pods of cpu CPUs that join group by
// spec.schedulingGroup and name scheduler.
func (e *env) members(group, scheduler string, count int, cpu string) []string {
	e.t.Helper()
	var names []string
	for i := range count {
		name := fmt.Sprintf("%s-%d", group, i)
		pod := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
			Spec: v1.PodSpec{
				SchedulerName:   scheduler,
				SchedulingGroup: &v1.PodSchedulingGroup{PodGroupName: ptr.To(group)},
				Containers: []v1.Container{{Name: "c", Image: "registry.invalid/worker",
					Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu)}}}},
			},
		}
		got, err := e.client.CoreV1().Pods(e.ns).Create(e.ctx, pod, metav1.CreateOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
		if got.Spec.SchedulingGroup == nil {
			e.t.Fatal("the apiserver dropped spec.schedulingGroup: the Workload API is not served")
		}
		names = append(names, name)
	}
	return names
}

// boundNodes returns the node of each of the named pods that is bound.
func (e *env) boundNodes(names []string) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, n := range names {
		p, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, n, metav1.GetOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
		if p.Spec.NodeName != "" {
			out[n] = p.Spec.NodeName
		}
	}
	return out
}

func (e *env) waitAllBound(what string, names []string) map[string]string {
	e.t.Helper()
	var bound map[string]string
	e.waitFor(what+" bound", func() bool {
		bound = e.boundNodes(names)
		return len(bound) == len(names)
	})
	return bound
}

// noneBound checks, over the quiet window, that none of the pods binds.
func (e *env) noneBound(what string, names []string) {
	e.t.Helper()
	deadline := time.Now().Add(quiet)
	for time.Now().Before(deadline) {
		if b := e.boundNodes(names); len(b) > 0 {
			e.t.Fatalf("%s: %d of %d pods bound, want none: %v", what, len(b), len(names), b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, eventually, true, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		e.t.Fatalf("waiting for %s: %v", what, err)
	}
}

// condition is the PodGroup's PodGroupInitiallyScheduled condition.
func (e *env) condition(name string) *metav1.Condition {
	e.t.Helper()
	pg, err := e.client.SchedulingV1beta1().PodGroups(e.ns).Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return meta.FindStatusCondition(pg.Status.Conditions, schedulingv1beta1.PodGroupInitiallyScheduled)
}

func (e *env) waitCondition(name string, status metav1.ConditionStatus, reason, msgPart string) *metav1.Condition {
	e.t.Helper()
	var c *metav1.Condition
	e.waitFor(fmt.Sprintf("PodGroup %s condition %s/%s %q", name, status, reason, msgPart), func() bool {
		c = e.condition(name)
		return c != nil && c.Status == status && c.Reason == reason && strings.Contains(c.Message, msgPart)
	})
	return c
}

// events returns the Events on an object as "component reason: message".
func (e *env) events(kind, name string) []string {
	e.t.Helper()
	list, err := e.client.CoreV1().Events(e.ns).List(e.ctx, metav1.ListOptions{FieldSelector: fields.Set{
		"involvedObject.kind": kind, "involvedObject.name": name,
	}.AsSelector().String()})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		// core/v1 recorders fill in the source, events.k8s.io ones the
		// reporting controller.
		by := ev.ReportingController
		if by == "" {
			by = ev.Source.Component
		}
		out = append(out, fmt.Sprintf("%s %s: %s", by, ev.Reason, ev.Message))
	}
	return out
}

// A gang of the upstream API is all or nothing: it binds whole once it
// fits, waits whole while it does not (with the condition saying why), and
// goes whole as soon as room frees.
func TestUpstreamGangAllOrNothing(t *testing.T) {
	e := newEnv(t)
	e.addNodes(4, 4, 2)
	e.podGroup("first", 4)
	first := e.members("first", "lockstep", 4, "3")
	bound := e.waitAllBound("the first gang", first)
	c := e.waitCondition("first", metav1.ConditionTrue, "Scheduled", "placed 4 pods on 4 nodes")
	t.Logf("first gang on %v; condition %s: %s", bound, c.Reason, c.Message)

	// One CPU is left on each node: the second gang, 4 × 2 CPUs, fits
	// nowhere, and none of it binds.
	e.podGroup("second", 4)
	second := e.members("second", "lockstep", 4, "2")
	c = e.waitCondition("second", metav1.ConditionFalse, schedulingv1beta1.PodGroupReasonUnschedulable, "does not fit")
	t.Logf("second gang waits: %s", c.Message)
	e.noneBound("the second gang beside the first", second)

	for _, p := range first {
		if err := e.client.CoreV1().Pods(e.ns).Delete(e.ctx, p, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
	}
	e.waitAllBound("the second gang once room freed", second)
	e.waitCondition("second", metav1.ConditionTrue, "Scheduled", "placed 4 pods")
}

// A placed gang that loses a member is disrupted as its disruptionMode
// says: with All the other members are evicted, with Single they stay;
// both PodGroups say so in their DisruptionTarget condition.
func TestUpstreamDisruptionMode(t *testing.T) {
	e := newEnv(t)
	e.addNodes(2, 8, 1)
	mode := func(all bool) func(*schedulingv1beta1.PodGroup) {
		return func(pg *schedulingv1beta1.PodGroup) {
			if all {
				pg.Spec.DisruptionMode = &schedulingv1beta1.DisruptionMode{All: &schedulingv1beta1.AllDisruptionMode{}}
			} else {
				pg.Spec.DisruptionMode = &schedulingv1beta1.DisruptionMode{Single: &schedulingv1beta1.SingleDisruptionMode{}}
			}
		}
	}
	e.podGroup("all", 3, mode(true))
	e.podGroup("single", 3, mode(false))
	all, single := e.members("all", "lockstep", 3, "1"), e.members("single", "lockstep", 3, "1")
	e.waitAllBound("the All gang", all)
	e.waitAllBound("the Single gang", single)
	e.waitCondition("all", metav1.ConditionTrue, "Scheduled", "")
	e.waitCondition("single", metav1.ConditionTrue, "Scheduled", "")

	for _, p := range []string{all[0], single[0]} {
		if err := e.client.CoreV1().Pods(e.ns).Delete(e.ctx, p, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
	}
	disrupted := func(name string) *metav1.Condition {
		var c *metav1.Condition
		e.waitFor("PodGroup "+name+" marked disrupted", func() bool {
			pg, err := e.client.SchedulingV1beta1().PodGroups(e.ns).Get(e.ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			c = meta.FindStatusCondition(pg.Status.Conditions, schedulingv1beta1.DisruptionTarget)
			return c != nil && c.Status == metav1.ConditionTrue && c.Reason == controller.ReasonGangDisrupted &&
				pg.Annotations["lockstep.io/incomplete"] != ""
		})
		return c
	}
	c := disrupted("all")
	t.Logf("All gang: %s", c.Message)
	// Evicted: no kubelet runs here to finish the deletion, so they stay
	// terminating.
	e.waitFor("the All gang's other members evicted", func() bool {
		for _, n := range all[1:] {
			p, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, n, metav1.GetOptions{})
			if err == nil && p.DeletionTimestamp == nil {
				return false
			}
		}
		return true
	})
	c = disrupted("single")
	t.Logf("Single gang: %s", c.Message)
	for _, n := range single[1:] {
		p, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, n, metav1.GetOptions{})
		if err != nil || p.DeletionTimestamp != nil {
			t.Fatalf("a member of the Single gang was evicted: %v %v", err, p.DeletionTimestamp)
		}
	}
	if !strings.Contains(c.Message, "Single") || !strings.Contains(disrupted("all").Message, "All") {
		t.Fatalf("the conditions do not name the modes")
	}
}

// The PodGroup's topology constraint keeps the gang in one domain of the
// level it names; a key that is not a level of the scheduler is an error
// the condition reports.
func TestUpstreamTopologyConstraint(t *testing.T) {
	e := newEnv(t)
	// Two racks of two 4-CPU nodes: 4 × 2 CPUs fit a rack; 4 × 3 CPUs
	// would need nodes of both racks.
	e.addNodes(4, 4, 2)
	rack := func(pg *schedulingv1beta1.PodGroup) {
		pg.Spec.SchedulingConstraints = &schedulingv1beta1.PodGroupSchedulingConstraints{
			Topology: []schedulingv1beta1.TopologyConstraint{{Key: cluster.LabelRack}},
		}
	}
	e.podGroup("racked", 4, rack)
	racked := e.members("racked", "lockstep", 4, "2")
	bound := e.waitAllBound("the rack-bound gang", racked)
	racks := map[string]bool{}
	for _, n := range bound {
		node, err := e.client.CoreV1().Nodes().Get(e.ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		racks[node.Labels[cluster.LabelRack]] = true
	}
	if len(racks) != 1 {
		t.Errorf("the gang spans racks %v, want one", racks)
	}

	e.podGroup("wide", 4, rack)
	wide := e.members("wide", "lockstep", 4, "3")
	e.waitCondition("wide", metav1.ConditionFalse, schedulingv1beta1.PodGroupReasonUnschedulable, "")
	e.noneBound("a gang wider than any rack", wide)

	e.podGroup("badkey", 1, func(pg *schedulingv1beta1.PodGroup) {
		pg.Spec.SchedulingConstraints = &schedulingv1beta1.PodGroupSchedulingConstraints{
			Topology: []schedulingv1beta1.TopologyConstraint{{Key: "example.com/not-a-level"}},
		}
	})
	bad := e.members("badkey", "lockstep", 1, "1")
	c := e.waitCondition("badkey", metav1.ConditionFalse, schedulingv1beta1.PodGroupReasonSchedulerError, "not a topology level")
	t.Logf("bad key: %s", c.Message)
	e.noneBound("a gang with an unknown topology key", bad)
}

// Lowering gang.minCount (it is mutable) lets a gang that waits for
// members go with those it has.
func TestUpstreamMinCountLowered(t *testing.T) {
	e := newEnv(t)
	e.addNodes(2, 4, 1)
	e.podGroup("elastic", 4)
	pods := e.members("elastic", "lockstep", 2, "1")
	e.waitCondition("elastic", metav1.ConditionFalse, schedulingv1beta1.PodGroupReasonUnschedulable, "2/4 members exist")
	e.noneBound("2 of 4 members", pods)

	pg, err := e.client.SchedulingV1beta1().PodGroups(e.ns).Get(e.ctx, "elastic", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pg.Spec.SchedulingPolicy.Gang.MinCount = 2
	if _, err := e.client.SchedulingV1beta1().PodGroups(e.ns).Update(e.ctx, pg, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitAllBound("the gang with minCount lowered to 2", pods)
	e.waitCondition("elastic", metav1.ConditionTrue, "Scheduled", "placed 2 pods")
}

// A pod that names a PodGroup that does not exist waits, and says so.
func TestUpstreamMissingPodGroup(t *testing.T) {
	e := newEnv(t)
	e.addNodes(1, 4, 1)
	pods := e.members("ghost", "lockstep", 1, "1")
	e.waitFor("a PodGroupNotFound Event", func() bool {
		for _, ev := range e.events("Pod", pods[0]) {
			if strings.Contains(ev, "PodGroupNotFound") && strings.Contains(ev, "podgroups.scheduling.k8s.io") {
				return true
			}
		}
		return false
	})
	e.noneBound("a pod of a missing PodGroup", pods)
	e.podGroup("ghost", 1)
	e.waitAllBound("the pod once its PodGroup exists", pods)
}

// defaultSchedulerConfig is the default kube-scheduler's profile; with
// GenericWorkload on, kube-scheduler adds its GangScheduling plugin.
const defaultSchedulerConfig = `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
`

// On a cluster whose default kube-scheduler runs upstream's gang
// scheduling too, pods that name a Lockstep profile are Lockstep's alone:
// Lockstep places them and keeps their PodGroup's condition, and the
// default scheduler goes on scheduling the gangs that name it.
func TestUpstreamBesideDefaultGangScheduling(t *testing.T) {
	e := newEnv(t)
	e.addNodes(4, 4, 2)
	def, err := cp.StartScheduler(e.ctx, []byte(defaultSchedulerConfig), controlplane.WithFeatureGates("GenericWorkload=true"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(def.Stop)

	e.podGroup("theirs", 2)
	theirs := e.members("theirs", "default-scheduler", 2, "1")
	e.waitAllBound("the default scheduler's gang", theirs)
	e.waitCondition("theirs", metav1.ConditionTrue, "Scheduled", "")
	e.waitFor("the default scheduler's Scheduled Event", func() bool {
		for _, ev := range e.events("Pod", theirs[0]) {
			if strings.HasPrefix(ev, "default-scheduler") && strings.Contains(ev, "Scheduled") {
				return true
			}
		}
		return false
	})

	e.podGroup("ours", 3)
	ours := e.members("ours", "lockstep", 3, "2")
	e.waitAllBound("Lockstep's gang", ours)
	c := e.waitCondition("ours", metav1.ConditionTrue, "Scheduled", "placed 3 pods")
	t.Logf("Lockstep's condition: %s", c.Message)
	for _, p := range ours {
		for _, ev := range e.events("Pod", p) {
			if strings.HasPrefix(ev, "default-scheduler") {
				t.Errorf("the default scheduler acted on Lockstep's pod %s: %s", p, ev)
			}
		}
	}
	placed := false
	for _, ev := range e.events("PodGroup", "ours") {
		placed = placed || strings.HasPrefix(ev, "lockstep-scheduler") && strings.Contains(ev, "Placed")
		if strings.HasPrefix(ev, "default-scheduler") {
			t.Errorf("the default scheduler reported on Lockstep's PodGroup: %s", ev)
		}
	}
	if !placed {
		t.Errorf("no Placed Event from lockstep-scheduler on its PodGroup: %v", e.events("PodGroup", "ours"))
	}
}
