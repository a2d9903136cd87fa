// Command lockstep-scheduler is kube-scheduler with Lockstep's gang plugin
// registered. It is configured by an ordinary KubeSchedulerConfiguration; see
// manifests/scheduler-config.yaml.
package main

import (
	"fmt"
	"os"

	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric

	"github.com/lockstep-sched/lockstep/cmd/lockstep-scheduler/app"
	"github.com/lockstep-sched/lockstep/pkg/gang"
)

func main() {
	// Lockstep's gate defaults go in before the flags are parsed, so an
	// admin's --feature-gates still wins.
	if err := gang.SetFeatureDefaults(utilfeature.DefaultMutableFeatureGate); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(cli.Run(app.NewCommand()))
}
