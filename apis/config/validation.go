package config

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// maxScheduleTimeoutSeconds is the longest a gang may hold what it
// reserves: the framework caps a Permit wait at 15 minutes, and the gang's
// own deadline must come first (podgroup.MaxTimeout).
const maxScheduleTimeoutSeconds = 14 * 60

// maxBindBudget is far above what any apiserver binds at once.
const maxBindBudget = 100000

// maxSyncTimeoutSeconds bounds the start-up wait for the PodGroup informer.
const maxSyncTimeoutSeconds = 24 * 60 * 60

// ValidateGangArgs checks defaulted args and names every bad field.
func ValidateGangArgs(path *field.Path, args *GangArgs) error {
	var errs field.ErrorList
	checkSeconds := func(name string, v *int32, max int32) {
		if v == nil {
			errs = append(errs, field.Required(path.Child(name), "must be set"))
			return
		}
		if *v <= 0 || *v > max {
			errs = append(errs, field.Invalid(path.Child(name), *v, fmt.Sprintf("must be between 1 and %d seconds", max)))
		}
	}
	checkSeconds("defaultScheduleTimeoutSeconds", args.DefaultScheduleTimeoutSeconds, maxScheduleTimeoutSeconds)
	checkSeconds("podGroupSyncTimeoutSeconds", args.PodGroupSyncTimeoutSeconds, maxSyncTimeoutSeconds)
	switch b := args.BindBudget; {
	case b == nil:
		errs = append(errs, field.Required(path.Child("bindBudget"), "must be set"))
	case *b < 0 || *b > maxBindBudget:
		errs = append(errs, field.Invalid(path.Child("bindBudget"), *b, fmt.Sprintf("must be between 0 (no pacing) and %d", maxBindBudget)))
	}
	switch args.ScheduledEvents {
	case ScheduledEventsPodGroup, ScheduledEventsPod:
	default:
		errs = append(errs, field.NotSupported(path.Child("scheduledEvents"), args.ScheduledEvents,
			[]ScheduledEvents{ScheduledEventsPodGroup, ScheduledEventsPod}))
	}
	seen := map[string]bool{}
	for i, level := range args.TopologyLevels {
		p := path.Child("topologyLevels").Index(i)
		for _, msg := range validation.IsQualifiedName(level) {
			errs = append(errs, field.Invalid(p, level, "must be a node label key: "+msg))
		}
		if seen[level] {
			errs = append(errs, field.Duplicate(p, level))
		}
		seen[level] = true
		if level == "kubernetes.io/hostname" && i != len(args.TopologyLevels)-1 {
			errs = append(errs, field.Invalid(p, level, "the hostname level is the narrowest and must come last"))
		}
	}
	return errs.ToAggregate()
}
