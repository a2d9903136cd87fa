package config

import "k8s.io/utils/ptr"

const (
	// DefaultScheduleTimeoutSeconds matches scheduler-plugins Coscheduling's
	// permit waiting time, so PodGroups written for it behave the same here.
	DefaultScheduleTimeoutSeconds int32 = 60
	// DefaultBindBudget keeps two gangs of 8 binding at once. Measured on
	// 1000 nodes with 250 gangs of 8 (make bench): budget 8, bind skew p99
	// 24 ms and 1.20x the default scheduler's throughput; 16, 36 ms and
	// 1.40x; 32, 89 ms and 1.39x; 64, 298 ms; unbounded, 1.2 s.
	DefaultBindBudget int32 = 16
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
	if args.BindBudget == nil {
		args.BindBudget = ptr.To(DefaultBindBudget)
	}
	if args.ScheduledEvents == "" {
		args.ScheduledEvents = ScheduledEventsPodGroup
	}
	if args.PodGroupSyncTimeoutSeconds == nil {
		args.PodGroupSyncTimeoutSeconds = ptr.To(DefaultPodGroupSyncTimeoutSeconds)
	}
}
