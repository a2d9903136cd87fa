// Package podgroup holds what the scheduler plugin and the controller agree
// on about PodGroups, scheduler-plugins' and Kubernetes' own: how a pod
// names its gang, how gangs are keyed, which pods count as members, and how
// timeouts default.
package podgroup

import (
	"fmt"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// Label is the pod label naming a pod's PodGroup, the one scheduler-plugins,
// the MPI Operator, the Training Operator and KubeRay set.
const Label = v1alpha1.PodGroupLabel

// PhaseScheduled is the phase between a gang's placement and its members
// running. scheduler-plugins has no constant for it; the CRD accepts any
// string.
const PhaseScheduled v1alpha1.PodGroupPhase = "Scheduled"

// GVR and GVK of the PodGroup API.
var (
	GroupVersion = v1alpha1.SchemeGroupVersion
	GVR          = GroupVersion.WithResource("podgroups")
	GVK          = GroupVersion.WithKind("PodGroup")
)

// NameOf returns the scheduler-plugins PodGroup a pod belongs to, by its
// label, or "" when it has none. A pod that names an upstream PodGroup
// (spec.schedulingGroup) belongs to that one only, label or not.
func NameOf(pod *v1.Pod) string {
	if UpstreamNameOf(pod) != "" {
		return ""
	}
	return pod.Labels[Label]
}

// Key identifies a gang across namespaces: PodGroups of the same name in
// different namespaces are different gangs.
func Key(namespace, name string) string {
	return namespace + "/" + name
}

// KeyOf returns the gang key of a pod, of either API, or "" when it
// belongs to no PodGroup.
func KeyOf(pod *v1.Pod) string {
	if name := UpstreamNameOf(pod); name != "" {
		return UpstreamKey(pod.Namespace, name)
	}
	name := NameOf(pod)
	if name == "" {
		return ""
	}
	return Key(pod.Namespace, name)
}

// MinMember returns the quorum, at least 1 (the CRD enforces it, but objects
// written by older CRDs may hold 0).
func MinMember(pg *v1alpha1.PodGroup) int {
	if pg.Spec.MinMember < 1 {
		return 1
	}
	return int(pg.Spec.MinMember)
}

// MaxTimeout caps how long a gang may hold what it reserves. The
// framework caps a Permit wait at 15 minutes, and the gang's own deadline
// (plus PermitGrace) must come first so that all waiting members are
// rejected together; a tenant must not hold room for longer either.
const MaxTimeout = 14 * time.Minute

// Timeout returns how long the gang may hold what it reserves: its own
// scheduleTimeoutSeconds when positive, else the default, at most
// MaxTimeout; capped reports that the PodGroup asked for more.
func Timeout(pg *v1alpha1.PodGroup, def time.Duration) (timeout time.Duration, capped bool) {
	timeout = def
	if s := pg.Spec.ScheduleTimeoutSeconds; s != nil && *s > 0 {
		timeout = time.Duration(*s) * time.Second
	}
	if timeout > MaxTimeout {
		return MaxTimeout, true
	}
	return timeout, false
}

// IsTerminal reports whether a pod has finished and no longer holds room.
func IsTerminal(pod *v1.Pod) bool {
	return pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed
}

// IsGated reports whether a pod still has scheduling gates; gated pods do
// not count toward the quorum.
func IsGated(pod *v1.Pod) bool {
	return len(pod.Spec.SchedulingGates) > 0
}

// IsBound reports whether a pod is assigned to a node.
func IsBound(pod *v1.Pod) bool {
	return pod.Spec.NodeName != ""
}

// Topology annotations a PodGroup may carry, each naming one of the
// scheduler's topology levels (a node label key).
const (
	// AnnotationRequiredTopology: the gang must fit one domain of this level.
	AnnotationRequiredTopology = "lockstep.io/required-topology"
	// AnnotationPreferredTopology: try this level first, then widen.
	AnnotationPreferredTopology = "lockstep.io/preferred-topology"
)

// Disruption annotations.
const (
	// AnnotationDisruptionMode says what happens to a started gang that
	// falls below minMember: Single (the default) keeps the remaining
	// members, All evicts them so that the job restarts the gang whole
	// (the upstream PodGroup's disruptionMode).
	AnnotationDisruptionMode = "lockstep.io/disruption-mode"
	// AnnotationIncomplete, set by lockstep-controller, says why a gang
	// that had started is below minMember; it goes when the gang is whole
	// again.
	AnnotationIncomplete = "lockstep.io/incomplete"
	// AnnotationEvicting, set by lockstep-controller in disruption mode
	// All, lists the UIDs of the members still to evict.
	AnnotationEvicting = "lockstep.io/evicting"
)

// AnnotationWaiting, set by lockstep-scheduler on a scheduler-plugins
// PodGroup whose gang has waited a moment, says why it waits
// ("WaitingForRoom: gang does not fit yet: ..."); it goes when the gang is
// placed. The shipped CRD shows it as a column of kubectl get podgroups.
const AnnotationWaiting = "lockstep.io/waiting"

// placementAnnotations are the annotations the scheduler reads to place a
// gang: its topology constraints, and an upstream PodGroup's priority and
// preemption policy as translated.
var placementAnnotations = []string{AnnotationRequiredTopology, AnnotationPreferredTopology, annotationPriority, annotationNeverPreempts}

// PlacementAnnotationsChanged reports whether an update changed an
// annotation the scheduler places the gang by. Any other annotation, and
// above all those Lockstep writes to report on the gang (its own
// lockstep.io/waiting among them), must not undo a plan.
func PlacementAnnotationsChanged(old, cur *v1alpha1.PodGroup) bool {
	for _, k := range placementAnnotations {
		a, aok := old.Annotations[k]
		b, bok := cur.Annotations[k]
		if a != b || aok != bok {
			return true
		}
	}
	return false
}

// TopologyConstraints reads and checks a PodGroup's topology annotations
// against the configured levels (widest first).
func TopologyConstraints(pg *v1alpha1.PodGroup, levels []string) (required, preferred string, err error) {
	index := func(key string) (string, int, error) {
		v, ok := pg.Annotations[key]
		if !ok {
			return "", -1, nil
		}
		for i, l := range levels {
			if l == v {
				return v, i, nil
			}
		}
		return "", -1, fmt.Errorf("annotation %s: %q is not a topology level of this scheduler (levels: %s)", key, v, strings.Join(levels, ", "))
	}
	required, ri, err := index(AnnotationRequiredTopology)
	if err != nil {
		return "", "", err
	}
	preferred, pi, err := index(AnnotationPreferredTopology)
	if err != nil {
		return "", "", err
	}
	if ri >= 0 && pi >= 0 && pi < ri {
		return "", "", fmt.Errorf("annotation %s: %q is wider than the required level %q", AnnotationPreferredTopology, preferred, required)
	}
	return required, preferred, nil
}

// Reference returns an object reference usable as the subject of an Event:
// the scheduler's recorder cannot derive one from a PodGroup by itself, as
// its scheme does not know the type.
func Reference(pg *v1alpha1.PodGroup) *v1.ObjectReference {
	apiVersion := GroupVersion.String()
	if IsUpstream(pg) {
		apiVersion = UpstreamGroupVersion.String()
	}
	return &v1.ObjectReference{
		APIVersion:      apiVersion,
		Kind:            GVK.Kind,
		Namespace:       pg.Namespace,
		Name:            pg.Name,
		UID:             pg.UID,
		ResourceVersion: pg.ResourceVersion,
	}
}

// DisruptionMode is what happens to a started gang below its quorum.
type DisruptionMode string

const (
	// DisruptionSingle keeps the remaining members.
	DisruptionSingle DisruptionMode = "Single"
	// DisruptionAll evicts the remaining members.
	DisruptionAll DisruptionMode = "All"
)

// DisruptionModeOf reads a PodGroup's disruption mode: Single when unset,
// and Single with an error naming the value when it is neither.
func DisruptionModeOf(pg *v1alpha1.PodGroup) (DisruptionMode, error) {
	switch v := DisruptionMode(pg.Annotations[AnnotationDisruptionMode]); v {
	case "", DisruptionSingle:
		return DisruptionSingle, nil
	case DisruptionAll:
		return DisruptionAll, nil
	default:
		return DisruptionSingle, fmt.Errorf("annotation %s: %q is not %s or %s; using %s", AnnotationDisruptionMode, v, DisruptionSingle, DisruptionAll, DisruptionSingle)
	}
}
