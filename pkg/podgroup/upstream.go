package podgroup

import (
	"maps"
	"strconv"

	v1 "k8s.io/api/core/v1"
	schedulingv1beta1 "k8s.io/api/scheduling/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// Kubernetes' own PodGroup API (scheduling.k8s.io/v1beta1, served with the
// GenericWorkload feature gate). A pod joins one of its PodGroups with
// spec.schedulingGroup.podGroupName, not with a label.
var (
	UpstreamGroupVersion = schedulingv1beta1.SchemeGroupVersion
	UpstreamGVR          = UpstreamGroupVersion.WithResource("podgroups")
)

// upstreamKeyInfix keeps the gangs of the two APIs apart: a scheduler-plugins
// PodGroup and an upstream one may have the same name in a namespace.
const upstreamKeyInfix = "/" + "scheduling.k8s.io" + "/"

// UpstreamNameOf returns the upstream PodGroup a pod belongs to, or "".
func UpstreamNameOf(pod *v1.Pod) string {
	if g := pod.Spec.SchedulingGroup; g != nil && g.PodGroupName != nil {
		return *g.PodGroupName
	}
	return ""
}

// Belongs reports whether a pod is a member of pg, of either API.
func Belongs(pod *v1.Pod, pg *v1alpha1.PodGroup) bool {
	if pod.Namespace != pg.Namespace {
		return false
	}
	if IsUpstream(pg) {
		return UpstreamNameOf(pod) == pg.Name
	}
	return NameOf(pod) == pg.Name
}

// UpstreamKey identifies the gang of an upstream PodGroup.
func UpstreamKey(namespace, name string) string {
	return namespace + upstreamKeyInfix + name
}

// KeyOfGroup returns the gang key of a PodGroup as the gang core sees it:
// a scheduler-plugins PodGroup, or an upstream one translated by
// FromUpstream.
func KeyOfGroup(pg *v1alpha1.PodGroup) string {
	if IsUpstream(pg) {
		return UpstreamKey(pg.Namespace, pg.Name)
	}
	return Key(pg.Namespace, pg.Name)
}

// IsUpstream reports whether pg was translated from an upstream PodGroup:
// its apiVersion says so, which no scheduler-plugins object can.
func IsUpstream(pg *v1alpha1.PodGroup) bool {
	return pg.APIVersion == UpstreamGroupVersion.String()
}

// FromUpstream translates an upstream PodGroup into the one shape the gang
// core and its Events work with, so that both APIs get the same contract:
// gang.minCount is the quorum (a basic policy is a quorum of one), the
// topology constraint is the required topology level, and the disruption
// mode is the gang's. The result is new and keeps the object's identity
// (namespace, name, UID, resource version, creation time) and its
// annotations.
func FromUpstream(up *schedulingv1beta1.PodGroup) *v1alpha1.PodGroup {
	pg := &v1alpha1.PodGroup{
		TypeMeta: metav1.TypeMeta{APIVersion: UpstreamGroupVersion.String(), Kind: "PodGroup"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace:         up.Namespace,
			Name:              up.Name,
			UID:               up.UID,
			ResourceVersion:   up.ResourceVersion,
			Generation:        up.Generation,
			CreationTimestamp: up.CreationTimestamp,
			DeletionTimestamp: up.DeletionTimestamp,
			Labels:            maps.Clone(up.Labels),
			Annotations:       maps.Clone(up.Annotations),
		},
	}
	pg.Spec.MinMember = 1
	if g := up.Spec.SchedulingPolicy.Gang; g != nil {
		pg.Spec.MinMember = g.MinCount
	}
	set := func(key, value string) {
		if pg.Annotations == nil {
			pg.Annotations = map[string]string{}
		}
		pg.Annotations[key] = value
	}
	if c := up.Spec.SchedulingConstraints; c != nil && len(c.Topology) > 0 {
		// The API allows one constraint; its key must be one of the
		// scheduler's levels, which TopologyConstraints checks.
		set(AnnotationRequiredTopology, c.Topology[0].Key)
	}
	if d := up.Spec.DisruptionMode; d != nil {
		switch {
		case d.All != nil:
			set(AnnotationDisruptionMode, string(DisruptionAll))
		case d.Single != nil:
			set(AnnotationDisruptionMode, string(DisruptionSingle))
		}
	}
	// Only the translation may say these: on the object itself they are
	// anyone's to write.
	delete(pg.Annotations, annotationPriority)
	delete(pg.Annotations, annotationNeverPreempts)
	if up.Spec.Priority != nil {
		set(annotationPriority, strconv.Itoa(int(*up.Spec.Priority)))
	}
	if p := up.Spec.PreemptionPolicy; p != nil && *p == schedulingv1beta1.PreemptNever {
		set(annotationNeverPreempts, "true")
	}
	return pg
}

// An upstream PodGroup's priority (set by the Priority admission plugin
// from its priorityClassName) and preemptionPolicy, carried by its
// translation. They mean nothing on a scheduler-plugins PodGroup, whose
// owner could write any value there.
const (
	annotationPriority      = "internal.lockstep.io/priority"
	annotationNeverPreempts = "internal.lockstep.io/never-preempts"
)

// GroupPriority returns the priority an upstream PodGroup gives its gang,
// ok false when it gives none (the members' own priority counts then).
func GroupPriority(pg *v1alpha1.PodGroup) (priority int32, ok bool) {
	if !IsUpstream(pg) {
		return 0, false
	}
	v, set := pg.Annotations[annotationPriority]
	if !set {
		return 0, false
	}
	p, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, false
	}
	return int32(p), true
}

// GroupNeverPreempts reports whether an upstream PodGroup's
// preemptionPolicy is Never.
func GroupNeverPreempts(pg *v1alpha1.PodGroup) bool {
	return IsUpstream(pg) && pg.Annotations[annotationNeverPreempts] == "true"
}
