package config

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// FuzzDecodeGangArgs: whatever an admin writes as the plugin's args, in
// JSON or YAML, decoding never panics, and args it accepts are complete and
// valid.
func FuzzDecodeGangArgs(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `null`, `[]`,
		`{"defaultScheduleTimeoutSeconds": 60, "headReservation": true, "bindBudget": 16}`,
		`{"topologyLevels": ["topology.kubernetes.io/zone", "kubernetes.io/hostname"], "scheduledEvents": "Pod"}`,
		`{"defaultScheduleTimeoutSeconds": -1}`, `{"bindBudget": 1e10}`, `{"topologyLevels": [""]}`,
		"defaultScheduleTimeoutSeconds: 30\nheadReservation: false\n",
		`{"podGroupSyncTimeoutSeconds": 2147483647, "unknown": 1}`,
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, asYAML bool) {
		contentType := runtime.ContentTypeJSON
		if asYAML {
			contentType = runtime.ContentTypeYAML
		}
		args, err := DecodeGangArgs(&runtime.Unknown{Raw: data, ContentType: contentType})
		if err != nil {
			return
		}
		if args.DefaultScheduleTimeoutSeconds == nil || args.HeadReservation == nil || args.Preemption == nil || args.BindBudget == nil ||
			args.PodGroupSyncTimeoutSeconds == nil || args.TopologyLevels == nil || args.ScheduledEvents == "" {
			t.Fatalf("accepted args left unset: %+v", args)
		}
		if err := ValidateGangArgs(field.NewPath("args"), args); err != nil {
			t.Fatalf("accepted args do not validate: %v", err)
		}
		if *args.DefaultScheduleTimeoutSeconds < 1 || *args.DefaultScheduleTimeoutSeconds > maxScheduleTimeoutSeconds {
			t.Fatalf("timeout out of range: %d", *args.DefaultScheduleTimeoutSeconds)
		}
	})
}
