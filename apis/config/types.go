package config

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GangArgs are the arguments of the Gang plugin.
// +kubebuilder:object:root=true
type GangArgs struct {
	metav1.TypeMeta `json:",inline"`

	// DefaultScheduleTimeoutSeconds is how long a gang may hold what it has
	// (a plan, members waiting at Permit, a head-of-queue reservation) before
	// everything is released, for PodGroups whose scheduleTimeoutSeconds is 0
	// or unset.
	DefaultScheduleTimeoutSeconds *int32 `json:"defaultScheduleTimeoutSeconds,omitempty"`

	// HeadReservation turns on the head-of-queue reservation: the oldest
	// highest-priority gang that does not fit yet keeps the room that frees
	// for it, so younger gangs cannot starve it.
	HeadReservation *bool `json:"headReservation,omitempty"`

	// Preemption lets a gang that does not fit evict pods of lower
	// priority, only when its quorum then fits, and only whole: ordinary
	// pods, and gangs with all their bound members. PodDisruptionBudgets
	// and preemptionPolicy: Never are honoured.
	Preemption *bool `json:"preemption,omitempty"`

	// TopologyLevels are node label keys naming topology domains, widest
	// first, hostname last. A gang goes to the narrowest domain that holds
	// it; levels no node carries are skipped. PodGroups may name a level in
	// the lockstep.io/required-topology and lockstep.io/preferred-topology
	// annotations.
	TopologyLevels []string `json:"topologyLevels,omitempty"`

	// BindBudget bounds how many released gang members may be binding at
	// once. A gang whose quorum is placed waits at Permit, in order, until
	// the members released before it are bound down to the budget, so that
	// the apiserver binds each gang's members together instead of
	// interleaving hundreds of gangs. A gang larger than the budget goes
	// once fewer than the budget are binding. 0 turns pacing off.
	BindBudget *int32 `json:"bindBudget,omitempty"`

	// ScheduledEvents says where a gang member's successful placement is
	// reported. PodGroup (the default): one Placed Event per gang on its
	// PodGroup names every member's node, and kube-scheduler's Scheduled
	// Event per member pod is not recorded, so a gang of n costs n bindings
	// and one Event instead of n bindings and n+1 Events. Pod: every member
	// also gets kube-scheduler's Scheduled Event.
	ScheduledEvents ScheduledEvents `json:"scheduledEvents,omitempty"`

	// PodGroupSyncTimeoutSeconds bounds how long the plugin waits at start-up
	// for its PodGroup informer to sync before it starts anyway and reports
	// the failure (the CRD may not be installed).
	PodGroupSyncTimeoutSeconds *int32 `json:"podGroupSyncTimeoutSeconds,omitempty"`
}

// ScheduledEvents names where a gang member's placement is reported.
type ScheduledEvents string

const (
	// ScheduledEventsPodGroup records one Event per gang on its PodGroup.
	ScheduledEventsPodGroup ScheduledEvents = "PodGroup"
	// ScheduledEventsPod also records kube-scheduler's Event on every member.
	ScheduledEventsPod ScheduledEvents = "Pod"
)
