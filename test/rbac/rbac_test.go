// Package rbac runs the scheduler and the controller on an apiserver that
// authorizes with RBAC, each authenticated as its own ServiceAccount with
// exactly the roles manifests/ ships, through a workload that uses what
// they do: gangs placed, a gang disrupted and evicted, leader election.
// Every request either component makes is recorded with the RBAC verb and
// resource it needs: none may be refused, and every permission the
// shipped roles grant must be used, or be listed below with the reason it
// is kept.
package rbac

import (
	"context"
	"crypto/tls"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1beta1 "k8s.io/api/scheduling/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgclientset "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned"

	"github.com/lockstep-sched/lockstep/manifests"
	"github.com/lockstep-sched/lockstep/pkg/controller"
	"github.com/lockstep-sched/lockstep/pkg/controlplane"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/cluster"
	"github.com/lockstep-sched/lockstep/test/testbin"
	"github.com/lockstep-sched/lockstep/test/testlog"
)

// systemNamespace holds the components' ServiceAccounts and Leases.
const systemNamespace = "lockstep-system"

// waitTimeout bounds what must happen.
const waitTimeout = time.Minute

var (
	cp *controlplane.ControlPlane
	// schedulerBin is the lockstep-scheduler binary: with leader election,
	// kube-scheduler exits its process when it stops.
	schedulerBin string
)

func TestMain(m *testing.M) {
	os.Exit(testlog.Run("rbac", func() int {
		dir, err := os.MkdirTemp("", "lockstep-rbac-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if schedulerBin, err = testbin.BuildScheduler(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		cp, err = controlplane.StartWithCRDs(context.Background(), controlplane.Options{RBAC: true, WorkloadAPI: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cp.Stop()
		return m.Run()
	}))
}

func TestComponentsRunWithTheirShippedRoles(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	admin, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	roles := installIdentities(ctx, t, admin)

	// The scheduler, as shipped (leader election on), as its ServiceAccount.
	schedUses := controlplane.NewRequestCounter()
	sched, err := cp.StartSchedulerProcess(ctx, schedulerBin, manifests.SchedulerConfig,
		controlplane.CountRequests(schedUses), controlplane.WithToken(token(ctx, t, admin, "lockstep-scheduler")), controlplane.WithLeaderElection())
	if err != nil {
		t.Fatal(err)
	}
	defer sched.Stop()

	// The controller, as its ServiceAccount, with leader election.
	ctrlUses := controlplane.NewRequestCounter()
	kc := filepath.Join(t.TempDir(), "controller.kubeconfig")
	if err := cp.CountingKubeconfig(ctx, ctrlUses, kc, token(ctx, t, admin, "lockstep-controller")); err != nil {
		t.Fatal(err)
	}
	ctrlConfig, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := freeAddress(t)
	mgr, err := controller.NewManager(ctrlConfig, controller.Options{
		MetricsBindAddress: metricsAddr, MetricsSecure: true, LeaderElection: true, LeaderElectionNamespace: systemNamespace,
		PartialGrace: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		<-mgrDone
	}()

	runWorkload(ctx, t, admin)

	// The controller's metrics: only to clients the apiserver authenticates
	// and allows to get /metrics.
	schedToken := token(ctx, t, admin, "lockstep-scheduler")
	for _, c := range []struct {
		who, token string
		want       int
	}{{"anonymous", "", http.StatusUnauthorized}, {"lockstep-scheduler", schedToken, http.StatusForbidden}, {"admin", cp.Config.BearerToken, http.StatusOK}} {
		if got := scrape(ctx, t, metricsAddr, c.token); got != c.want {
			t.Errorf("metrics scraped by %s: status %d, want %d", c.who, got, c.want)
		}
	}

	for _, c := range []struct {
		name string
		uses *controlplane.RequestCounter
	}{{"lockstep-scheduler", schedUses}, {"lockstep-controller", ctrlUses}} {
		uses := c.uses.Uses()
		t.Logf("%s used:\n  %s", c.name, strings.Join(describeUses(uses), "\n  "))
		if f := c.uses.Forbidden(); len(f) > 0 {
			t.Errorf("%s was refused: %v", c.name, f)
		}
		for _, grant := range roles[c.name] {
			verb, res, _ := strings.Cut(grant, " ")
			switch why, kept := unusedButKept[c.name+": "+grant]; {
			case uses[grant] > 0:
			case verb == "list" && uses["watch "+res] > 0:
				// An informer lists when its watch-list cannot be served
				// (and after a watch expires).
			case kept:
				t.Logf("%s: %s is granted though this workload does not use it: %s", c.name, grant, why)
			default:
				t.Errorf("%s is granted %q and never used it: drop it from its role, or list why it is kept", c.name, grant)
			}
		}
	}
}

// unusedButKept are permissions the shipped roles grant that this workload
// does not exercise, and why they stay.
var unusedButKept = map[string]string{
	"lockstep-controller: get topology.node.k8s.io/noderesourcetopologies": "a member kubelet rejects is reported with its node's NUMA zones",
	"lockstep-scheduler: delete /pods":                                     "LockstepPreemption deletes the victims of ordinary pods",
	"lockstep-scheduler: create /pods/eviction":                            "a gang's preemption evicts its victims",
	"lockstep-scheduler: patch /pods/status":                               "unschedulable conditions and nominated nodes",
	"lockstep-scheduler: update /pods/status":                              "unschedulable conditions and nominated nodes",
	"lockstep-scheduler: update /persistentvolumes":                        "VolumeBinding binds volumes",
	"lockstep-scheduler: update /persistentvolumeclaims":                   "VolumeBinding binds claims",
	"lockstep-scheduler: update resource.k8s.io/resourceclaims":            "DynamicResources allocates claims",
	"lockstep-scheduler: update resource.k8s.io/resourceclaims/status":     "DynamicResources records allocations",
	"lockstep-scheduler: patch resource.k8s.io/resourceclaims/status":      "DynamicResources records allocations",
	"lockstep-scheduler: update /pods/finalizers":                          "DynamicResources protects claims in use",
	"lockstep-scheduler: create authentication.k8s.io/tokenreviews":        "the secure port (metrics, healthz) authenticates its clients; the test runs without it",
	"lockstep-scheduler: create authorization.k8s.io/subjectaccessreviews": "the secure port authorizes its clients",
	"lockstep-scheduler: patch /events":                                    "repeated Events are patched as a series",
	"lockstep-scheduler: patch events.k8s.io/events":                       "repeated Events are patched as a series",
	"lockstep-scheduler: create coordination.k8s.io/leases":                "the first replica ever creates the Lease",
	"lockstep-controller: patch /events":                                   "repeated Events are patched as a series",
	"lockstep-controller: patch events.k8s.io/events":                      "repeated Events are patched as a series",
	"lockstep-controller: create coordination.k8s.io/leases":               "the first replica ever creates the Lease",
}

// installIdentities creates the shipped namespace, ServiceAccounts, roles
// and bindings, and returns what the roles bound to each ServiceAccount
// grant, as "verb group/resource" (resource names dropped).
func installIdentities(ctx context.Context, t *testing.T, admin kubernetes.Interface) map[string][]string {
	t.Helper()
	var objs []runtime.Object
	err := fs.WalkDir(manifests.Identities, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := manifests.Identities.ReadFile(path)
		if err != nil {
			return err
		}
		for _, doc := range strings.Split(string(data), "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			j, err := utilyaml.ToJSON([]byte(doc))
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(j, nil, nil)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			objs = append(objs, obj)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rules := map[string][]rbacv1.PolicyRule{} // by role kind/name
	var bindings []struct {
		role     string
		subjects []rbacv1.Subject
	}
	for _, obj := range objs {
		var err error
		switch o := obj.(type) {
		case *v1.Namespace:
			_, err = admin.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
		case *v1.ServiceAccount:
			_, err = admin.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			rules["ClusterRole/"+o.Name] = o.Rules
			_, err = admin.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			rules["Role/"+o.Name] = o.Rules
			_, err = admin.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			bindings = append(bindings, struct {
				role     string
				subjects []rbacv1.Subject
			}{o.RoleRef.Kind + "/" + o.RoleRef.Name, o.Subjects})
			_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			bindings = append(bindings, struct {
				role     string
				subjects []rbacv1.Subject
			}{o.RoleRef.Kind + "/" + o.RoleRef.Name, o.Subjects})
			_, err = admin.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("unexpected object %T in the shipped identities", obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	grants := map[string][]string{}
	for _, b := range bindings {
		r, ok := rules[b.role]
		if !ok {
			continue // a built-in role: what it grants is not ours to trim
		}
		for _, s := range b.subjects {
			for _, rule := range r {
				for _, g := range rule.APIGroups {
					for _, res := range rule.Resources {
						for _, v := range rule.Verbs {
							grants[s.Name] = append(grants[s.Name], v+" "+g+"/"+res)
						}
					}
				}
			}
		}
	}
	for name := range grants {
		slices.Sort(grants[name])
		grants[name] = slices.Compact(grants[name])
	}
	return grants
}

// token returns a token of a ServiceAccount of the system namespace.
func token(ctx context.Context, t *testing.T, admin kubernetes.Interface, sa string) string {
	t.Helper()
	tr, err := admin.CoreV1().ServiceAccounts(systemNamespace).CreateToken(ctx, sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of %s: %v", sa, err)
	}
	return tr.Status.Token
}

// runWorkload drives both components through what they do: a gang placed
// and running, an ordinary pod, a gang in disruption mode All that loses a
// member and is evicted.
func runWorkload(ctx context.Context, t *testing.T, admin kubernetes.Interface) {
	t.Helper()
	jc := rest.CopyConfig(cp.Config)
	jc.ContentType = runtime.ContentTypeJSON
	pgs, err := pgclientset.NewForConfig(jc)
	if err != nil {
		t.Fatal(err)
	}
	const ns = "workload"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		node := cluster.Node{Name: fmt.Sprintf("node-%d", i), CPUs: 8, Memory: resource.MustParse("32Gi")}.NodeObject()
		if _, err := admin.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(name, gang string) *v1.Pod {
		p := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{}},
			Spec: v1.PodSpec{SchedulerName: "lockstep", Containers: []v1.Container{{Name: "main", Image: "registry.invalid/w",
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1")}}}}},
		}
		if gang != "" {
			p.Labels[podgroup.Label] = gang
		}
		return p
	}
	for _, g := range []struct {
		name string
		mode podgroup.DisruptionMode
	}{{"job", podgroup.DisruptionSingle}, {"all", podgroup.DisruptionAll}} {
		pg := &v1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: g.name, Namespace: ns,
			Annotations: map[string]string{podgroup.AnnotationDisruptionMode: string(g.mode)}}, Spec: v1alpha1.PodGroupSpec{MinMember: 3}}
		if _, err := pgs.SchedulingV1alpha1().PodGroups(ns).Create(ctx, pg, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if _, err := admin.CoreV1().Pods(ns).Create(ctx, pod(fmt.Sprintf("%s-%d", g.name, i), g.name), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := admin.CoreV1().Pods(ns).Create(ctx, pod("ordinary", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A gang of Kubernetes' own PodGroup API, whose condition the
	// scheduler writes.
	if _, err := admin.SchedulingV1beta1().PodGroups(ns).Create(ctx, &schedulingv1beta1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Name: "upstream", Namespace: ns},
		Spec: schedulingv1beta1.PodGroupSpec{SchedulingPolicy: schedulingv1beta1.PodGroupSchedulingPolicy{
			Gang: &schedulingv1beta1.GangSchedulingPolicy{MinCount: 1}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	member := pod("upstream-0", "")
	member.Spec.SchedulingGroup = &v1.PodSchedulingGroup{PodGroupName: ptr.To("upstream")}
	if _, err := admin.CoreV1().Pods(ns).Create(ctx, member, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A pod no node can hold gets its PodScheduled=False condition.
	tooBig := pod("too-big", "")
	tooBig.Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse("100")
	if _, err := admin.CoreV1().Pods(ns).Create(ctx, tooBig, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "every pod that fits bound, the other marked unschedulable", func() bool {
		list, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(list.Items) != 9 {
			return false
		}
		for _, p := range list.Items {
			if p.Name == tooBig.Name {
				if !slices.ContainsFunc(p.Status.Conditions, func(c v1.PodCondition) bool {
					return c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse
				}) {
					return false
				}
			} else if p.Spec.NodeName == "" {
				return false
			}
		}
		return true
	})
	waitFor(ctx, t, "the upstream PodGroup's condition written", func() bool {
		pg, err := admin.SchedulingV1beta1().PodGroups(ns).Get(ctx, "upstream", metav1.GetOptions{})
		return err == nil && meta.IsStatusConditionTrue(pg.Status.Conditions, schedulingv1beta1.PodGroupInitiallyScheduled)
	})
	setPhase := func(name string, phase v1.PodPhase) {
		p, err := admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = phase
		if _, err := admin.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []string{"job", "all"} {
		for i := range 3 {
			setPhase(fmt.Sprintf("%s-%d", g, i), v1.PodRunning)
		}
		waitFor(ctx, t, g+" Running", func() bool {
			pg, err := pgs.SchedulingV1alpha1().PodGroups(ns).Get(ctx, g, metav1.GetOptions{})
			return err == nil && pg.Status.Phase == v1alpha1.PodGroupRunning
		})
	}
	setPhase("all-1", v1.PodFailed)
	waitFor(ctx, t, "the disrupted gang's members evicted", func() bool {
		for _, n := range []string{"all-0", "all-2"} {
			p, err := admin.CoreV1().Pods(ns).Get(ctx, n, metav1.GetOptions{})
			if err == nil && p.DeletionTimestamp == nil {
				return false
			}
		}
		return true
	})
	// A gang that waits says why on its PodGroup (the scheduler's patch).
	wide := &v1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "wide", Namespace: ns}, Spec: v1alpha1.PodGroupSpec{MinMember: 1}}
	if _, err := pgs.SchedulingV1alpha1().PodGroups(ns).Create(ctx, wide, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	widePod := pod("wide-0", "wide")
	widePod.Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse("100")
	if _, err := admin.CoreV1().Pods(ns).Create(ctx, widePod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the waiting gang's annotation", func() bool {
		pg, err := pgs.SchedulingV1alpha1().PodGroups(ns).Get(ctx, "wide", metav1.GetOptions{})
		return err == nil && pg.Annotations[podgroup.AnnotationWaiting] != ""
	})
	// The upstream gang loses its only member: the controller marks the
	// PodGroup (annotations) and sets its DisruptionTarget condition.
	setPhase("upstream-0", v1.PodFailed)
	waitFor(ctx, t, "the upstream gang marked disrupted", func() bool {
		pg, err := admin.SchedulingV1beta1().PodGroups(ns).Get(ctx, "upstream", metav1.GetOptions{})
		return err == nil && pg.Annotations["lockstep.io/incomplete"] != "" &&
			meta.IsStatusConditionTrue(pg.Status.Conditions, schedulingv1beta1.DisruptionTarget)
	})
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	}); err != nil {
		t.Fatalf("%s: not within %s", what, waitTimeout)
	}
}

// describeUses lists uses as "verb resource (count)", sorted.
func describeUses(uses map[string]int64) []string {
	var out []string
	for u, n := range uses {
		out = append(out, fmt.Sprintf("%s (%d)", u, n))
	}
	slices.Sort(out)
	return out
}

// freeAddress is a loopback address with a port free a moment ago.
func freeAddress(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrape gets the controller's /metrics with a bearer token ("" for none)
// and returns the status, once the endpoint answers.
func scrape(ctx context.Context, t *testing.T, addr, token string) int {
	t.Helper()
	// The certificate is self-signed.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
	status := 0
	waitFor(ctx, t, "the metrics endpoint answering", func() bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		status = resp.StatusCode
		return true
	})
	return status
}
