package config

import "k8s.io/utils/ptr"

const (
	// DefaultScheduleTimeoutSeconds matches scheduler-plugins Coscheduling's
	// permit waiting time, so PodGroups written for it behave the same here.
	DefaultScheduleTimeoutSeconds int32 = 60
	// DefaultBindBudget keeps two gangs of 8 binding at once. Measured by
	// make bench (2026-11-23, with one Placed Event per gang): on 1000
	// nodes with 250 gangs of 8, budget 8 gives bind skew p99 14-20 ms at
	// 1.84x the default scheduler's throughput, 12 gives 28 ms, 16 gives
	// 35 ms at 2.03x; with 1000 ordinary pods beside 60 gangs, 87-724 ms
	// at 8 against 520 ms at 16. 16 stays the default until elastic gangs'
	// extra members are placed as reliably at 8 (the sandbox's elastic
	// example leaves extras behind at 8 now and then); set 8 for the
	// tightest skew.
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
	if args.Preemption == nil {
		args.Preemption = ptr.To(true)
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
