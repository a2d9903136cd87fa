package config

import (
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
	return errs.ToAggregate()
}
