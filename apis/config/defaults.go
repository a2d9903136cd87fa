package config

import "k8s.io/utils/ptr"

const (
	// DefaultScheduleTimeoutSeconds matches scheduler-plugins Coscheduling's
	// permit waiting time, so PodGroups written for it behave the same here.
	DefaultScheduleTimeoutSeconds int32 = 60
	// DefaultPodGroupSyncTimeoutSeconds is long enough for a busy apiserver
	// and short enough that a missing CRD is reported promptly.
	DefaultPodGroupSyncTimeoutSeconds int32 = 30
)

// SetDefaultsGangArgs fills the fields left unset.
func SetDefaultsGangArgs(args *GangArgs) {
	if args.DefaultScheduleTimeoutSeconds == nil {
		args.DefaultScheduleTimeoutSeconds = ptr.To(DefaultScheduleTimeoutSeconds)
	}
	if args.HeadReservation == nil {
		args.HeadReservation = ptr.To(true)
	}
	if args.PodGroupSyncTimeoutSeconds == nil {
		args.PodGroupSyncTimeoutSeconds = ptr.To(DefaultPodGroupSyncTimeoutSeconds)
	}
}
