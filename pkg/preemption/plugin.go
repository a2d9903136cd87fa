// Package preemption is Lockstep's PostFilter for ordinary pods: the default
// scheduler's preemption (DefaultPreemption), except that it never takes a
// gang member as a victim. DefaultPreemption picks victims pod by pod and
// node by node, so it would leave the rest of a gang running without its
// quorum; an ordinary pod may preempt other ordinary pods of lower
// priority, and no part of a gang.
package preemption

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	configv1 "k8s.io/kube-scheduler/config/v1"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/defaultpreemption"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/feature"
	"k8s.io/kubernetes/pkg/scheduler/framework/preemption"
	"sigs.k8s.io/yaml"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// Name is the plugin's name in scheduler configurations.
const Name = "LockstepPreemption"

// Plugin is DefaultPreemption with gang members out of its victims' reach.
type Plugin struct {
	*defaultpreemption.DefaultPreemption
}

var (
	_ fwk.PostFilterPlugin = &Plugin{}
	_ fwk.PreEnqueuePlugin = &Plugin{}
)

// Name returns the plugin's name.
func (pl *Plugin) Name() string { return Name }

// New builds the plugin. Its args are DefaultPreemption's
// (minCandidateNodesPercentage, minCandidateNodesAbsolute), with the same
// defaults.
func New(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
	args, err := decodeArgs(obj)
	if err != nil {
		return nil, err
	}
	fts := feature.NewSchedulerFeaturesFromGates(utilfeature.DefaultFeatureGate)
	dp, err := defaultpreemption.New(ctx, args, h, fts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	dp.IsEligiblePod = eligible
	return &Plugin{DefaultPreemption: dp}, nil
}

// eligible refuses victims that hold a gang member: taking one would leave
// its gang partial.
func eligible(_ fwk.NodeInfo, victim preemption.Victim, _ *v1.Pod) bool {
	for _, p := range victim.Pods() {
		if podgroup.KeyOf(p.GetPod()) != "" {
			return false
		}
	}
	return true
}

// decodeArgs reads DefaultPreemption's args from the plugin's pluginConfig
// entry, none meaning the defaults.
func decodeArgs(obj runtime.Object) (*config.DefaultPreemptionArgs, error) {
	var in configv1.DefaultPreemptionArgs
	switch a := obj.(type) {
	case nil:
	case *config.DefaultPreemptionArgs:
		return a, nil
	case *runtime.Unknown:
		if len(a.Raw) > 0 {
			if err := yaml.UnmarshalStrict(a.Raw, &in); err != nil {
				return nil, fmt.Errorf("%s args: %w", Name, err)
			}
		}
	default:
		return nil, fmt.Errorf("%s args: got %T, want DefaultPreemptionArgs", Name, obj)
	}
	out := &config.DefaultPreemptionArgs{MinCandidateNodesPercentage: 10, MinCandidateNodesAbsolute: 100}
	if in.MinCandidateNodesPercentage != nil {
		out.MinCandidateNodesPercentage = *in.MinCandidateNodesPercentage
	}
	if in.MinCandidateNodesAbsolute != nil {
		out.MinCandidateNodesAbsolute = *in.MinCandidateNodesAbsolute
	}
	return out, nil
}
