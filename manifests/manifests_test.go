package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/lockstep-sched/lockstep/pkg/controller"
)

// kustomization is the part of kustomize's format this directory uses;
// decoding strictly into it catches misspelt keys.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name      string   `json:"name"`
		Namespace string   `json:"namespace"`
		Files     []string `json:"files"`
		Options   struct {
			DisableNameSuffixHash bool `json:"disableNameSuffixHash"`
		} `json:"options"`
	} `json:"configMapGenerator"`
}

// objects is everything the kustomization installs, by kind.
type objects struct {
	namespaces      []*corev1.Namespace
	serviceAccounts []*corev1.ServiceAccount
	configMaps      []*corev1.ConfigMap
	crds            []*apiextensionsv1.CustomResourceDefinition
	roles           []*rbacv1.Role
	clusterRoles    []*rbacv1.ClusterRole
	roleBindings    []*rbacv1.RoleBinding
	clusterBindings []*rbacv1.ClusterRoleBinding
	deployments     []*appsv1.Deployment
}

// builtInRoles are roles the API server creates; bindings may name them.
var builtInRoles = []string{
	"ClusterRole/system:kube-scheduler",
	"ClusterRole/system:volume-scheduler",
	"Role/kube-system/extension-apiserver-authentication-reader",
}

const generatedConfigMap = "lockstep-scheduler-config"

// notInstalledByKustomize are CRDs that an admin does not get from us: the
// NodeResourceTopology CRD belongs to the node agent that publishes the
// objects (its CRD carries versions ours does not, and replacing it would
// drop them).
var notInstalledByKustomize = []string{"crds/topology.node.k8s.io_noderesourcetopologies.yaml"}

func readKustomization(t *testing.T) kustomization {
	t.Helper()
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	return k
}

// load decodes every listed resource strictly into its typed object, and
// adds the generated ConfigMap.
func load(t *testing.T) objects {
	t.Helper()
	k := readKustomization(t)
	var objs objects
	for _, file := range k.Resources {
		data, err := os.ReadFile(filepath.FromSlash(file))
		if err != nil {
			t.Fatalf("resource %s: %v", file, err)
		}
		docs, err := splitDocuments(data)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(docs) == 0 {
			t.Errorf("%s: no objects", file)
		}
		for i, doc := range docs {
			if err := objs.add(doc); err != nil {
				t.Errorf("%s document %d: %v", file, i+1, err)
			}
		}
	}
	for _, g := range k.ConfigMapGenerator {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: g.Name, Namespace: g.Namespace}, Data: map[string]string{}}
		for _, f := range g.Files {
			data, err := os.ReadFile(filepath.FromSlash(f))
			if err != nil {
				t.Fatalf("configMapGenerator %s: %v", g.Name, err)
			}
			cm.Data[path.Base(f)] = string(data)
		}
		objs.configMaps = append(objs.configMaps, cm)
	}
	return objs
}

// splitDocuments returns the non-empty documents of a YAML stream.
func splitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if isBlank(doc) {
			continue
		}
		docs = append(docs, doc)
	}
}

// isBlank reports whether a document holds only comments and whitespace.
func isBlank(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}

func (o *objects) add(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	var err error
	switch tm.APIVersion + "/" + tm.Kind {
	case "v1/Namespace":
		o.namespaces, err = decodeAppend(doc, o.namespaces)
	case "v1/ServiceAccount":
		o.serviceAccounts, err = decodeAppend(doc, o.serviceAccounts)
	case "v1/ConfigMap":
		o.configMaps, err = decodeAppend(doc, o.configMaps)
	case "apiextensions.k8s.io/v1/CustomResourceDefinition":
		o.crds, err = decodeAppend(doc, o.crds)
	case "rbac.authorization.k8s.io/v1/Role":
		o.roles, err = decodeAppend(doc, o.roles)
	case "rbac.authorization.k8s.io/v1/ClusterRole":
		o.clusterRoles, err = decodeAppend(doc, o.clusterRoles)
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		o.roleBindings, err = decodeAppend(doc, o.roleBindings)
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		o.clusterBindings, err = decodeAppend(doc, o.clusterBindings)
	case "apps/v1/Deployment":
		o.deployments, err = decodeAppend(doc, o.deployments)
	default:
		return fmt.Errorf("unexpected object %s %s", tm.APIVersion, tm.Kind)
	}
	return err
}

// decodeAppend strictly decodes doc into a new T and appends it.
func decodeAppend[T any](doc []byte, list []*T) ([]*T, error) {
	obj := new(T)
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return list, err
	}
	return append(list, obj), nil
}

func TestKustomization(t *testing.T) {
	k := readKustomization(t)
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization is %s %s", k.APIVersion, k.Kind)
	}
	// Every YAML file here must be installed, or be the generator's input,
	// or be a CRD that a node agent installs on a real cluster (the embedded
	// control plane installs it for the sandbox and the tests).
	listed := map[string]bool{"kustomization.yaml": true}
	for _, f := range notInstalledByKustomize {
		listed[f] = true
	}
	for _, r := range k.Resources {
		listed[r] = true
	}
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.Files {
			listed[f] = true
		}
	}
	for _, pattern := range []string{"*.yaml", "crds/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if !listed[filepath.ToSlash(f)] {
				t.Errorf("%s is not in kustomization.yaml", f)
			}
		}
	}

	if len(k.ConfigMapGenerator) != 1 {
		t.Fatalf("configMapGenerator has %d entries, want 1", len(k.ConfigMapGenerator))
	}
	g := k.ConfigMapGenerator[0]
	if g.Name != generatedConfigMap || g.Namespace != "lockstep-system" || !g.Options.DisableNameSuffixHash {
		t.Errorf("configMapGenerator = %+v, want %s in lockstep-system without hash suffix", g, generatedConfigMap)
	}
	if !slices.Equal(g.Files, []string{"scheduler-config.yaml"}) {
		t.Errorf("configMapGenerator files = %v, want [scheduler-config.yaml]", g.Files)
	}
}

func TestObjectsDecode(t *testing.T) {
	objs := load(t)
	if len(objs.namespaces) != 1 || objs.namespaces[0].Name != "lockstep-system" {
		t.Errorf("namespaces = %d, want lockstep-system", len(objs.namespaces))
	}
	if len(objs.crds) != 1 || objs.crds[0].Name != "podgroups.scheduling.x-k8s.io" {
		t.Errorf("want the PodGroup CRD, have %d CRDs", len(objs.crds))
	}
	if len(objs.deployments) != 2 {
		t.Errorf("deployments = %d, want 2", len(objs.deployments))
	}
}

// TestRBACLeastPrivilege keeps wildcards and secrets out of our roles.
func TestRBACLeastPrivilege(t *testing.T) {
	objs := load(t)
	check := func(owner string, rules []rbacv1.PolicyRule) {
		if len(rules) == 0 {
			t.Errorf("%s has no rules", owner)
		}
		for i, r := range rules {
			for _, field := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames, r.NonResourceURLs} {
				if slices.ContainsFunc(field, func(s string) bool { return strings.Contains(s, "*") }) {
					t.Errorf("%s rule %d uses a wildcard: %+v", owner, i, r)
				}
			}
			for _, res := range r.Resources {
				if res == "secrets" || strings.HasPrefix(res, "secrets/") {
					t.Errorf("%s rule %d touches secrets", owner, i)
				}
			}
		}
	}
	for _, r := range objs.roles {
		check("Role "+r.Namespace+"/"+r.Name, r.Rules)
	}
	for _, r := range objs.clusterRoles {
		if r.AggregationRule != nil {
			t.Errorf("ClusterRole %s aggregates other roles", r.Name)
		}
		check("ClusterRole "+r.Name, r.Rules)
	}
}

// TestBindingsResolve checks that every binding names a role and service
// accounts that exist, here or built in.
func TestBindingsResolve(t *testing.T) {
	objs := load(t)
	roles := slices.Clone(builtInRoles)
	for _, r := range objs.roles {
		roles = append(roles, "Role/"+r.Namespace+"/"+r.Name)
	}
	for _, r := range objs.clusterRoles {
		roles = append(roles, "ClusterRole/"+r.Name)
	}
	accounts := map[string]bool{}
	for _, sa := range objs.serviceAccounts {
		accounts[sa.Namespace+"/"+sa.Name] = true
	}
	checkSubjects := func(binding string, subjects []rbacv1.Subject) {
		if len(subjects) == 0 {
			t.Errorf("%s has no subjects", binding)
		}
		for _, s := range subjects {
			if s.Kind != rbacv1.ServiceAccountKind || !accounts[s.Namespace+"/"+s.Name] {
				t.Errorf("%s binds %s %s/%s, not one of our ServiceAccounts", binding, s.Kind, s.Namespace, s.Name)
			}
		}
	}
	for _, b := range objs.roleBindings {
		ref := "ClusterRole/" + b.RoleRef.Name
		if b.RoleRef.Kind == "Role" {
			ref = "Role/" + b.Namespace + "/" + b.RoleRef.Name
		}
		if !slices.Contains(roles, ref) {
			t.Errorf("RoleBinding %s/%s refers to unknown %s", b.Namespace, b.Name, ref)
		}
		checkSubjects("RoleBinding "+b.Namespace+"/"+b.Name, b.Subjects)
	}
	for _, b := range objs.clusterBindings {
		ref := b.RoleRef.Kind + "/" + b.RoleRef.Name
		if b.RoleRef.Kind != "ClusterRole" || !slices.Contains(roles, ref) {
			t.Errorf("ClusterRoleBinding %s refers to unknown %s", b.Name, ref)
		}
		checkSubjects("ClusterRoleBinding "+b.Name, b.Subjects)
	}
}

// TestLeasesGranted checks that each component may renew the Lease it
// actually uses.
func TestLeasesGranted(t *testing.T) {
	objs := load(t)
	var cfg struct {
		LeaderElection struct {
			ResourceNamespace string `json:"resourceNamespace"`
			ResourceName      string `json:"resourceName"`
		} `json:"leaderElection"`
	}
	if err := yaml.Unmarshal(SchedulerConfig, &cfg); err != nil {
		t.Fatalf("scheduler-config.yaml: %v", err)
	}
	leases := map[string]string{
		"lockstep-scheduler":  cfg.LeaderElection.ResourceNamespace + "/" + cfg.LeaderElection.ResourceName,
		"lockstep-controller": "lockstep-system/" + controller.Name,
	}
	for account, lease := range leases {
		ns, name, _ := strings.Cut(lease, "/")
		for _, verb := range []string{"get", "create", "update"} {
			if !roleAllows(objs, "lockstep-system/"+account, ns, "coordination.k8s.io", "leases", name, verb) {
				t.Errorf("%s may not %s Lease %s", account, verb, lease)
			}
		}
	}
}

// TestClientNotThrottlingGangs checks that the scheduler's client does
// not pace a gang's bindings: at kube-scheduler's default of 50 QPS, burst
// 100, a gang of 300 binds over 6 s once the burst is spent (make bench).
func TestClientNotThrottlingGangs(t *testing.T) {
	var cfg struct {
		ClientConnection struct {
			QPS   float64 `json:"qps"`
			Burst int     `json:"burst"`
		} `json:"clientConnection"`
		Profiles []struct {
			PluginConfig []struct {
				Name string         `json:"name"`
				Args map[string]any `json:"args"`
			} `json:"pluginConfig"`
		} `json:"profiles"`
	}
	if err := yaml.Unmarshal(SchedulerConfig, &cfg); err != nil {
		t.Fatalf("scheduler-config.yaml: %v", err)
	}
	if cc := cfg.ClientConnection; cc.QPS < 1000 || cc.Burst < 1000 {
		t.Errorf("clientConnection qps %g, burst %d: a gang's bindings would wait on the client's rate limiter", cc.QPS, cc.Burst)
	}
}

// roleAllows reports whether a Role bound to the account in ns allows verb on
// the named resource. create is matched without the name, as RBAC does.
func roleAllows(objs objects, account, ns, group, resource, name, verb string) bool {
	for _, b := range objs.roleBindings {
		if b.Namespace != ns || b.RoleRef.Kind != "Role" {
			continue
		}
		bound := slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool { return s.Namespace+"/"+s.Name == account })
		if !bound {
			continue
		}
		for _, r := range objs.roles {
			if r.Namespace != ns || r.Name != b.RoleRef.Name {
				continue
			}
			for _, rule := range r.Rules {
				named := verb == "create" || len(rule.ResourceNames) == 0 || slices.Contains(rule.ResourceNames, name)
				if slices.Contains(rule.APIGroups, group) && slices.Contains(rule.Resources, resource) &&
					slices.Contains(rule.Verbs, verb) && named {
					return true
				}
			}
		}
	}
	return false
}

func TestDeployments(t *testing.T) {
	objs := load(t)
	accounts := map[string]bool{}
	for _, sa := range objs.serviceAccounts {
		accounts[sa.Namespace+"/"+sa.Name] = true
	}
	configMaps := map[string]*corev1.ConfigMap{}
	for _, cm := range objs.configMaps {
		configMaps[cm.Namespace+"/"+cm.Name] = cm
	}
	for _, d := range objs.deployments {
		name := d.Namespace + "/" + d.Name
		spec := d.Spec.Template.Spec
		if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			t.Errorf("%s: selector does not match its pod template", name)
		}
		if !accounts[d.Namespace+"/"+spec.ServiceAccountName] {
			t.Errorf("%s: ServiceAccount %q is not in the manifests", name, spec.ServiceAccountName)
		}
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
			psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod must run as non-root with the RuntimeDefault seccomp profile", name)
		}
		for _, v := range spec.Volumes {
			if v.ConfigMap != nil && configMaps[d.Namespace+"/"+v.ConfigMap.Name] == nil {
				t.Errorf("%s: volume %s mounts unknown ConfigMap %s", name, v.Name, v.ConfigMap.Name)
			}
		}
		for _, c := range spec.Containers {
			cname := name + " container " + c.Name
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("%s: needs readOnlyRootFilesystem, no privilege escalation and all capabilities dropped", cname)
			}
			if c.LivenessProbe == nil || c.ReadinessProbe == nil {
				t.Errorf("%s: needs liveness and readiness probes", cname)
			}
			if len(c.Resources.Requests) == 0 {
				t.Errorf("%s: needs resource requests", cname)
			}
		}
	}

	sched := findDeployment(t, objs, "lockstep-scheduler")
	if sched.Spec.Replicas == nil || *sched.Spec.Replicas != 2 {
		t.Errorf("lockstep-scheduler replicas = %v, want 2", sched.Spec.Replicas)
	}
	c := sched.Spec.Template.Spec.Containers[0]
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.IntValue() != 10259 || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("lockstep-scheduler probes must use HTTPS on 10259: %+v", p)
		}
	}
	// The --config file must be a key of the ConfigMap mounted at its
	// directory.
	var configPath string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			configPath = v
		}
	}
	if configPath == "" {
		t.Fatalf("lockstep-scheduler has no --config argument: %v", c.Args)
	}
	if !mountsConfigKey(sched, c, configPath, configMaps) {
		t.Errorf("lockstep-scheduler: %s is not provided by a mounted ConfigMap", configPath)
	}

	ctl := findDeployment(t, objs, "lockstep-controller")
	if ctl.Spec.Replicas == nil || *ctl.Spec.Replicas != 1 {
		t.Errorf("lockstep-controller replicas = %v, want 1", ctl.Spec.Replicas)
	}
	cc := ctl.Spec.Template.Spec.Containers[0]
	for _, p := range []*corev1.Probe{cc.LivenessProbe, cc.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.IntValue() != 8081 {
			t.Errorf("lockstep-controller probes must use port 8081: %+v", p)
		}
	}
}

func findDeployment(t *testing.T, objs objects, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range objs.deployments {
		if d.Name == name {
			if len(d.Spec.Template.Spec.Containers) == 0 {
				t.Fatalf("%s has no containers", name)
			}
			return d
		}
	}
	t.Fatalf("no Deployment %s", name)
	return nil
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// mountsConfigKey reports whether file is a key of a ConfigMap volume that
// the container mounts at the file's directory.
func mountsConfigKey(d *appsv1.Deployment, c corev1.Container, file string, configMaps map[string]*corev1.ConfigMap) bool {
	dir, key := path.Split(file)
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) != path.Clean(dir) {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			if cm := configMaps[d.Namespace+"/"+v.ConfigMap.Name]; cm != nil {
				if _, ok := cm.Data[key]; ok {
					return true
				}
			}
		}
	}
	return false
}

// TestKubectlKustomize builds the directory the way an admin installs it,
// when kubectl is at hand.
func TestKubectlKustomize(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	out, err := exec.Command(kubectl, "kustomize", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	docs, err := splitDocuments(out)
	if err != nil {
		t.Fatal(err)
	}
	var built objects
	for i, doc := range docs {
		if err := built.add(doc); err != nil {
			t.Errorf("built document %d: %v", i+1, err)
		}
	}
	if len(built.configMaps) != 1 || built.configMaps[0].Name != generatedConfigMap {
		t.Fatalf("kustomize did not generate ConfigMap %s", generatedConfigMap)
	}
	if got := built.configMaps[0].Data["scheduler-config.yaml"]; got != string(SchedulerConfig) {
		t.Errorf("generated ConfigMap differs from scheduler-config.yaml")
	}
}
