package integration

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgclientset "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned"
	"sigs.k8s.io/yaml"

	nrtv1alpha2 "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/apis/topology/v1alpha2"
	nrtclientset "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/generated/clientset/versioned"

	"github.com/lockstep-sched/lockstep/manifests"
	"github.com/lockstep-sched/lockstep/pkg/controller"
	"github.com/lockstep-sched/lockstep/pkg/controlplane"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
	"github.com/lockstep-sched/lockstep/test/teststand"
)

const schedulerName = "lockstep"

var nsCounter atomic.Int32

// env is one test's slice of the shared control plane: a namespace, the
// nodes it created and a scheduler of its own.
type env struct {
	t      *testing.T
	ctx    context.Context
	client kubernetes.Interface
	pgs    pgclientset.Interface
	ns     string
	nodes  []string
	sched  *controlplane.Scheduler
	args   map[string]any
}

type envOption func(*env)

// withArgs overrides Gang plugin args in the shipped configuration.
func withArgs(args map[string]any) envOption {
	return func(e *env) { e.args = args }
}

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &env{t: t, ctx: ctx, ns: fmt.Sprintf("t%d-%s", nsCounter.Add(1), strings.ToLower(sanitize(t.Name())))}
	for _, o := range opts {
		o(e)
	}
	var err error
	if e.client, err = kubernetes.NewForConfig(cp.Config); err != nil {
		t.Fatal(err)
	}
	if e.pgs, err = pgclientset.NewForConfig(jsonConfig()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cleanup)
	e.startScheduler()
	return e
}

// jsonConfig is the admin config for clients of CRDs, which have no protobuf.
func jsonConfig() *rest.Config {
	c := rest.CopyConfig(cp.Config)
	c.ContentType = runtime.ContentTypeJSON
	return c
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String()
}

// schedulerConfig is the shipped configuration with the test's args.
func (e *env) schedulerConfig() []byte {
	if e.args == nil {
		return manifests.SchedulerConfig
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(manifests.SchedulerConfig, &cfg); err != nil {
		e.t.Fatal(err)
	}
	for _, p := range cfg["profiles"].([]any) {
		for _, pc := range p.(map[string]any)["pluginConfig"].([]any) {
			pcm := pc.(map[string]any)
			if pcm["name"] == "LockstepGang" {
				args := pcm["args"].(map[string]any)
				for k, v := range e.args {
					args[k] = v
				}
			}
		}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) startScheduler() {
	e.t.Helper()
	if e.sched != nil {
		// Two schedulers would place every pod twice.
		e.t.Fatal("a scheduler is already running (newEnv starts one)")
	}
	s, err := cp.StartScheduler(e.ctx, e.schedulerConfig())
	if err != nil {
		e.t.Fatalf("starting scheduler: %v", err)
	}
	e.sched = s
}

func (e *env) stopScheduler() {
	if e.sched != nil {
		e.sched.Stop()
		e.sched = nil
	}
}

func (e *env) cleanup() {
	e.stopScheduler()
	ctx := context.Background()
	zero := metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}
	_ = e.client.CoreV1().Pods(e.ns).DeleteCollection(ctx, zero, metav1.ListOptions{})
	_ = e.pgs.SchedulingV1alpha1().PodGroups(e.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	for _, n := range e.nodes {
		_ = e.client.CoreV1().Nodes().Delete(ctx, n, metav1.DeleteOptions{})
	}
}

type nodeSpec struct {
	cpu, mem string
	labels   map[string]string
	taints   []v1.Taint
}

// addNodes creates count nodes named <prefix>-<i>.
func (e *env) addNodes(prefix string, count int, spec nodeSpec) []string {
	e.t.Helper()
	var names []string
	for i := range count {
		name := fmt.Sprintf("%s-%s-%d", e.ns, prefix, i)
		labels := map[string]string{v1.LabelHostname: name}
		for k, v := range spec.labels {
			labels[k] = v
		}
		res := v1.ResourceList{
			v1.ResourceCPU:    resource.MustParse(spec.cpu),
			v1.ResourceMemory: resource.MustParse(spec.mem),
			v1.ResourcePods:   resource.MustParse("110"),
		}
		node := &v1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec:       v1.NodeSpec{Taints: spec.taints},
			Status: v1.NodeStatus{
				Capacity: res, Allocatable: res,
				Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
			},
		}
		if _, err := e.client.CoreV1().Nodes().Create(e.ctx, node, metav1.CreateOptions{}); err != nil {
			e.t.Fatal(err)
		}
		e.nodes = append(e.nodes, name)
		names = append(names, name)
	}
	return names
}

func (e *env) createPodGroup(name string, minMember int32, mutate ...func(*v1alpha1.PodGroup)) *v1alpha1.PodGroup {
	e.t.Helper()
	pg := &v1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec:       v1alpha1.PodGroupSpec{MinMember: minMember},
	}
	for _, m := range mutate {
		m(pg)
	}
	out, err := e.pgs.SchedulingV1alpha1().PodGroups(e.ns).Create(e.ctx, pg, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

type podSpec struct {
	cpu, mem  string
	scheduler string
	priority  int32
	// guaranteed sets limits equal to requests (Guaranteed QoS).
	guaranteed bool
	mutate     func(*v1.Pod)
}

// createPod creates a pod; gang "" makes an ordinary pod.
func (e *env) createPod(name, gang string, spec podSpec) *v1.Pod {
	e.t.Helper()
	if spec.scheduler == "" {
		spec.scheduler = schedulerName
	}
	if spec.mem == "" {
		spec.mem = "1Gi"
	}
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns, Labels: map[string]string{}},
		Spec: v1.PodSpec{
			SchedulerName: spec.scheduler,
			Containers: []v1.Container{{
				Name:  "main",
				Image: "registry.invalid/worker:latest",
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
					v1.ResourceCPU:    resource.MustParse(spec.cpu),
					v1.ResourceMemory: resource.MustParse(spec.mem),
				}},
			}},
		},
	}
	if gang != "" {
		pod.Labels[podgroup.Label] = gang
	}
	if spec.guaranteed {
		pod.Spec.Containers[0].Resources.Limits = pod.Spec.Containers[0].Resources.Requests.DeepCopy()
	}
	if spec.priority != 0 {
		pod.Spec.PriorityClassName = e.priorityClass(spec.priority)
	}
	if spec.mutate != nil {
		spec.mutate(pod)
	}
	var out *v1.Pod
	// A PriorityClass just created may not be in the apiserver's cache yet.
	err := wait.PollUntilContextTimeout(e.ctx, 50*time.Millisecond, bindBy, true, func(ctx context.Context) (bool, error) {
		var err error
		out, err = e.client.CoreV1().Pods(e.ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil && pod.Spec.PriorityClassName != "" && strings.Contains(err.Error(), "no PriorityClass") {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// priorityClass returns the name of a PriorityClass of the given value,
// creating it if it does not exist: the apiserver sets a pod's priority
// from its class.
func (e *env) priorityClass(value int32) string {
	e.t.Helper()
	name := fmt.Sprintf("lockstep-test-%d", value)
	pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value}
	if _, err := e.client.SchedulingV1().PriorityClasses().Create(e.ctx, pc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatal(err)
	}
	return name
}

// priorityClassNever is priorityClass with preemptionPolicy: Never.
func (e *env) priorityClassNever(value int32) string {
	e.t.Helper()
	name := fmt.Sprintf("lockstep-test-%d-never", value)
	never := v1.PreemptNever
	pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value, PreemptionPolicy: &never}
	if _, err := e.client.SchedulingV1().PriorityClasses().Create(e.ctx, pc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatal(err)
	}
	return name
}

// createGang creates a PodGroup and its member pods <name>-<i>.
func (e *env) createGang(name string, minMember int32, pods int, spec podSpec) {
	e.t.Helper()
	e.createPodGroup(name, minMember)
	for i := range pods {
		e.createPod(fmt.Sprintf("%s-%d", name, i), name, spec)
	}
}

func (e *env) pods() []v1.Pod {
	e.t.Helper()
	list, err := e.client.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return list.Items
}

// bound counts bound pods per gang ("" for ordinary pods).
func (e *env) bound() map[string]int {
	out := map[string]int{}
	for _, p := range e.pods() {
		if p.Spec.NodeName != "" {
			out[p.Labels[podgroup.Label]]++
		}
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func (e *env) waitFor(what string, timeout time.Duration, cond func() bool) {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		e.t.Fatalf("timed out after %s waiting for %s; bound per gang: %v", timeout, what, e.bound())
	}
}

// waitGangBound waits until a gang has n members bound.
func (e *env) waitGangBound(gang string, n int, timeout time.Duration) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("%d members of %s bound", n, gang), timeout, func() bool { return e.bound()[gang] >= n })
}

// holdsFor checks that cond stays true for d, polling; it fails on the first
// poll where cond is false. It checks behaviour over a window, not speed.
func (e *env) holdsFor(what string, d time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !cond() {
			e.t.Fatalf("%s stopped holding; bound per gang: %v", what, e.bound())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// noPartialGangs checks that every gang has 0 or at least min members bound.
func (e *env) noPartialGangs(minOf map[string]int) func() bool {
	return func() bool {
		b := e.bound()
		for g, min := range minOf {
			if b[g] != 0 && b[g] < min {
				e.t.Logf("gang %s partially bound: %d/%d", g, b[g], min)
				return false
			}
		}
		return true
	}
}

func (e *env) deletePods(names ...string) {
	e.t.Helper()
	for _, n := range names {
		err := e.client.CoreV1().Pods(e.ns).Delete(e.ctx, n, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		if err != nil && !apierrors.IsNotFound(err) {
			e.t.Fatal(err)
		}
	}
}

// deleteGangPods deletes every pod of a gang.
func (e *env) deleteGangPods(gang string) {
	e.t.Helper()
	var names []string
	for _, p := range e.pods() {
		if p.Labels[podgroup.Label] == gang {
			names = append(names, p.Name)
		}
	}
	e.deletePods(names...)
}

// events returns the notes of Events about an object, oldest first.
func (e *env) events(kind, name string) []string {
	e.t.Helper()
	list, err := e.client.EventsV1().Events(e.ns).List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	sort.Slice(list.Items, func(i, j int) bool {
		return list.Items[i].CreationTimestamp.Before(&list.Items[j].CreationTimestamp)
	})
	var out []string
	for _, ev := range list.Items {
		if ev.Regarding.Kind == kind && ev.Regarding.Name == name {
			out = append(out, ev.Reason+": "+ev.Note)
		}
	}
	return out
}

// waitEvent waits for an Event about an object whose note contains substr.
func (e *env) waitEvent(kind, name, substr string, timeout time.Duration) {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(e.ctx, 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		for _, ev := range e.events(kind, name) {
			if strings.Contains(ev, substr) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		e.t.Fatalf("no Event on %s %s containing %q; got %q", kind, name, substr, e.events(kind, name))
	}
}

// startController runs the PodGroup status controller until the test ends.
func (e *env) startController() {
	e.t.Helper()
	e.startControllerWith(controller.Options{})
}

// startControllerWith runs the controller with options (no metrics or
// probe endpoints) until the test ends.
func (e *env) startControllerWith(opts controller.Options) {
	e.t.Helper()
	teststand.StartController(e.ctx, e.t, cp.Config, opts)
}

// setPodPhase plays the kubelet: it moves a pod to a phase.
func (e *env) setPodPhase(name string, phase v1.PodPhase) {
	e.t.Helper()
	p, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	p.Status.Phase = phase
	if _, err := e.client.CoreV1().Pods(e.ns).UpdateStatus(e.ctx, p, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// waitPodGroupStatus waits until a PodGroup's status satisfies cond.
func (e *env) waitPodGroupStatus(name, what string, cond func(v1alpha1.PodGroupStatus) bool) v1alpha1.PodGroupStatus {
	e.t.Helper()
	var last v1alpha1.PodGroupStatus
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		pg, err := e.pgs.SchedulingV1alpha1().PodGroups(e.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = pg.Status
		return cond(last), nil
	})
	if err != nil {
		e.t.Fatalf("PodGroup %s never reached %s; last status %+v", name, what, last)
	}
	return last
}

// addNRT publishes a NodeResourceTopology for a node: zones NUMA zones of
// cpuPerZone CPUs, with the given Topology Manager policy.
func (e *env) addNRT(node string, zones int, cpuPerZone string, policy string) {
	e.t.Helper()
	client, err := nrtclientset.NewForConfig(jsonConfig())
	if err != nil {
		e.t.Fatal(err)
	}
	nrt := &nrtv1alpha2.NodeResourceTopology{
		ObjectMeta: metav1.ObjectMeta{Name: node},
		Attributes: nrtv1alpha2.AttributeList{{Name: "topologyManagerPolicy", Value: policy}, {Name: "topologyManagerScope", Value: "container"}},
	}
	for i := range zones {
		q := resource.MustParse(cpuPerZone)
		nrt.Zones = append(nrt.Zones, nrtv1alpha2.Zone{
			Name: fmt.Sprintf("node-%d", i), Type: "Node",
			Resources: nrtv1alpha2.ResourceInfoList{{Name: "cpu", Capacity: q, Allocatable: q, Available: q}},
		})
	}
	if _, err := client.TopologyV1alpha2().NodeResourceTopologies().Create(e.ctx, nrt, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = client.TopologyV1alpha2().NodeResourceTopologies().Delete(context.Background(), node, metav1.DeleteOptions{})
	})
}

// nodeOf returns the node each pod is bound to.
func (e *env) nodeOf() map[string]string {
	out := map[string]string{}
	for _, p := range e.pods() {
		out[p.Name] = p.Spec.NodeName
	}
	return out
}
