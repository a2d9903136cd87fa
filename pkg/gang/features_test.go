package gang

import (
	"testing"

	"k8s.io/component-base/featuregate"
	"k8s.io/kubernetes/pkg/features"
)

func TestSetFeatureDefaults(t *testing.T) {
	gate := featuregate.NewFeatureGate()
	if err := gate.Add(map[featuregate.Feature]featuregate.FeatureSpec{
		features.NominatedNodeNameForExpectation: {Default: true, PreRelease: featuregate.Beta},
	}); err != nil {
		t.Fatal(err)
	}
	if err := SetFeatureDefaults(gate); err != nil {
		t.Fatal(err)
	}
	if gate.Enabled(features.NominatedNodeNameForExpectation) {
		t.Error("NominatedNodeNameForExpectation must be off by default in Lockstep")
	}
	if got, want := FeatureGatesFlag(), "NominatedNodeNameForExpectation=false"; got != want {
		t.Errorf("flag %q, want %q", got, want)
	}
}
