package config

import (
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// maxTimeoutSeconds caps timeouts at one day: a gang holding capacity longer
// than that is a configuration mistake, not a policy.
const maxTimeoutSeconds = 24 * 60 * 60

// ValidateGangArgs checks defaulted args and names every bad field.
func ValidateGangArgs(path *field.Path, args *GangArgs) error {
	var errs field.ErrorList
	checkSeconds := func(name string, v *int32) {
		if v == nil {
			errs = append(errs, field.Required(path.Child(name), "must be set"))
			return
		}
		if *v <= 0 || *v > maxTimeoutSeconds {
			errs = append(errs, field.Invalid(path.Child(name), *v, "must be between 1 and 86400 seconds"))
		}
	}
	checkSeconds("defaultScheduleTimeoutSeconds", args.DefaultScheduleTimeoutSeconds)
	checkSeconds("podGroupSyncTimeoutSeconds", args.PodGroupSyncTimeoutSeconds)
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
