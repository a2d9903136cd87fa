// Package report turns what the sandbox observed during a run into
// measures (per gang: wait, bind skew, nodes, racks, NUMA zones per pod), a
// text table and a self-contained HTML page. It is pure: it reads a Run and
// talks to no API server.
package report

import (
	"time"

	v1 "k8s.io/api/core/v1"
)

// Run is what the sandbox saw, with times to the millisecond as they were
// observed (the API's own timestamps only have seconds).
type Run struct {
	Start, End time.Time
	// TimedOut is true when the run ended before every object finished;
	// Interrupted when it was stopped (Ctrl-C) before that.
	TimedOut, Interrupted bool
	// Cluster describes the simulated cluster in one line.
	Cluster string
	Nodes   []Node
	Gangs   []Gang
	Pods    []Pod
	// Errors are the one-line problems with the input and the run.
	Errors []string
}

// Node is a simulated node as the report lays it out.
type Node struct {
	Name   string
	Rack   string
	Zone   string
	CPUs   int
	Memory int64
	// NUMAZones are the names of its NUMA zones, in order.
	NUMAZones []string
}

// Gang is a PodGroup.
type Gang struct {
	Namespace, Name string
	MinMember       int
	// RequiredTopology is the node label named by the PodGroup's
	// lockstep.io/required-topology annotation, "" when none.
	RequiredTopology string
	// Created is when the PodGroup was first seen.
	Created time.Time
	// Phase is the last phase in the PodGroup's status.
	Phase string
	// PhaseSeen is when each phase was first seen.
	PhaseSeen map[string]time.Time
}

// Key is namespace/name.
func (g Gang) Key() string { return g.Namespace + "/" + g.Name }

// Pod is one pod of the run.
type Pod struct {
	Namespace, Name string
	// Gang is the name of its PodGroup, "" for an ordinary pod.
	Gang     string
	Node     string
	CPUMilli int64
	Memory   int64
	// Created, Bound, Running and Finished are when the pod was first seen,
	// first seen with a node, first seen running, and first seen succeeded
	// or failed; zero when not (yet).
	Created, Bound, Running, Finished time.Time
	Phase                             v1.PodPhase
	Deleted                           bool
	// NUMAZones hold its CPUs, nil when unknown.
	NUMAZones []string
	// Rejected is kubelet's reason for refusing the pod at admission
	// (TopologyAffinityError), "" when it did not.
	Rejected string
}

// GangKey is the key of the pod's gang, "" for an ordinary pod.
func (p Pod) GangKey() string {
	if p.Gang == "" {
		return ""
	}
	return p.Namespace + "/" + p.Gang
}

// Terminal reports whether the pod is done: succeeded, failed or deleted.
func (p Pod) Terminal() bool {
	return p.Phase == v1.PodSucceeded || p.Phase == v1.PodFailed || p.Deleted
}
