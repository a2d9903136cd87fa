// Package nrtlater checks that Lockstep starts on a cluster without the
// NodeResourceTopology CRD, places by node capacity, and uses NUMA zones once
// the CRD is installed later. It runs its own control plane, in its own
// process, because the CRD must be missing at the scheduler's start.
package nrtlater

import (
	"context"
	"io/fs"
	"strings"
	"testing"
	"time"

	nrtv1alpha2 "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/apis/topology/v1alpha2"
	nrtclientset "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/generated/clientset/versioned"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/lockstep-sched/lockstep/manifests"
	"github.com/lockstep-sched/lockstep/pkg/controlplane"
	"github.com/lockstep-sched/lockstep/test/testlog"
)

func crd(t *testing.T, name string) []byte {
	t.Helper()
	files, _ := fs.Glob(manifests.CRDs, "crds/*.yaml")
	for _, f := range files {
		if strings.Contains(f, name) {
			b, err := manifests.CRDs.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatalf("no CRD file for %s", name)
	return nil
}

func guaranteed(name string, cpu string) *v1.Pod {
	res := v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse("1Gi")}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.PodSpec{SchedulerName: "lockstep", Containers: []v1.Container{{
			Name: "c", Image: "registry.invalid/x", Resources: v1.ResourceRequirements{Requests: res, Limits: res},
		}}},
	}
}

func TestMain(m *testing.M) {
	testlog.Main(m, "nrtlater-test")
}

func TestNRTCRDInstalledAfterStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp, err := controlplane.Start(ctx, controlplane.Options{LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	if err := controlplane.InstallCRDDocuments(ctx, cp.Config, crd(t, "podgroups")); err != nil {
		t.Fatal(err)
	}
	sched, err := cp.StartScheduler(ctx, manifests.SchedulerConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer sched.Stop()

	client := kubernetes.NewForConfigOrDie(cp.Config)
	res := v1.ResourceList{v1.ResourceCPU: resource.MustParse("16"), v1.ResourceMemory: resource.MustParse("64Gi"), v1.ResourcePods: resource.MustParse("110")}
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n0", Labels: map[string]string{v1.LabelHostname: "n0"}}, Status: v1.NodeStatus{Capacity: res, Allocatable: res}}
	if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bound := func() int {
		list, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, p := range list.Items {
			if p.Spec.NodeName != "" {
				n++
			}
		}
		return n
	}
	waitBound := func(n int) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			return bound() == n, nil
		}); err != nil {
			t.Fatalf("want %d pods bound, got %d", n, bound())
		}
	}

	// Without the CRD the scheduler works by node capacity.
	if _, err := client.CoreV1().Pods("default").Create(ctx, guaranteed("before", "5"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitBound(1)

	// Install the CRD and publish zones: two NUMA zones of 8 CPU under
	// single-numa-node; 5 CPU are taken by "before" on zone node-0.
	if err := controlplane.InstallCRDDocuments(ctx, cp.Config, crd(t, "noderesourcetopologies")); err != nil {
		t.Fatal(err)
	}
	jsonCfg := rest.CopyConfig(cp.Config)
	jsonCfg.ContentType = runtime.ContentTypeJSON
	nrts := nrtclientset.NewForConfigOrDie(jsonCfg)
	eight, three := resource.MustParse("8"), resource.MustParse("3")
	obj := &nrtv1alpha2.NodeResourceTopology{
		ObjectMeta: metav1.ObjectMeta{Name: "n0"},
		Attributes: nrtv1alpha2.AttributeList{{Name: "topologyManagerPolicy", Value: "single-numa-node"}},
		Zones: nrtv1alpha2.ZoneList{
			{Name: "node-0", Type: "Node", Resources: nrtv1alpha2.ResourceInfoList{{Name: "cpu", Capacity: eight, Allocatable: eight, Available: three}}},
			{Name: "node-1", Type: "Node", Resources: nrtv1alpha2.ResourceInfoList{{Name: "cpu", Capacity: eight, Allocatable: eight, Available: eight}}},
		},
	}
	if _, err := nrts.TopologyV1alpha2().NodeResourceTopologies().Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The tracker polls discovery; give it time to find the new API.
	time.Sleep(15 * time.Second)

	// 6 CPU fit the node (11 free) and zone node-1 (8 free): bound. Then
	// 4 CPU fit the node's 5 free, but no zone (3 and 2 left): under
	// single-numa-node the pod must stay pending.
	if _, err := client.CoreV1().Pods("default").Create(ctx, guaranteed("fits-zone", "6"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitBound(2)
	if _, err := client.CoreV1().Pods("default").Create(ctx, guaranteed("fits-node-only", "4"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	p, err := client.CoreV1().Pods("default").Get(ctx, "fits-node-only", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.NodeName != "" {
		t.Fatal("the 4-CPU Guaranteed pod was placed where no NUMA zone holds it: the CRD installed late was not used")
	}
}
