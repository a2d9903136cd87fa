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

// DefaultTopologyLevels are the well-known zone label, the rack label
// most clusters use, and the hostname.
var DefaultTopologyLevels = []string{"topology.kubernetes.io/zone", "topology.kubernetes.io/rack", "kubernetes.io/hostname"}

// SetDefaultsGangArgs fills the fields left unset.
func SetDefaultsGangArgs(args *GangArgs) {
	if args.DefaultScheduleTimeoutSeconds == nil {
		args.DefaultScheduleTimeoutSeconds = ptr.To(DefaultScheduleTimeoutSeconds)
	}
	if args.HeadReservation == nil {
		args.HeadReservation = ptr.To(true)
	}
	if args.TopologyLevels == nil {
		args.TopologyLevels = append([]string(nil), DefaultTopologyLevels...)
	}
	if args.PodGroupSyncTimeoutSeconds == nil {
		args.PodGroupSyncTimeoutSeconds = ptr.To(DefaultPodGroupSyncTimeoutSeconds)
	}
}
