//go:build linux

// Package restart checks that the scheduler survives being killed hard
// (SIGKILL) in the middle of binding a batch of gangs: a new scheduler
// process finishes every gang, leaves none partially bound, and does not
// crash on what the dead one left behind.
//
// The scheduler runs as a child process, the lockstep-scheduler binary built
// once by TestMain, against a control plane started in this process. Linux
// only: a child is tied to the test process with Pdeathsig.
//
// A few "retrying of unary invoker failed ... context canceled" warnings
// from the API server's etcd client on stderr are expected: they are the
// binding requests the kill cut off. That client logs on stderr at info
// level whatever ETCD_CLIENT_DEBUG says, so they cannot be kept out.
package restart

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgclientset "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned"
	"sigs.k8s.io/yaml"

	"github.com/lockstep-sched/lockstep/manifests"
	"github.com/lockstep-sched/lockstep/pkg/controlplane"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/cluster"
	"github.com/lockstep-sched/lockstep/test/testbin"
	"github.com/lockstep-sched/lockstep/test/testlog"
)

const schedulerName = "lockstep"

// The cluster of each kill point: every gang fits with room to spare, so
// the only thing that can keep a gang from completing is the restart.
const (
	nodeCount   = 50
	nodeCPU     = 8
	gangCount   = 48
	gangSize    = 8
	podCPU      = 1
	totalPods   = gangCount * gangSize
	killTimeout = 2 * time.Minute
	// The child schedulers' API rate: binding the batch takes about
	// totalPods/clientQPS seconds.
	clientQPS   = 100
	clientBurst = 20
	// doneTimeout bounds how long the second scheduler may take to
	// complete every gang.
	doneTimeout = 3 * time.Minute
)

var (
	cp *controlplane.ControlPlane
	// schedulerBin is the lockstep-scheduler binary TestMain built.
	schedulerBin string
	// kubeconfig is an admin kubeconfig for the child schedulers.
	kubeconfig string
)

func TestMain(m *testing.M) {
	os.Exit(testlog.Run("restart", func() int {
		dir, err := os.MkdirTemp("", "lockstep-restart-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		code := 1
		defer func() {
			if code == 0 {
				os.RemoveAll(dir)
			} else {
				fmt.Fprintf(os.Stderr, "etcd log and scheduler binary: %s\n", dir)
			}
		}()
		if schedulerBin, err = testbin.BuildScheduler(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return code
		}
		cp, err = controlplane.StartWithCRDs(context.Background(), controlplane.Options{LogDir: dir})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return code
		}
		defer cp.Stop()
		kubeconfig = filepath.Join(dir, "kubeconfig")
		if err := cp.WriteKubeconfig(kubeconfig); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return code
		}
		code = m.Run()
		return code
	}))
}

// killPoint is when the first scheduler is killed: once at least the given
// fraction of all pods is bound (the first bound pod for 0), at the first
// pod seen bound whose gang is not complete yet. Lockstep binds each gang's
// members together, so a count alone would mostly land between gangs.
type killPoint struct {
	name     string
	fraction float64
}

func (k killPoint) threshold() int {
	return max(1, int(k.fraction*totalPods))
}

func TestKillWhileBinding(t *testing.T) {
	for _, kp := range []killPoint{
		{"first-bound", 0},
		{"quarter", 0.25},
		{"half", 0.50},
		{"three-quarters", 0.75},
	} {
		t.Run(kp.name, func(t *testing.T) { runKillPoint(t, kp) })
	}
}

func runKillPoint(t *testing.T, kp killPoint) {
	e := newEnv(t)
	nodes := e.addNodes(nodeCount)
	for g := range gangCount {
		e.createGang(fmt.Sprintf("gang-%02d", g), gangSize)
	}
	tr := e.track(kp.threshold())
	if n := tr.boundCount(); n != 0 {
		t.Fatalf("%d pods bound before any scheduler ran", n)
	}

	// The first scheduler: killed hard once the kill point is reached.
	first := e.startScheduler("first")
	select {
	case <-tr.reached:
	case <-first.exited:
		t.Fatalf("the first scheduler exited before the kill point (%d of %d pods bound): %v", tr.boundCount(), totalPods, first.err)
	case <-time.After(killTimeout):
		t.Fatalf("the kill point (%d pods bound) was not reached within %s: %d of %d bound", kp.threshold(), killTimeout, tr.boundCount(), totalPods)
	}
	observed := tr.boundCount()
	first.kill(t)
	// Bindings the apiserver had already accepted may still land; a fresh
	// list is the state the second scheduler starts from.
	atKill := e.boundPods()
	if len(atKill) == 0 || len(atKill) >= totalPods {
		t.Fatalf("the kill did not happen mid-binding: %d of %d pods bound when the scheduler died "+
			"(kill point %d): the test proves nothing; make the cluster bigger or the kill point earlier",
			len(atKill), totalPods, kp.threshold())
	}
	partialAtKill := partialGangs(atKill)
	t.Logf("%s: killed with %d of %d pods bound (%d seen at the kill point), %d gangs partially bound: %v",
		kp.name, len(atKill), totalPods, observed, len(partialAtKill), partialAtKill)

	// The second scheduler must finish the job.
	second := e.startScheduler("second")
	restart := time.Now()
	select {
	case <-tr.allBound:
	case <-second.exited:
		t.Fatalf("the second scheduler exited (%v) with %d of %d pods bound; per gang: %v",
			second.err, tr.boundCount(), totalPods, gangCounts(e.boundPods()))
	case <-time.After(doneTimeout):
		t.Fatalf("not every gang completed within %s of the restart: %d of %d pods bound; partial gangs: %v",
			doneTimeout, tr.boundCount(), totalPods, partialGangs(e.boundPods()))
	}
	took := time.Since(restart)
	t.Logf("%s: all %d gangs complete %s after the restart", kp.name, gangCount, took.Round(10*time.Millisecond))

	// The final state, read from the apiserver, not the informer.
	final := e.boundPods()
	if p := partialGangs(final); len(p) > 0 {
		t.Errorf("gangs partially bound at the end: %v", p)
	}
	for g, n := range gangCounts(final) {
		if n != gangSize {
			t.Errorf("gang %s has %d of %d members bound", g, n, gangSize)
		}
	}
	if len(final) != totalPods {
		t.Errorf("%d of %d pods bound at the end", len(final), totalPods)
	}
	e.checkNodes(final, nodes)
	for pod, node := range atKill {
		if final[pod] != node {
			t.Errorf("pod %s was bound to %s at the kill and is on %q at the end", pod, node, final[pod])
		}
	}

	// The binary runs with NominatedNodeNameForExpectation off
	// (gang.FeatureGates): no member waiting at Permit was nominated.
	if n := e.nominated(); n > 0 {
		t.Errorf("%d pods carry a nominatedNodeName: the scheduler ran with NominatedNodeNameForExpectation on", n)
	}

	// The second scheduler is still up and did not report a panic.
	select {
	case <-second.exited:
		t.Errorf("the second scheduler exited: %v", second.err)
	default:
	}
	second.checkLog(t)
	second.kill(t)
}

// env is one kill point's slice of the shared control plane.
type env struct {
	t      *testing.T
	ctx    context.Context
	client kubernetes.Interface
	pgs    pgclientset.Interface
	ns     string
	nodes  []string
	dir    string
	config string
}

var nsCounter atomic.Int32

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &env{
		t: t, ctx: ctx, dir: t.TempDir(),
		ns: fmt.Sprintf("r%d-%s", nsCounter.Add(1), sanitize(t.Name())),
	}
	var err error
	if e.client, err = kubernetes.NewForConfig(cp.Config); err != nil {
		t.Fatal(err)
	}
	// CRDs have no protobuf.
	jc := rest.CopyConfig(cp.Config)
	jc.ContentType = runtime.ContentTypeJSON
	if e.pgs, err = pgclientset.NewForConfig(jc); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cleanup)
	e.config = e.writeSchedulerConfig()
	return e
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String()
}

// cleanup runs after the schedulers' own cleanups (registered later, run
// first), so nothing binds while the objects go.
func (e *env) cleanup() {
	ctx := context.Background()
	zero := metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}
	_ = e.client.CoreV1().Pods(e.ns).DeleteCollection(ctx, zero, metav1.ListOptions{})
	_ = e.pgs.SchedulingV1alpha1().PodGroups(e.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	for _, n := range e.nodes {
		_ = e.client.CoreV1().Nodes().Delete(ctx, n, metav1.DeleteOptions{})
	}
	// No namespace controller runs here: the namespace stays Terminating,
	// empty, which is harmless.
	_ = e.client.CoreV1().Namespaces().Delete(ctx, e.ns, metav1.DeleteOptions{})
}

// writeSchedulerConfig writes the shipped configuration adapted as
// controlplane.StartScheduler adapts it: the client connection points at the
// control plane and leader election is off. The client is paced, unlike
// the shipped configuration's: at its 5000 QPS the whole batch binds in
// well under a second, faster than a watch reports it, and a kill aimed at
// a quarter of the pods lands after nearly all of them.
func (e *env) writeSchedulerConfig() string {
	return e.schedulerConfig("scheduler-config.yaml", kubeconfig, "", clientQPS)
}

// schedulerConfig writes the shipped configuration as writeSchedulerConfig
// does, to file name, with the client going through kubeconfigPath at qps;
// with a lease name, leader election stays on, with the shipped settings,
// on that Lease in the shipped namespace.
func (e *env) schedulerConfig(name, kubeconfigPath, lease string, qps int) string {
	e.t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal(manifests.SchedulerConfig, &cfg); err != nil {
		e.t.Fatal(err)
	}
	cfg["clientConnection"] = map[string]any{"kubeconfig": kubeconfigPath, "qps": qps, "burst": clientBurst}
	if lease == "" {
		cfg["leaderElection"] = map[string]any{"leaderElect": false}
	} else {
		le, ok := cfg["leaderElection"].(map[string]any)
		if !ok || le["leaderElect"] != true {
			e.t.Fatalf("the shipped configuration does not elect a leader: %v", cfg["leaderElection"])
		}
		le["resourceName"] = lease
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// addNodes creates count ready nodes of nodeCPU CPUs.
func (e *env) addNodes(count int) map[string]bool {
	e.t.Helper()
	names := map[string]bool{}
	for i := range count {
		name := fmt.Sprintf("%s-node-%d", e.ns, i)
		node := cluster.Node{Name: name, CPUs: nodeCPU, Memory: resource.MustParse("64Gi")}.NodeObject()
		if _, err := e.client.CoreV1().Nodes().Create(e.ctx, node, metav1.CreateOptions{}); err != nil {
			e.t.Fatal(err)
		}
		e.nodes = append(e.nodes, name)
		names[name] = true
	}
	return names
}

// createGang creates a PodGroup of minMember size and its size member pods
// <name>-<i>, each asking for podCPU CPUs.
func (e *env) createGang(name string, size int) {
	e.t.Helper()
	pg := &v1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec:       v1alpha1.PodGroupSpec{MinMember: int32(size)},
	}
	if _, err := e.pgs.SchedulingV1alpha1().PodGroups(e.ns).Create(e.ctx, pg, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	for i := range size {
		pod := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("%s-%d", name, i), Namespace: e.ns,
				Labels: map[string]string{podgroup.Label: name},
			},
			Spec: v1.PodSpec{
				SchedulerName: schedulerName,
				Containers: []v1.Container{{
					Name:  "main",
					Image: "registry.invalid/worker:latest",
					Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
						v1.ResourceCPU:    *resource.NewQuantity(podCPU, resource.DecimalSI),
						v1.ResourceMemory: resource.MustParse("1Gi"),
					}},
				}},
			},
		}
		if _, err := e.client.CoreV1().Pods(e.ns).Create(e.ctx, pod, metav1.CreateOptions{}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// boundPods lists the namespace's pods and returns the node of each bound one.
func (e *env) boundPods() map[string]string {
	e.t.Helper()
	var list *v1.PodList
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		list, err = e.client.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{})
		return err == nil, nil
	})
	if err != nil {
		e.t.Fatalf("listing pods: %v", err)
	}
	out := map[string]string{}
	for _, p := range list.Items {
		if p.Spec.NodeName != "" {
			out[p.Name] = p.Spec.NodeName
		}
	}
	return out
}

// nominated counts the pods with a nominated node.
func (e *env) nominated() int {
	e.t.Helper()
	list, err := e.client.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatalf("listing pods: %v", err)
	}
	n := 0
	for _, p := range list.Items {
		if p.Status.NominatedNodeName != "" {
			n++
		}
	}
	return n
}

// checkNodes checks that every pod is bound to one of the test's nodes, that
// those nodes still exist, and that no node holds more than it has.
func (e *env) checkNodes(bound map[string]string, ours map[string]bool) {
	e.t.Helper()
	list, err := e.client.CoreV1().Nodes().List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	exists := map[string]bool{}
	for _, n := range list.Items {
		exists[n.Name] = true
	}
	perNode := map[string]int{}
	for pod, node := range bound {
		if !exists[node] || !ours[node] {
			e.t.Errorf("pod %s is bound to %q, which is not one of the test's nodes", pod, node)
		}
		perNode[node] += podCPU
	}
	for node, cpu := range perNode {
		if cpu > nodeCPU {
			e.t.Errorf("node %s holds %d CPUs of pods, it has %d", node, cpu, nodeCPU)
		}
	}
}

// gangOf is the gang of a member pod named <gang>-<i>.
func gangOf(pod string) string {
	return pod[:strings.LastIndex(pod, "-")]
}

// gangCounts counts bound members per gang.
func gangCounts(bound map[string]string) map[string]int {
	out := map[string]int{}
	for pod := range bound {
		out[gangOf(pod)]++
	}
	return out
}

// partialGangs lists the gangs with some but not all members bound, as
// "gang=bound/size".
func partialGangs(bound map[string]string) []string {
	var out []string
	for g, n := range gangCounts(bound) {
		if n > 0 && n < gangSize {
			out = append(out, fmt.Sprintf("%s=%d/%d", g, n, gangSize))
		}
	}
	sort.Strings(out)
	return out
}

// tracker follows the namespace's pods with an informer and counts bound
// ones. reached closes once threshold pods are bound, allBound once all are.
type tracker struct {
	mu        sync.Mutex
	bound     map[string]string
	perGang   map[string]int
	threshold int
	fired     bool
	reached   chan struct{}
	allBound  chan struct{}
}

func (e *env) track(threshold int) *tracker {
	e.t.Helper()
	tr := &tracker{bound: map[string]string{}, perGang: map[string]int{}, threshold: threshold, reached: make(chan struct{}), allBound: make(chan struct{})}
	factory := informers.NewSharedInformerFactoryWithOptions(e.client, 0, informers.WithNamespace(e.ns))
	inf := factory.Core().V1().Pods().Informer()
	see := func(obj any) {
		if p, ok := obj.(*v1.Pod); ok && p.Spec.NodeName != "" {
			tr.see(p.Name, p.Spec.NodeName)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    see,
		UpdateFunc: func(_, obj any) { see(obj) },
	}); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	factory.Start(ctx.Done())
	e.t.Cleanup(func() {
		cancel()
		factory.Shutdown()
	})
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		e.t.Fatal("pod informer did not sync")
	}
	return tr
}

func (tr *tracker) see(pod, node string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if _, ok := tr.bound[pod]; ok {
		return
	}
	tr.bound[pod] = node
	n := len(tr.bound)
	g := gangOf(pod)
	tr.perGang[g]++
	if !tr.fired && n >= tr.threshold && tr.perGang[g] < gangSize {
		tr.fired = true
		close(tr.reached)
	}
	if n == totalPods {
		close(tr.allBound)
	}
}

func (tr *tracker) boundCount() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.bound)
}

// child is a lockstep-scheduler process.
type child struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error // set before exited closes
	killed atomic.Bool
}

// startScheduler starts a scheduler process with the env's configuration;
// its output goes to a file whose tail the test log gets if the test fails.
func (e *env) startScheduler(name string) *child {
	e.t.Helper()
	return e.startSchedulerWith(name, e.config)
}

// startSchedulerWith starts a scheduler process with a configuration file.
func (e *env) startSchedulerWith(name, config string) *child {
	e.t.Helper()
	c := &child{name: name, log: filepath.Join(e.dir, name+".log"), exited: make(chan struct{})}
	f, err := os.Create(c.log)
	if err != nil {
		e.t.Fatal(err)
	}
	c.cmd = exec.Command(schedulerBin, "--config="+config, "--secure-port=0", "--v=2")
	c.cmd.Stdout, c.cmd.Stderr = f, f
	// Should this test process die first, the kernel kills the child.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		f.Close()
		e.t.Fatalf("starting the %s scheduler: %v", name, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		f.Close()
		close(c.exited)
	}()
	e.t.Cleanup(func() {
		c.kill(e.t)
		if e.t.Failed() {
			c.logTail(e.t)
		}
	})
	return c
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill(t *testing.T) {
	t.Helper()
	select {
	case <-c.exited:
		return
	default:
	}
	c.killed.Store(true)
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Logf("killing the %s scheduler: %v", c.name, err)
	}
	select {
	case <-c.exited:
	case <-time.After(time.Minute):
		t.Fatalf("the %s scheduler did not die within a minute of SIGKILL", c.name)
	}
}

// checkLog fails the test if the process reported a panic or a fatal error.
func (c *child) checkLog(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile(c.log)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"panic:", "fatal error:"} {
		if i := bytes.Index(data, []byte(bad)); i >= 0 {
			t.Errorf("the %s scheduler's log reports %q:\n%s", c.name, bad, excerpt(data[i:], 200))
		}
	}
}

// logTail puts the end of the process's log in the test log: from the first
// panic if there is one, else the last lines.
func (c *child) logTail(t *testing.T) {
	data, err := os.ReadFile(c.log)
	if err != nil {
		t.Logf("%s scheduler log: %v", c.name, err)
		return
	}
	if i := bytes.Index(data, []byte("panic:")); i >= 0 {
		t.Logf("%s scheduler log from its panic:\n%s", c.name, excerpt(data[i:], 200))
		return
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	from := max(0, len(lines)-80)
	t.Logf("%s scheduler log, last %d of %d lines (killed by the test: %v, exit: %v):\n%s",
		c.name, len(lines)-from, len(lines), c.killed.Load(), c.err, strings.Join(lines[from:], "\n"))
}

// excerpt is the first n lines of data.
func excerpt(data []byte, n int) string {
	lines := strings.SplitN(string(data), "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
