package integration

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
