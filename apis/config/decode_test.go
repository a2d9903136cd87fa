package config

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

func raw(s string) runtime.Object {
	return &runtime.Unknown{Raw: []byte(s), ContentType: runtime.ContentTypeJSON}
}

func TestDecodeGangArgsDefaults(t *testing.T) {
	for name, obj := range map[string]runtime.Object{"nil": nil, "empty": raw(""), "empty object": raw("{}")} {
		args, err := DecodeGangArgs(obj)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if *args.DefaultScheduleTimeoutSeconds != DefaultScheduleTimeoutSeconds || !*args.HeadReservation || !*args.Preemption ||
			*args.PodGroupSyncTimeoutSeconds != DefaultPodGroupSyncTimeoutSeconds || args.ScheduledEvents != ScheduledEventsPodGroup {
			t.Errorf("%s: defaults not applied: %+v", name, args)
		}
	}
}

func TestDecodeGangArgsKeepsValues(t *testing.T) {
	args, err := DecodeGangArgs(raw(`{"defaultScheduleTimeoutSeconds": 120, "headReservation": false, "scheduledEvents": "Pod"}`))
	if err != nil {
		t.Fatal(err)
	}
	if *args.DefaultScheduleTimeoutSeconds != 120 || *args.HeadReservation || args.ScheduledEvents != ScheduledEventsPod {
		t.Fatalf("values lost: %+v", args)
	}
	yamlArgs, err := DecodeGangArgs(&runtime.Unknown{Raw: []byte("defaultScheduleTimeoutSeconds: 7\n"), ContentType: runtime.ContentTypeYAML})
	if err != nil || *yamlArgs.DefaultScheduleTimeoutSeconds != 7 {
		t.Fatalf("YAML args: %v %+v", err, yamlArgs)
	}
}

func TestDecodeGangArgsRejectsNonsense(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"defaultScheduleTimeoutSeconds": 0}`, "args.defaultScheduleTimeoutSeconds: Invalid value: 0"},
		{`{"defaultScheduleTimeoutSeconds": 90000}`, "args.defaultScheduleTimeoutSeconds: Invalid value: 90000"},
		// The framework caps a Permit wait at 15 minutes; the gang's own
		// deadline must come first.
		{`{"defaultScheduleTimeoutSeconds": 900}`, "must be between 1 and 840 seconds"},
		{`{"podGroupSyncTimeoutSeconds": -1}`, "args.podGroupSyncTimeoutSeconds"},
		{`{"bindBudget": -1}`, "args.bindBudget: Invalid value: -1: must be between 0 (no pacing) and 100000"},
		{`{"scheduledEvents": "Node"}`, `args.scheduledEvents: Unsupported value: "Node": supported values: "PodGroup", "Pod"`},
		{`{"scheduleTimeoutSeconds": 10}`, `unknown field "scheduleTimeoutSeconds"`},
		{`{"headReservation": "yes"}`, "cannot unmarshal string"},
		{`[1,2]`, "cannot unmarshal array"},
		{`{"topologyLevels": ["rack", "rack"]}`, "args.topologyLevels[1]: Duplicate value"},
		{`{"topologyLevels": ["not a label!"]}`, "args.topologyLevels[0]: Invalid value"},
		{`{"topologyLevels": ["kubernetes.io/hostname", "rack"]}`, "must come last"},
	} {
		_, err := DecodeGangArgs(raw(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want error containing %q, got %v", tc.in, tc.want, err)
		}
	}
}

func TestDecodeGangArgsTyped(t *testing.T) {
	in := &GangArgs{}
	SetDefaultsGangArgs(in)
	*in.DefaultScheduleTimeoutSeconds = 5
	out, err := DecodeGangArgs(in)
	if err != nil || *out.DefaultScheduleTimeoutSeconds != 5 {
		t.Fatalf("typed args: %v %+v", err, out)
	}
	if out.DefaultScheduleTimeoutSeconds == in.DefaultScheduleTimeoutSeconds {
		t.Fatal("typed args must be copied, not shared")
	}
}
