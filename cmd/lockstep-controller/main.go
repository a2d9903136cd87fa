// Command lockstep-controller keeps the status of PodGroups true: phase,
// member counts and scheduleStartTime, with an Event on each phase change.
// It runs beside lockstep-scheduler; see manifests/controller-deployment.yaml.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/lockstep-sched/lockstep/pkg/controller"
)

func main() {
	if err := run(); err != nil {
		klog.ErrorS(err, "lockstep-controller failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run() error {
	var opts controller.Options
	fs := flag.CommandLine
	klog.InitFlags(fs)
	// --kubeconfig: controller-runtime's config package owns the flag (it
	// registers it on the default FlagSet itself); ctrl.GetConfig reads it,
	// then KUBECONFIG, then the in-cluster config.
	config.RegisterFlags(fs)
	fs.StringVar(&opts.MetricsBindAddress, "metrics-bind-address", ":8443",
		`Address the Prometheus metrics endpoint binds to; "0" disables it.`)
	fs.BoolVar(&opts.MetricsSecure, "metrics-secure", true,
		"Serve metrics over HTTPS, only to clients the apiserver authenticates and allows to get /metrics (bind the lockstep-metrics-reader ClusterRole); false serves plain HTTP to anyone, for a loopback address.")
	fs.StringVar(&opts.HealthProbeBindAddress, "health-probe-bind-address", ":8081",
		"Address the /healthz and /readyz endpoints bind to.")
	fs.BoolVar(&opts.LeaderElection, "leader-elect", true,
		"Elect a leader so that only one replica writes PodGroup status.")
	fs.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", "lockstep-system",
		"Namespace of the leader-election Lease.")
	fs.DurationVar(&opts.DefaultScheduleTimeout, "default-schedule-timeout", 60*time.Second,
		"The scheduler's defaultScheduleTimeoutSeconds: how long a gang may take to bind, for PodGroups that set no scheduleTimeoutSeconds.")
	fs.DurationVar(&opts.PartialGrace, "partial-grace", 30*time.Second,
		"How long past its timeout a gang may stay partially bound before it is reported incomplete and handled by its disruption mode.")
	flag.Parse()

	// controller-runtime logs through klog, so -v and friends apply to it.
	ctrl.SetLogger(klog.NewKlogr())

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	mgr, err := controller.NewManager(cfg, opts)
	if err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("add healthz check: %w", err)
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("add readyz check: %w", err)
	}

	klog.InfoS("Starting lockstep-controller", "leaderElection", opts.LeaderElection)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}
