package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/controller"
	"github.com/lockstep-sched/lockstep/pkg/controlplane"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

func phaseIs(p v1alpha1.PodGroupPhase) func(v1alpha1.PodGroupStatus) bool {
	return func(s v1alpha1.PodGroupStatus) bool { return s.Phase == p }
}

// The controller keeps phase, counts and scheduleStartTime true through a
// gang's life, with the kubelet's part played by the test.
func TestControllerTracksGangLifecycle(t *testing.T) {
	e := newEnv(t)
	e.startController()
	e.addNodes("n", 2, nodeSpec{cpu: "8", mem: "32Gi"})
	e.createPodGroup("job", 3)
	for i := range 2 {
		e.createPod(fmt.Sprintf("job-%d", i), "job", podSpec{cpu: "2"})
	}
	st := e.waitPodGroupStatus("job", "Pending", phaseIs(v1alpha1.PodGroupPending))
	if !st.ScheduleStartTime.IsZero() {
		t.Fatalf("scheduleStartTime set before anything was scheduled: %v", st.ScheduleStartTime)
	}
	e.createPod("job-2", "job", podSpec{cpu: "2"})
	e.waitGangBound("job", 3, bindBy)
	st = e.waitPodGroupStatus("job", "Scheduled", phaseIs(podgroup.PhaseScheduled))
	start := st.ScheduleStartTime
	if start.IsZero() {
		t.Fatal("scheduleStartTime not set once the gang was scheduled")
	}

	for i := range 3 {
		e.setPodPhase(fmt.Sprintf("job-%d", i), v1.PodRunning)
	}
	st = e.waitPodGroupStatus("job", "Running with 3 running", func(s v1alpha1.PodGroupStatus) bool {
		return s.Phase == v1alpha1.PodGroupRunning && s.Running == 3
	})
	for i := range 3 {
		e.setPodPhase(fmt.Sprintf("job-%d", i), v1.PodSucceeded)
	}
	st = e.waitPodGroupStatus("job", "Finished with 3 succeeded", func(s v1alpha1.PodGroupStatus) bool {
		return s.Phase == v1alpha1.PodGroupFinished && s.Succeeded == 3 && s.Running == 0
	})
	if !st.ScheduleStartTime.Equal(&start) {
		t.Errorf("scheduleStartTime moved from %v to %v", start, st.ScheduleStartTime)
	}
	e.waitEvent("PodGroup", "job", "Finished", 30*time.Second)

	// A member failing below the quorum fails the gang.
	e.createGang("flaky", 2, 2, podSpec{cpu: "1"})
	e.waitGangBound("flaky", 2, bindBy)
	e.setPodPhase("flaky-0", v1.PodRunning)
	e.setPodPhase("flaky-1", v1.PodFailed)
	e.waitPodGroupStatus("flaky", "Failed", func(s v1alpha1.PodGroupStatus) bool {
		return s.Phase == v1alpha1.PodGroupFailed && s.Failed == 1 && s.Running == 1
	})
}

// Disruption on the real apiserver: two running gangs each lose a member.
// The gang in mode All has its other members evicted through the Eviction
// API, once the PodDisruptionBudget that blocks it is gone; the gang in
// mode Single keeps its members. Both are reported and marked incomplete.
func TestDisruptedGangs(t *testing.T) {
	e := newEnv(t)
	e.startController()
	e.addNodes("n", 2, nodeSpec{cpu: "8", mem: "32Gi"})
	mode := func(m string) func(*v1alpha1.PodGroup) {
		return func(pg *v1alpha1.PodGroup) {
			pg.Annotations = map[string]string{podgroup.AnnotationDisruptionMode: m}
		}
	}
	for _, g := range []string{"all", "single"} {
		e.createPodGroup(g, 3, mode(map[string]string{"all": "All", "single": "Single"}[g]))
		for i := range 3 {
			e.createPod(fmt.Sprintf("%s-%d", g, i), g, podSpec{cpu: "1"})
		}
		e.waitGangBound(g, 3, bindBy)
		for i := range 3 {
			e.setPodPhase(fmt.Sprintf("%s-%d", g, i), v1.PodRunning)
		}
		e.waitPodGroupStatus(g, "Running", phaseIs(v1alpha1.PodGroupRunning))
	}
	// No disruption controller runs here, so any budget over the gang's
	// pods refuses every eviction until it is deleted.
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "all", Namespace: e.ns},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: ptr.To(intstr.FromInt32(3)),
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{podgroup.Label: "all"}},
		},
	}
	if _, err := e.client.PolicyV1().PodDisruptionBudgets(e.ns).Create(e.ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	e.setPodPhase("all-1", v1.PodFailed)
	e.setPodPhase("single-1", v1.PodFailed)
	e.waitEvent("PodGroup", "all", "disruption mode All: evicting the 2 remaining members", 30*time.Second)
	e.waitEvent("PodGroup", "single", "disruption mode Single: the remaining members keep running", 30*time.Second)
	e.waitEvent("PodGroup", "all", "not evicted yet", 30*time.Second)
	for _, g := range []string{"all", "single"} {
		pg, err := e.pgs.SchedulingV1alpha1().PodGroups(e.ns).Get(e.ctx, g, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(pg.Annotations[podgroup.AnnotationIncomplete], "2 of 3 members left (member "+g+"-1 failed)") {
			t.Errorf("%s: annotation %s = %q", g, podgroup.AnnotationIncomplete, pg.Annotations[podgroup.AnnotationIncomplete])
		}
	}
	if n := len(e.evicted("all")); n != 0 {
		t.Fatalf("%d members evicted through a PodDisruptionBudget that forbids it", n)
	}

	if err := e.client.PolicyV1().PodDisruptionBudgets(e.ns).Delete(e.ctx, "all", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the All gang's remaining members evicted", 30*time.Second, func() bool {
		got := e.evicted("all")
		return len(got) == 2 && got["all-0"] && got["all-2"]
	})
	if got := e.evicted("single"); len(got) != 0 {
		t.Errorf("members of the Single gang evicted: %v", got)
	}
}

// evicted names the members of gang that are gone or going.
func (e *env) evicted(gang string) map[string]bool {
	e.t.Helper()
	out := map[string]bool{}
	for i := range 3 {
		name := fmt.Sprintf("%s-%d", gang, i)
		p, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && p.DeletionTimestamp != nil) {
			out[name] = true
		}
	}
	return out
}

// A member whose binding the apiserver refuses (a ValidatingAdmissionPolicy
// on pods/binding), after its siblings were bound: the scheduler retries it
// with its place held until the gang's timeout and then reports the gang
// incomplete; the controller then hands the partial gang to its disruption
// mode, which in mode All evicts every member so that the job can restart
// it whole. Nothing is left partial without an answer.
func TestRefusedBindingEndsInDisruption(t *testing.T) {
	e := newEnv(t)
	e.denyBindings("-denied")
	e.startControllerWith(controller.Options{PartialGrace: time.Second})
	e.addNodes("n", 2, nodeSpec{cpu: "8", mem: "32Gi"})
	e.createPodGroup("job", 4, func(pg *v1alpha1.PodGroup) {
		pg.Spec.ScheduleTimeoutSeconds = ptr.To[int32](3)
		pg.Annotations = map[string]string{podgroup.AnnotationDisruptionMode: "All"}
	})
	names := []string{"job-0", "job-1", "job-2", "job-denied"}
	for _, n := range names {
		e.createPod(n, "job", podSpec{cpu: "1"})
	}
	e.waitGangBound("job", 3, bindBy)
	e.waitEvent("PodGroup", "job", "member job-denied failed to bind", 30*time.Second)
	e.waitEvent("PodGroup", "job", "[job-denied] did not bind within 3s", 30*time.Second)
	e.waitEvent("PodGroup", "job", "disruption mode All: evicting the 4 remaining members", 30*time.Second)
	e.waitFor("every member evicted", 30*time.Second, func() bool {
		for _, n := range names {
			p, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, n, metav1.GetOptions{})
			if err == nil && p.DeletionTimestamp == nil {
				return false
			}
		}
		return true
	})
}

// denyBindings makes the apiserver refuse the binding of this namespace's
// pods whose name ends with suffix, and waits until it does.
func (e *env) denyBindings(suffix string) {
	e.t.Helper()
	e.denyCreate("pods/binding", suffix, "binding refused by the test", func(probe string) error {
		return e.client.CoreV1().Pods(e.ns).Bind(e.ctx, &v1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: probe},
			Target:     v1.ObjectReference{Kind: "Node", Name: "no-such-node"},
		}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	})
}

// denyCreate makes the apiserver refuse creating a pod subresource for
// this namespace's pods whose name ends with suffix, with message, and
// waits until try (a dry run on a probe pod of that name) is refused.
func (e *env) denyCreate(subresource, suffix, message string, try func(probe string) error) {
	e.t.Helper()
	name := "deny-" + strings.ReplaceAll(subresource, "/", "-") + "-" + e.ns
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": e.ns}},
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{subresource}},
				}}},
			},
			Validations: []admissionregistrationv1.Validation{{
				Expression: fmt.Sprintf("!object.metadata.name.endsWith(%q)", suffix),
				Message:    message,
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	api := e.client.AdmissionregistrationV1()
	if _, err := api.ValidatingAdmissionPolicies().Create(e.ctx, policy, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := api.ValidatingAdmissionPolicyBindings().Create(e.ctx, binding, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = api.ValidatingAdmissionPolicyBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = api.ValidatingAdmissionPolicies().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	// The policy takes effect when the apiserver has loaded it: a probe
	// pod no scheduler serves is tried until it is refused.
	probe := e.createPod("probe"+suffix, "", podSpec{cpu: "1m", scheduler: "nobody"})
	e.waitFor(subresource+" policy in force", 30*time.Second, func() bool {
		err := try(probe.Name)
		return err != nil && strings.Contains(err.Error(), message)
	})
	e.deletePods(probe.Name)
}

// Two controller replicas with leader election: the one that waits writes
// nothing (no status, no Event) while it sees the same gangs change, and
// takes over when the leader goes.
func TestControllerStandbyWritesNothing(t *testing.T) {
	e := newEnv(t)
	e.ensureNamespace("lockstep-system")
	start := func(name string) (context.CancelFunc, *controlplane.RequestCounter) {
		counter := controlplane.NewRequestCounter()
		kc := filepath.Join(t.TempDir(), name+".kubeconfig")
		if err := cp.CountingKubeconfig(e.ctx, counter, kc, ""); err != nil {
			t.Fatal(err)
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", kc)
		if err != nil {
			t.Fatal(err)
		}
		mgr, err := controller.NewManager(cfg, controller.Options{MetricsBindAddress: "0", LeaderElection: true, LeaderElectionNamespace: "lockstep-system"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan error, 1)
		go func() { done <- mgr.Start(ctx) }()
		stop := func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		t.Cleanup(func() {
			select {
			case <-ctx.Done():
			default:
				stop()
			}
		})
		if name == "leader" {
			// Wait for it to lead before the standby starts.
			e.waitFor("the first replica leads", 30*time.Second, func() bool {
				return counter.Uses()["update coordination.k8s.io/leases"] > 0
			})
		}
		return stop, counter
	}
	stopLeader, _ := start("leader")
	_, standby := start("standby")
	e.addNodes("n", 1, nodeSpec{cpu: "8", mem: "32Gi"})
	e.createGang("first", 2, 2, podSpec{cpu: "1"})
	e.waitGangBound("first", 2, bindBy)
	e.waitPodGroupStatus("first", "Scheduled", phaseIs(podgroup.PhaseScheduled))
	e.waitEvent("PodGroup", "first", "2/2 members scheduled", 30*time.Second)
	writes := func() int64 {
		n := standby.Writes()
		return n - standby.Uses()["create coordination.k8s.io/leases"] - standby.Uses()["update coordination.k8s.io/leases"]
	}
	if n := writes(); n != 0 {
		t.Fatalf("the standby wrote %d times while not leading: %v", n, standby.Uses())
	}
	stopLeader()
	e.createGang("second", 2, 2, podSpec{cpu: "1"})
	e.waitPodGroupStatus("second", "Scheduled after the takeover", phaseIs(podgroup.PhaseScheduled))
	if writes() == 0 {
		t.Fatal("the standby took over but wrote no status")
	}
}

func (e *env) ensureNamespace(name string) {
	e.t.Helper()
	_, err := e.client.CoreV1().Namespaces().Create(e.ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatal(err)
	}
}
