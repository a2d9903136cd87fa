package gang

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/component-base/featuregate"
)

// FeatureGates are the kube-scheduler feature gates the Lockstep scheduler
// runs with by default; an admin's --feature-gates flag still wins.
//
// NominatedNodeNameForExpectation (on by default since Kubernetes 1.35)
// makes the scheduler patch nominatedNodeName on every pod that will wait
// at Permit, in the pod's binding goroutine, before it starts waiting. Every
// member of a gang but the last waits at Permit for the milliseconds its
// gang takes to assemble, so the gate costs one API call per member, and a
// released member cannot bind before its patch has gone through: the
// member that completes the quorum binds first and its siblings follow
// seconds later under load. Lockstep's plans hold the room in memory and a
// new leader replans, so the nominations buy nothing for gang members.
var FeatureGates = map[string]bool{
	"NominatedNodeNameForExpectation": false,
}

// SetFeatureDefaults applies FeatureGates to gate, before flags are parsed.
func SetFeatureDefaults(gate featuregate.MutableFeatureGate) error {
	if err := gate.SetFromMap(FeatureGates); err != nil {
		return fmt.Errorf("setting Lockstep's feature gate defaults: %w", err)
	}
	return nil
}

// FeatureGatesFlag is FeatureGates as a --feature-gates value.
func FeatureGatesFlag() string {
	parts := make([]string, 0, len(FeatureGates))
	for name, on := range FeatureGates {
		parts = append(parts, fmt.Sprintf("%s=%t", name, on))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}
