// Command lockstep-scheduler is kube-scheduler with Lockstep's gang plugin
// registered. It is configured by an ordinary KubeSchedulerConfiguration; see
// manifests/scheduler-config.yaml.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"github.com/lockstep-sched/lockstep/pkg/gang"
)

func main() {
	cmd := app.NewSchedulerCommand(app.WithPlugin(gang.Name, gang.NewFactory()))
	os.Exit(cli.Run(cmd))
}
