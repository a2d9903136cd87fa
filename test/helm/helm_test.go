// Package helm checks the Helm chart (charts/lockstep) with Helm's own Go
// module: at its default values it renders exactly what kustomize installs
// from manifests/ (so the two cannot drift apart), its values change what
// they say, and what it renders is accepted by a real apiserver.
package helm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/lockstep-sched/lockstep/pkg/controlplane"
	"github.com/lockstep-sched/lockstep/test/testlog"
)

const (
	chartDir     = "../../charts/lockstep"
	manifestsDir = "../../manifests"
	// namespace is where the manifests install; the chart installs in the
	// release's.
	namespace = "lockstep-system"
)

// render renders the chart's templates and CRDs for a release in ns with
// values over the defaults, as helm template does.
func render(t *testing.T, ns string, values map[string]any) []map[string]any {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	if err := ch.Validate(); err != nil {
		t.Fatalf("the chart is invalid: %v", err)
	}
	vals, err := chartutil.ToRenderValues(ch, values, chartutil.ReleaseOptions{Name: "lockstep", Namespace: ns, IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	var objs []map[string]any
	for _, name := range sortedKeys(files) {
		if strings.HasSuffix(name, "NOTES.txt") || strings.HasPrefix(filepath.Base(name), "_") {
			continue
		}
		objs = append(objs, decode(t, name, []byte(files[name]))...)
	}
	for _, crd := range ch.CRDObjects() {
		objs = append(objs, decode(t, crd.Name, crd.File.Data)...)
	}
	return objs
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// decode splits a YAML stream into objects, skipping empty documents.
func decode(t *testing.T, name string, data []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(obj) > 0 {
			out = append(out, obj)
		}
	}
	return out
}

// kustomized is what kubectl apply -k manifests/ installs: the resources
// kustomization.yaml lists, each with its part-of label, and the
// ConfigMap it generates from scheduler-config.yaml (manifests' own tests
// check this against kustomize).
func kustomized(t *testing.T) []map[string]any {
	t.Helper()
	var k struct {
		Resources []string `json:"resources"`
		Labels    []struct {
			Pairs map[string]string `json:"pairs"`
		} `json:"labels"`
	}
	data, err := os.ReadFile(filepath.Join(manifestsDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	for _, r := range k.Resources {
		data, err := os.ReadFile(filepath.Join(manifestsDir, r))
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, decode(t, r, data)...)
	}
	config, err := os.ReadFile(filepath.Join(manifestsDir, "scheduler-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs = append(objs, map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "lockstep-scheduler-config", "namespace": namespace},
		"data":     map[string]any{"scheduler-config.yaml": string(config)},
	})
	for _, obj := range objs {
		md := obj["metadata"].(map[string]any)
		labels, _ := md["labels"].(map[string]any)
		if labels == nil {
			labels = map[string]any{}
			md["labels"] = labels
		}
		for _, l := range k.Labels {
			for key, v := range l.Pairs {
				labels[key] = v
			}
		}
	}
	return objs
}

func key(obj map[string]any) string {
	md := obj["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	return fmt.Sprintf("%s %s/%s", obj["kind"], ns, md["name"])
}

// normalize makes what may differ in form alike: the scheduler
// configuration is compared as data, not text, and the chart's config
// checksum (which rolls the scheduler on a change) is set aside.
func normalize(t *testing.T, obj map[string]any) map[string]any {
	t.Helper()
	switch key(obj) {
	case "ConfigMap " + namespace + "/lockstep-scheduler-config":
		data := obj["data"].(map[string]any)
		var cfg map[string]any
		if err := yaml.Unmarshal([]byte(data["scheduler-config.yaml"].(string)), &cfg); err != nil {
			t.Fatalf("scheduler configuration: %v", err)
		}
		data["scheduler-config.yaml"] = cfg
	case "Deployment " + namespace + "/lockstep-scheduler":
		tmd := obj["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)
		if ann, ok := tmd["annotations"].(map[string]any); ok {
			delete(ann, "checksum/config")
			if len(ann) == 0 {
				delete(tmd, "annotations")
			}
		}
	}
	return obj
}

// At its defaults the chart installs what the kustomize manifests do.
func TestChartRendersTheManifests(t *testing.T) {
	want := map[string]map[string]any{}
	for _, obj := range kustomized(t) {
		want[key(obj)] = normalize(t, obj)
	}
	got := map[string]map[string]any{}
	for _, obj := range render(t, namespace, map[string]any{"createNamespace": true}) {
		got[key(obj)] = normalize(t, obj)
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("the chart does not render %s", k)
			continue
		}
		if !reflect.DeepEqual(g, w) {
			gy, _ := yaml.Marshal(g)
			wy, _ := yaml.Marshal(w)
			t.Errorf("%s differs:\nchart:\n%s\nmanifests:\n%s", k, gy, wy)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("the chart renders %s, which the manifests do not install", k)
		}
	}
	if t.Failed() {
		t.Log("make manifests regenerates the chart's identities and CRD; the Deployments, the configuration and values.yaml are written by hand")
	}
}

// The values scheduler-plugins' chart users know change what they say.
func TestChartValues(t *testing.T) {
	objs := render(t, "gangs", map[string]any{
		"scheduler": map[string]any{
			"name": "my-gangs", "replicaCount": 3, "leaderElect": false, "image": "example.com/lockstep:v1",
			"nodeSelector":      map[string]any{"node-role.kubernetes.io/control-plane": ""},
			"tolerations":       []any{map[string]any{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}},
			"priorityClassName": "system-cluster-critical",
			"clientConnection":  map[string]any{"qps": 200, "burst": 400},
		},
		"pluginConfig": []any{map[string]any{"name": "LockstepGang", "args": map[string]any{"bindBudget": 8}}},
	})
	byKey := map[string]map[string]any{}
	for _, obj := range objs {
		byKey[key(obj)] = obj
	}
	if _, ok := byKey["Namespace /gangs"]; ok {
		t.Error("the namespace is created though createNamespace is false")
	}
	dep, ok := byKey["Deployment gangs/lockstep-scheduler"]
	if !ok {
		t.Fatalf("no scheduler Deployment in the release's namespace: %v", sortedObjKeys(byKey))
	}
	var d struct {
		Spec struct {
			Replicas int `json:"replicas"`
			Template struct {
				Spec struct {
					PriorityClassName string            `json:"priorityClassName"`
					NodeSelector      map[string]string `json:"nodeSelector"`
					Tolerations       []map[string]any  `json:"tolerations"`
					Containers        []struct {
						Image string `json:"image"`
					} `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	remarshal(t, dep, &d)
	ps := d.Spec.Template.Spec
	if d.Spec.Replicas != 3 || ps.PriorityClassName != "system-cluster-critical" || len(ps.NodeSelector) != 1 || len(ps.Tolerations) != 1 || ps.Containers[0].Image != "example.com/lockstep:v1" {
		t.Errorf("scheduler Deployment: %+v", d.Spec)
	}
	cm := byKey["ConfigMap gangs/lockstep-scheduler-config"]
	var cfg struct {
		ClientConnection struct {
			QPS   float64 `json:"qps"`
			Burst int     `json:"burst"`
		} `json:"clientConnection"`
		LeaderElection struct {
			LeaderElect       bool   `json:"leaderElect"`
			ResourceNamespace string `json:"resourceNamespace"`
		} `json:"leaderElection"`
		Profiles []struct {
			SchedulerName string `json:"schedulerName"`
			PluginConfig  []struct {
				Args map[string]any `json:"args"`
			} `json:"pluginConfig"`
		} `json:"profiles"`
	}
	if err := yaml.Unmarshal([]byte(cm["data"].(map[string]any)["scheduler-config.yaml"].(string)), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.LeaderElection.LeaderElect || cfg.LeaderElection.ResourceNamespace != "gangs" || len(cfg.Profiles) != 2 ||
		cfg.Profiles[0].SchedulerName != "my-gangs" || cfg.Profiles[1].SchedulerName != "scheduler-plugins-scheduler" ||
		cfg.Profiles[0].PluginConfig[0].Args["bindBudget"] != float64(8) || cfg.ClientConnection.QPS != 200 || cfg.ClientConnection.Burst != 400 {
		t.Errorf("scheduler configuration: %+v", cfg)
	}
	for k, obj := range byKey {
		md := obj["metadata"].(map[string]any)
		if ns, _ := md["namespace"].(string); ns == namespace {
			t.Errorf("%s stays in %s, not the release's namespace", k, namespace)
		}
	}
}

func sortedObjKeys(m map[string]map[string]any) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func remarshal(t *testing.T, in any, out any) {
	t.Helper()
	data, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
}

// What the chart renders, CRD first, is accepted by a real apiserver.
func TestChartInstallsOnAnAPIServer(t *testing.T) {
	ctx := context.Background()
	cp, err := controlplane.Start(ctx, controlplane.Options{LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	objs := render(t, "gangs", map[string]any{"createNamespace": true})
	sort.SliceStable(objs, func(i, j int) bool { return rank(objs[i]) < rank(objs[j]) })
	for _, o := range objs {
		u := &unstructured.Unstructured{Object: o}
		var mapping *meta.RESTMapping
		// A CRD just created is served a moment later.
		for range 50 {
			if mapping, err = mapper.RESTMapping(u.GroupVersionKind().GroupKind(), u.GroupVersionKind().Version); err == nil {
				break
			}
			mapper.Reset()
		}
		if err != nil {
			t.Fatalf("%s: %v", key(o), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(mapping.Resource).Namespace(u.GetNamespace())
		}
		if _, err := ri.Create(ctx, u, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Errorf("creating %s: %v", key(o), err)
		}
	}
	if _, err := dyn.Resource(mustGVR(t, mapper, "scheduling.x-k8s.io", "PodGroup")).Namespace("gangs").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("the chart's CRD does not serve PodGroups: %v", err)
	}
}

// rank orders objects for creation: CRDs and namespaces before the rest.
func rank(obj map[string]any) int {
	switch obj["kind"] {
	case "CustomResourceDefinition":
		return 0
	case "Namespace":
		return 1
	}
	return 2
}

func mustGVR(t *testing.T, mapper *restmapper.DeferredDiscoveryRESTMapper, group, kind string) schema.GroupVersionResource {
	t.Helper()
	mapper.Reset()
	m, err := mapper.RESTMapping(schema.GroupKind{Group: group, Kind: kind})
	if err != nil {
		t.Fatal(err)
	}
	return m.Resource
}

func TestMain(m *testing.M) {
	os.Exit(testlog.Run("helm", m.Run))
}
