// Command lockstep-scheduler is kube-scheduler with Lockstep's gang plugin
// registered. It is configured by an ordinary KubeSchedulerConfiguration; see
// manifests/scheduler-config.yaml.
package main

import (
	"os"

	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric

	"github.com/lockstep-sched/lockstep/cmd/lockstep-scheduler/app"
)

func main() {
	os.Exit(app.Main())
}
