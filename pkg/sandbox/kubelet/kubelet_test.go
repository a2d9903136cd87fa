package kubelet

import (
	"context"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/lockstep-sched/lockstep/pkg/numa"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/workload"
)

type fakeAdmitter struct {
	// reject names the pod it rejects.
	reject   string
	mu       sync.Mutex
	admitted map[types.UID]string
	released map[types.UID]bool
}

func (f *fakeAdmitter) Admit(node string, pod *v1.Pod) ([]string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if pod.Name == f.reject {
		return nil, numa.ReasonTopologyAffinity
	}
	f.admitted[pod.UID] = node
	return []string{"node-0"}, ""
}

func (f *fakeAdmitter) Release(uid types.UID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released[uid] = true
}

func (f *fakeAdmitter) state(uid types.UID) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.admitted[uid], f.released[uid]
}

func TestPodRunsThenSucceeds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset()
	adm := &fakeAdmitter{reject: "misaligned", admitted: map[types.UID]string{}, released: map[types.UID]bool{}}
	k := New(client, Options{Nodes: []string{"n1"}, DefaultRunTime: time.Hour, Admitter: adm})
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()

	mk := func(name, node, runSeconds string) {
		t.Helper()
		pod := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name)},
			Spec:       v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c", Image: "i"}}},
			Status:     v1.PodStatus{Phase: v1.PodPending},
		}
		if runSeconds != "" {
			pod.Annotations = map[string]string{workload.RunSecondsAnnotation: runSeconds}
		}
		if _, err := client.CoreV1().Pods("ns").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	phase := func(name string) v1.PodPhase {
		p, err := client.CoreV1().Pods("ns").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return p.Status.Phase
	}
	waitPhase := func(name string, want v1.PodPhase) *v1.Pod {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			return phase(name) == want, nil
		})
		if err != nil {
			t.Fatalf("pod %s never %s; it is %q", name, want, phase(name))
		}
		p, _ := client.CoreV1().Pods("ns").Get(ctx, name, metav1.GetOptions{})
		return p
	}

	mk("short", "n1", "0.2")
	mk("long", "n1", "")
	mk("elsewhere", "other-node", "0")

	p := waitPhase("short", v1.PodRunning)
	if p.Status.StartTime == nil || len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Running == nil {
		t.Errorf("running status = %+v", p.Status)
	}
	ready := false
	for _, c := range p.Status.Conditions {
		ready = ready || (c.Type == v1.PodReady && c.Status == v1.ConditionTrue)
	}
	if !ready {
		t.Errorf("running pod is not Ready: %+v", p.Status.Conditions)
	}
	if node, _ := adm.state("short"); node != "n1" {
		t.Errorf("short admitted on %q, want n1", node)
	}

	p = waitPhase("short", v1.PodSucceeded)
	if cs := p.Status.ContainerStatuses[0]; cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
		t.Errorf("succeeded container status = %+v", cs)
	}
	if _, released := adm.state("short"); !released {
		t.Error("short's resources were not released")
	}

	waitPhase("long", v1.PodRunning)
	// A pod kubelet rejects fails at once, as kubelet reports it.
	mk("misaligned", "n1", "")
	p = waitPhase("misaligned", v1.PodFailed)
	if p.Status.Reason != numa.ReasonTopologyAffinity || p.Status.Message != "Pod was rejected: Resources cannot be allocated with Topology locality" || p.Status.StartTime != nil {
		t.Errorf("rejected pod's status = %+v", p.Status)
	}
	if got := phase("elsewhere"); got != v1.PodPending {
		t.Errorf("pod on a node the kubelet does not play is %q, want Pending", got)
	}

	// A deleted pod is forgotten and gives its resources back.
	if err := client.CoreV1().Pods("ns").Delete(ctx, "long", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		_, released := adm.state("long")
		return released, nil
	})
	if err != nil {
		t.Error("deleted pod's resources were not released")
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
