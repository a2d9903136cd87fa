// Package kubelet plays the kubelet of every simulated node: a pod bound to
// one of them starts running at once and succeeds after its run time. It
// writes pod status through the status subresource, as a kubelet does, so
// that the PodGroup controller and the scheduler see ordinary pods.
package kubelet

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/lockstep-sched/lockstep/pkg/numa"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/workload"
)

// Admitter hands a starting pod its resources on the node, or says why
// kubelet rejects it, and takes them back when it ends; the sandbox's CPU
// manager implements it.
type Admitter interface {
	Admit(node string, pod *v1.Pod) (zones []string, reason string)
	Release(uid types.UID)
}

// Options configure a Kubelet.
type Options struct {
	// Nodes are the nodes this kubelet plays; pods on others are left alone.
	Nodes []string
	// DefaultRunTime is how long a pod without the run-seconds annotation
	// runs.
	DefaultRunTime time.Duration
	// Workers bound how many pods are updated at once; 4 when zero.
	Workers int
	// Admitter, when set, is told about every pod that starts and ends.
	Admitter Admitter
	// Clock is the real clock when nil; tests pass a fake one.
	Clock clock.WithTicker
	// AdmitAfter, when set, holds a bound pod back this long before it is
	// admitted: tests use it to admit pods in an order of their choosing,
	// as a real kubelet may.
	AdmitAfter func(*v1.Pod) time.Duration
}

// Kubelet runs pods on the simulated nodes.
type Kubelet struct {
	client   kubernetes.Interface
	opts     Options
	nodes    sets.Set[string]
	clock    clock.WithTicker
	queue    workqueue.TypedRateLimitingInterface[string]
	lister   corelisters.PodLister
	informer cache.SharedIndexInformer

	mu sync.Mutex
	// started is when each pod started, to the millisecond; the pod's own
	// startTime is rounded to the second.
	started map[string]startedPod
	// held are the pods AdmitAfter has held back once.
	held sets.Set[types.UID]
}

type startedPod struct {
	uid types.UID
	at  time.Time
}

// New returns a Kubelet; Run starts it.
func New(client kubernetes.Interface, opts Options) *Kubelet {
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			// Only bound pods concern a kubelet.
			o.FieldSelector = "spec.nodeName!="
		}))
	podInformer := factory.Core().V1().Pods()
	k := &Kubelet{
		client:   client,
		opts:     opts,
		nodes:    sets.New(opts.Nodes...),
		clock:    opts.Clock,
		lister:   podInformer.Lister(),
		informer: podInformer.Informer(),
		started:  map[string]startedPod{},
		held:     sets.New[types.UID](),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "sandbox-kubelet", Clock: opts.Clock}),
	}
	return k
}

// Run plays the kubelet until ctx ends.
func (k *Kubelet) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithName("sandbox-kubelet")
	ctx = klog.NewContext(ctx, logger)
	defer utilruntime.HandleCrash()
	defer k.queue.ShutDown()

	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			k.queue.Add(key)
		}
	}
	if _, err := k.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return fmt.Errorf("watching pods: %w", err)
	}
	go k.informer.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), k.informer.HasSynced) {
		return ctx.Err()
	}
	logger.V(1).Info("Sandbox kubelet started", "nodes", k.nodes.Len(), "workers", k.opts.Workers)

	var wg sync.WaitGroup
	for range k.opts.Workers {
		wg.Go(func() {
			wait.UntilWithContext(ctx, k.work, time.Second)
		})
	}
	<-ctx.Done()
	k.queue.ShutDown()
	wg.Wait()
	return nil
}

func (k *Kubelet) work(ctx context.Context) {
	for {
		key, quit := k.queue.Get()
		if quit {
			return
		}
		err := k.sync(ctx, key)
		switch {
		case err == nil:
			k.queue.Forget(key)
		case ctx.Err() != nil:
			// Shutting down: the API server may already be gone.
		default:
			klog.FromContext(ctx).V(2).Info("Retrying pod", "pod", key, "err", err)
			k.queue.AddRateLimited(key)
		}
		k.queue.Done(key)
	}
}

// sync moves one pod along: Pending → Running → Succeeded.
func (k *Kubelet) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := k.lister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		k.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	if !k.nodes.Has(pod.Spec.NodeName) {
		return nil
	}
	if s, ok := k.startedAt(key); ok && s.uid != pod.UID {
		// A new pod took the name of one we ran.
		k.forget(key)
	}
	logger := klog.FromContext(ctx).WithValues("pod", klog.KObj(pod), "node", pod.Spec.NodeName)

	if pod.DeletionTimestamp != nil {
		// The containers "stop" at once; finish the deletion as a kubelet
		// does once they have.
		k.release(pod.UID)
		err := k.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0),
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	}

	switch pod.Status.Phase {
	case v1.PodSucceeded, v1.PodFailed:
		k.release(pod.UID)
		return nil
	case v1.PodRunning:
		s, ok := k.startedAt(key)
		if !ok {
			// Started before this kubelet (a restart): trust the pod.
			s = startedPod{uid: pod.UID, at: k.clock.Now()}
			if pod.Status.StartTime != nil {
				s.at = pod.Status.StartTime.Time
			}
			k.setStarted(key, s)
		}
		left := workload.RunTime(pod, k.opts.DefaultRunTime) - k.clock.Since(s.at)
		if left > 0 {
			k.queue.AddAfter(key, left)
			return nil
		}
		// The containers have exited: their CPUs are free before the
		// status says so, as with kubelet, so that nothing that sees the pod
		// Succeeded finds its CPUs still taken. Releasing twice (the
		// update failed and is retried) is harmless.
		k.release(pod.UID)
		if _, err := k.client.CoreV1().Pods(ns).UpdateStatus(ctx, succeeded(pod, k.clock.Now()), metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("marking pod succeeded: %w", err)
		}
		logger.V(2).Info("Pod succeeded", "ran", k.clock.Since(s.at))
		return nil
	default:
		if k.opts.AdmitAfter != nil && k.holdBack(pod.UID) {
			if d := k.opts.AdmitAfter(pod); d > 0 {
				k.queue.AddAfter(key, d)
				return nil
			}
		}
		now := k.clock.Now()
		zones, reason := []string(nil), ""
		if k.opts.Admitter != nil {
			zones, reason = k.opts.Admitter.Admit(pod.Spec.NodeName, pod)
		}
		if reason != "" {
			if _, err := k.client.CoreV1().Pods(ns).UpdateStatus(ctx, rejected(pod, reason), metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("marking pod rejected: %w", err)
			}
			logger.Info("Pod rejected at admission", "reason", reason)
			return nil
		}
		if _, err := k.client.CoreV1().Pods(ns).UpdateStatus(ctx, running(pod, now), metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("marking pod running: %w", err)
		}
		k.setStarted(key, startedPod{uid: pod.UID, at: now})
		k.queue.AddAfter(key, workload.RunTime(pod, k.opts.DefaultRunTime))
		logger.V(2).Info("Pod running", "numaZones", zones)
		return nil
	}
}

// holdBack reports whether the pod has not been held back yet, and marks it.
func (k *Kubelet) holdBack(uid types.UID) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.held.Has(uid) {
		return false
	}
	k.held.Insert(uid)
	return true
}

func (k *Kubelet) startedAt(key string) (startedPod, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s, ok := k.started[key]
	return s, ok
}

func (k *Kubelet) setStarted(key string, s startedPod) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.started[key] = s
}

// release gives a pod's resources back; the start time stays until the pod
// is deleted, so a late event does not restart its clock.
func (k *Kubelet) release(uid types.UID) {
	if k.opts.Admitter != nil {
		k.opts.Admitter.Release(uid)
	}
}

// forget drops everything known about a deleted pod.
func (k *Kubelet) forget(key string) {
	k.mu.Lock()
	s, ok := k.started[key]
	delete(k.started, key)
	k.mu.Unlock()
	if ok && k.opts.Admitter != nil {
		k.opts.Admitter.Release(s.uid)
	}
}

// running is the status of a pod whose containers all started at now.
func running(pod *v1.Pod, now time.Time) *v1.Pod {
	p := pod.DeepCopy()
	t := metav1.NewTime(now)
	p.Status.Phase = v1.PodRunning
	p.Status.StartTime = &t
	for _, c := range []v1.PodConditionType{v1.PodReadyToStartContainers, v1.PodInitialized, v1.ContainersReady, v1.PodReady} {
		setCondition(&p.Status, v1.PodCondition{Type: c, Status: v1.ConditionTrue, LastTransitionTime: t})
	}
	p.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, v1.ContainerStatus{
			Name:    c.Name,
			Image:   c.Image,
			Ready:   true,
			Started: ptr.To(true),
			State:   v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: t}},
		})
	}
	return p
}

// rejected is the status kubelet gives a pod it refuses at admission: it
// never starts.
func rejected(pod *v1.Pod, reason string) *v1.Pod {
	p := pod.DeepCopy()
	p.Status.Phase = v1.PodFailed
	p.Status.Reason = reason
	p.Status.Message = "Pod was rejected: " + admissionMessages[reason]
	return p
}

// admissionMessages are kubelet's words for its admission failures.
var admissionMessages = map[string]string{
	numa.ReasonTopologyAffinity: "Resources cannot be allocated with Topology locality",
	numa.ReasonUnexpected:       "Allocate failed due to not enough cpus available to satisfy request, which is unexpected",
}

// succeeded is the status of a pod whose containers all exited 0 at now.
func succeeded(pod *v1.Pod, now time.Time) *v1.Pod {
	p := pod.DeepCopy()
	t := metav1.NewTime(now)
	p.Status.Phase = v1.PodSucceeded
	for _, c := range []v1.PodConditionType{v1.ContainersReady, v1.PodReady} {
		setCondition(&p.Status, v1.PodCondition{Type: c, Status: v1.ConditionFalse, Reason: "PodCompleted", LastTransitionTime: t})
	}
	setCondition(&p.Status, v1.PodCondition{Type: v1.PodReadyToStartContainers, Status: v1.ConditionFalse, LastTransitionTime: t})
	for i := range p.Status.ContainerStatuses {
		cs := &p.Status.ContainerStatuses[i]
		started := t
		if cs.State.Running != nil {
			started = cs.State.Running.StartedAt
		}
		cs.Ready, cs.Started = false, ptr.To(false)
		cs.State = v1.ContainerState{Terminated: &v1.ContainerStateTerminated{
			ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: t,
		}}
	}
	return p
}

// setCondition replaces the condition of the same type, keeping its
// transition time when the status did not change.
func setCondition(s *v1.PodStatus, c v1.PodCondition) {
	for i := range s.Conditions {
		if s.Conditions[i].Type != c.Type {
			continue
		}
		if s.Conditions[i].Status == c.Status {
			c.LastTransitionTime = s.Conditions[i].LastTransitionTime
		}
		s.Conditions[i] = c
		return
	}
	s.Conditions = append(s.Conditions, c)
}
