package sandbox

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/lockstep-sched/lockstep/pkg/sandbox/report"
)

func TestFinished(t *testing.T) {
	now := time.Now()
	sub := &submitter{finished: true, created: created{
		pods:    3,
		groups:  map[string]bool{"ns/g": true, "ns/short": true},
		members: map[string]int{"ns/g": 2, "ns/short": 1},
	}}
	gangs := func(phase string) []report.Gang {
		return []report.Gang{
			{Namespace: "ns", Name: "g", MinMember: 1, Phase: phase},
			// Fewer pods than minMember: it can never start, so nobody
			// waits for it.
			{Namespace: "ns", Name: "short", MinMember: 2, Phase: "Pending"},
		}
	}
	done := report.Pod{Namespace: "ns", Name: "g-0", Gang: "g", Bound: now, Phase: v1.PodSucceeded}
	pending := report.Pod{Namespace: "ns", Name: "g-1", Gang: "g", Phase: v1.PodPending}
	shortPod := report.Pod{Namespace: "ns", Name: "s-0", Gang: "short", Phase: v1.PodPending}
	running := done
	running.Phase = v1.PodRunning

	for _, tc := range []struct {
		name             string
		run              report.Run
		sub              *submitter
		done, leftBehind bool
	}{
		{"submitting", report.Run{Gangs: gangs("Finished"), Pods: []report.Pod{done, done, done}}, &submitter{}, false, false},
		{"not all seen", report.Run{Gangs: gangs("Finished"), Pods: []report.Pod{done}}, sub, false, false},
		{"running", report.Run{Gangs: gangs("Running"), Pods: []report.Pod{running, done, shortPod}}, sub, false, false},
		{"phase not yet written", report.Run{Gangs: gangs("Running"), Pods: []report.Pod{done, done, shortPod}}, sub, false, false},
		// The short gang's pod waits forever; nobody waits for it.
		{"all done", report.Run{Gangs: gangs("Finished"), Pods: []report.Pod{done, done, shortPod}}, sub, true, false},
		{"left behind", report.Run{Gangs: gangs("Finished"), Pods: []report.Pod{done, pending, shortPod}}, sub, false, true},
		{"pending in a running gang", report.Run{Gangs: gangs("Running"), Pods: []report.Pod{done, pending, shortPod}}, sub, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, l := finished(tc.run, tc.sub)
			if d != tc.done || l != tc.leftBehind {
				t.Errorf("finished = %v, %v; want %v, %v", d, l, tc.done, tc.leftBehind)
			}
		})
	}
}
