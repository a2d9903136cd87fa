package workload

import (
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

const good = `# a comment-only document is skipped
---
apiVersion: scheduling.x-k8s.io/v1alpha1
kind: PodGroup
metadata: {name: g, namespace: team, annotations: {lockstep.io/submit-after-seconds: "2.5"}}
spec: {minMember: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: g-0, namespace: team, labels: {scheduling.x-k8s.io/pod-group: g}}
spec: {containers: [{name: c, image: i, resources: {requests: {cpu: "1"}}}]}
---
apiVersion: v1
kind: Pod
metadata: {name: g-1, namespace: team, labels: {scheduling.x-k8s.io/pod-group: g}, annotations: {lockstep.io/submit-after-seconds: "1"}}
spec: {schedulerName: scheduler-plugins-scheduler, containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: plain, annotations: {lockstep.io/run-seconds: "3"}}
spec: {schedulerName: default-scheduler, containers: [{name: c, image: i}]}
`

func TestParseGood(t *testing.T) {
	objs, errs := Parse("good.yaml", []byte(good))
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	if len(objs) != 4 {
		t.Fatalf("got %d objects, want 4", len(objs))
	}
	if objs[0].PodGroup == nil || objs[0].SubmitAfter != 2500*time.Millisecond {
		t.Errorf("PodGroup = %+v, want delay 2.5s", objs[0])
	}
	if p := objs[1].Pod; p.Spec.SchedulerName != SchedulerName || p.Namespace != "team" {
		t.Errorf("g-0: scheduler %q namespace %q, want lockstep in team", p.Spec.SchedulerName, p.Namespace)
	}
	if p := objs[2].Pod; p.Spec.SchedulerName != "scheduler-plugins-scheduler" {
		t.Errorf("g-1 scheduler = %q, want it kept", p.Spec.SchedulerName)
	}
	plain := objs[3].Pod
	if plain.Namespace != "default" || plain.Spec.SchedulerName != SchedulerName {
		t.Errorf("plain: namespace %q scheduler %q, want default and lockstep", plain.Namespace, plain.Spec.SchedulerName)
	}
	if got := RunTime(plain, time.Second); got != 3*time.Second {
		t.Errorf("RunTime = %s, want 3s", got)
	}
	if got := RunTime(objs[1].Pod, time.Second); got != time.Second {
		t.Errorf("RunTime without annotation = %s, want the default", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"unsupported kind",
			"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
			"examples/bad.yaml: Deployment/web: kind Deployment is not supported (only Pod, PodGroup)"},
		{"not YAML",
			"apiVersion: v1\nkind: Pod\nmetadata: {name: [x\n",
			"examples/bad.yaml: document 1: not valid YAML: "},
		{"no kind",
			"apiVersion: v1\nmetadata: {name: x}\n",
			"examples/bad.yaml: document 1: no kind"},
		{"no name",
			"apiVersion: v1\nkind: Pod\nmetadata: {generateName: x-}\nspec: {containers: [{name: c, image: i}]}\n",
			"examples/bad.yaml: document 1: Pod has no metadata.name"},
		{"other scheduler",
			"apiVersion: v1\nkind: Pod\nmetadata: {name: v}\nspec: {schedulerName: volcano, containers: [{name: c, image: i}]}\n",
			`examples/bad.yaml: Pod/v: schedulerName "volcano" is not supported (use lockstep, scheduler-plugins-scheduler or default-scheduler)`},
		{"unknown field",
			"apiVersion: v1\nkind: Pod\nmetadata: {name: u}\nspec: {containerz: []}\n",
			`examples/bad.yaml: Pod/u: `},
		{"wrong apiVersion",
			"apiVersion: scheduling.x-k8s.io/v1\nkind: PodGroup\nmetadata: {name: g}\nspec: {minMember: 1}\n",
			`examples/bad.yaml: PodGroup/g: apiVersion "scheduling.x-k8s.io/v1" is not supported for PodGroup (want scheduling.x-k8s.io/v1alpha1 or scheduling.k8s.io/v1beta1)`},
		{"node name",
			"apiVersion: v1\nkind: Pod\nmetadata: {name: pinned}\nspec: {nodeName: node-1, containers: [{name: c, image: i}]}\n",
			"examples/bad.yaml: Pod/pinned: spec.nodeName is set"},
		{"bad delay",
			"apiVersion: v1\nkind: Pod\nmetadata: {name: d, annotations: {lockstep.io/submit-after-seconds: soon}}\nspec: {containers: [{name: c, image: i}]}\n",
			`examples/bad.yaml: Pod/d: annotation lockstep.io/submit-after-seconds: "soon" is not a number of seconds`},
		{"negative run time",
			"apiVersion: v1\nkind: Pod\nmetadata: {name: r, annotations: {lockstep.io/run-seconds: \"-1\"}}\nspec: {containers: [{name: c, image: i}]}\n",
			`examples/bad.yaml: Pod/r: annotation lockstep.io/run-seconds: "-1" is not a number of seconds`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, errs := Parse("examples/bad.yaml", []byte(tc.doc))
			if len(objs) != 0 || len(errs) != 1 {
				t.Fatalf("got %d objects and errors %v, want one error", len(objs), errs)
			}
			msg := errs[0].Error()
			if !strings.HasPrefix(msg, tc.want) {
				t.Errorf("error\n  %s\nwant prefix\n  %s", msg, tc.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
		})
	}
}

// A bad document costs itself only: the documents around it still load.
func TestParseGoesOnAfterErrors(t *testing.T) {
	data := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
---
apiVersion: v1
kind: Pod
metadata: {name: ok-1}
spec: {containers: [{name: c, image: i}]}
---
this is: [not yaml
---
apiVersion: v1
kind: Pod
metadata: {name: ok-2}
spec: {containers: [{name: c, image: i}]}
`
	objs, errs := Parse("f.yaml", []byte(data))
	if len(objs) != 2 || objs[0].Pod.Name != "ok-1" || objs[1].Pod.Name != "ok-2" {
		t.Errorf("objects = %v, want ok-1 and ok-2", objs)
	}
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "Deployment/web") || !strings.Contains(errs[1].Error(), "document 3") {
		t.Errorf("errors = %v, want Deployment/web and document 3", errs)
	}
}

func TestCheck(t *testing.T) {
	files := fstest.MapFS{
		"a.yaml": {Data: []byte(good)},
		"b.yaml": {Data: []byte(`apiVersion: v1
kind: Pod
metadata: {name: plain}
spec: {containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: orphan, namespace: team, labels: {scheduling.x-k8s.io/pod-group: nobody}}
spec: {containers: [{name: c, image: i}]}
---
apiVersion: scheduling.x-k8s.io/v1alpha1
kind: PodGroup
metadata: {name: short, namespace: team}
spec: {minMember: 3}
---
apiVersion: v1
kind: Pod
metadata: {name: short-0, namespace: team, labels: {scheduling.x-k8s.io/pod-group: short}}
spec: {containers: [{name: c, image: i}]}
`)},
	}
	objs, errs := LoadFS(files, "w")
	var refs []string
	for _, o := range objs {
		refs = append(refs, o.Ref())
	}
	// plain first (no delay), then g-1 (its own 1s), then the PodGroup and
	// g-0, which inherits the PodGroup's 2.5s.
	want := "Pod/plain Pod/g-1 PodGroup/g Pod/g-0"
	if got := strings.Join(refs, " "); got != want {
		t.Errorf("submission order = %s, want %s", got, want)
	}
	if objs[3].SubmitAfter != 2500*time.Millisecond {
		t.Errorf("g-0 delay = %s, want its PodGroup's 2.5s", objs[3].SubmitAfter)
	}
	wantErrs := []string{
		"w/b.yaml: Pod/plain: namespace default already has this Pod (from w/a.yaml); keeping the first",
		"w/b.yaml: PodGroup/short: minMember is 3 but only 1 pods name it",
		"w/b.yaml: Pod/orphan: PodGroup team/nobody is in no workload file",
	}
	if len(errs) != len(wantErrs) {
		t.Fatalf("errors = %v, want %d", errs, len(wantErrs))
	}
	for _, w := range wantErrs {
		found := false
		for _, e := range errs {
			found = found || strings.HasPrefix(e.Error(), w)
		}
		if !found {
			t.Errorf("no error starting %q in %v", w, errs)
		}
	}
	if ns := Namespaces(objs); strings.Join(ns, ",") != "default,team" {
		t.Errorf("Namespaces = %v", ns)
	}
}

func TestLoadFilesMissing(t *testing.T) {
	_, errs := LoadFiles([]string{"does-not-exist.yaml"})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "does-not-exist.yaml") {
		t.Errorf("errors = %v", errs)
	}
}

// Kubernetes' own PodGroups are workload objects too: their pods join by
// spec.schedulingGroup, and a gang of either API may share a name.
func TestUpstreamPodGroups(t *testing.T) {
	files := fstest.MapFS{"u.yaml": {Data: []byte(`apiVersion: scheduling.k8s.io/v1beta1
kind: PodGroup
metadata: {name: g, namespace: team}
spec: {schedulingPolicy: {gang: {minCount: 2}}}
---
apiVersion: scheduling.x-k8s.io/v1alpha1
kind: PodGroup
metadata: {name: g, namespace: team}
spec: {minMember: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: legacy, namespace: team, labels: {scheduling.x-k8s.io/pod-group: g}}
spec: {containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: up-0, namespace: team}
spec: {schedulingGroup: {podGroupName: g}, containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: up-1, namespace: team}
spec: {schedulingGroup: {podGroupName: g}, containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: lost, namespace: team}
spec: {schedulingGroup: {podGroupName: nobody}, containers: [{name: c, image: i}]}
`)}}
	objs, errs := LoadFS(files, "w")
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "w/u.yaml: Pod/lost: PodGroup team/nobody (scheduling.k8s.io/v1beta1) is in no workload file") {
		t.Errorf("errors = %v", errs)
	}
	if len(objs) != 5 {
		t.Fatalf("objects = %d, want 5 (both PodGroups and their pods)", len(objs))
	}
	up := objs[0]
	if up.Upstream == nil || up.PodGroup == nil || podgroup.MinMember(up.PodGroup) != 2 || !podgroup.IsUpstream(up.PodGroup) {
		t.Errorf("upstream PodGroup object = %+v", up)
	}
}
