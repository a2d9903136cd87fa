package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-base/metrics/legacyregistry"
)

// The scheduler's /metrics (kube-scheduler serves this registry there)
// carries the gang metrics once gangs were placed and refused: attempts by
// result under kube-scheduler's pod-group names, the time to a gang's
// quorum bound and its bind skew, and the gangs waiting by reason.
func TestMetricsEndpoint(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 2, nodeSpec{cpu: "8", mem: "32Gi"})
	e.createGang("fits", 4, 4, podSpec{cpu: "2"})
	e.waitGangBound("fits", 4, bindBy)
	e.createGang("wide", 3, 3, podSpec{cpu: "16"})
	e.waitEvent("PodGroup", "wide", "gang can never fit this cluster", 30*time.Second)
	e.createGang("short", 3, 1, podSpec{cpu: "1"})
	e.waitEvent("PodGroup", "short", "1/3 members exist", 30*time.Second)

	srv := httptest.NewServer(legacyregistry.Handler())
	defer srv.Close()
	want := []string{
		`scheduler_podgroup_schedule_attempts_total{profile="lockstep",result="scheduled"}`,
		`scheduler_podgroup_schedule_attempts_total{profile="lockstep",result="unschedulable"}`,
		`scheduler_podgroup_scheduling_attempt_duration_seconds_count{profile="lockstep",result="scheduled"}`,
		`lockstep_gang_scheduling_duration_seconds_count{profile="lockstep"}`,
		`lockstep_gang_bind_skew_seconds_count{profile="lockstep"}`,
		`lockstep_gangs_waiting{reason="members"} 1`,
		`lockstep_gangs_waiting{reason="never_fits"} 1`,
		`lockstep_held_cpu_cores{holder="plan"}`,
		`lockstep_gang_nodes_over_ideal_count`,
	}
	var body string
	e.waitFor("every gang metric on /metrics", 30*time.Second, func() bool {
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			return false
		}
		body = string(data)
		for _, w := range want {
			if !strings.Contains(body, w) {
				return false
			}
		}
		return true
	})
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "scheduler_podgroup_schedule_attempts_total") || strings.HasPrefix(line, "lockstep_gangs_waiting") {
			t.Log(line)
		}
	}
}

// kubectl get podgroups shows why a gang waits: the shipped CRD's Waiting
// column, from the annotation the scheduler keeps, read here as kubectl
// reads it (the apiserver's Table), and emptied once the gang is placed.
func TestWaitingColumn(t *testing.T) {
	e := newEnv(t)
	e.addNodes("n", 1, nodeSpec{cpu: "8", mem: "32Gi"})
	e.createGang("pair", 2, 2, podSpec{cpu: "6"})
	column := func() string {
		raw, err := e.pgs.SchedulingV1alpha1().RESTClient().Get().
			AbsPath("/apis/scheduling.x-k8s.io/v1alpha1/namespaces", e.ns, "podgroups", "pair").
			SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").Do(e.ctx).Raw()
		if err != nil {
			t.Fatal(err)
		}
		var table metav1.Table
		if err := json.Unmarshal(raw, &table); err != nil {
			t.Fatal(err)
		}
		for i, c := range table.ColumnDefinitions {
			if c.Name == "Waiting" && len(table.Rows) == 1 {
				v, _ := table.Rows[0].Cells[i].(string)
				return v
			}
		}
		t.Fatalf("no Waiting column in %+v", table.ColumnDefinitions)
		return ""
	}
	var got string
	e.waitFor("the Waiting column filled", 30*time.Second, func() bool {
		got = column()
		return strings.Contains(got, "gang can never fit this cluster")
	})
	t.Logf("kubectl get podgroups: Waiting=%q", got)
	e.addNodes("more", 1, nodeSpec{cpu: "8", mem: "32Gi"})
	e.waitGangBound("pair", 2, bindBy)
	e.waitFor("the Waiting column emptied", 30*time.Second, func() bool { return column() == "" })
}
