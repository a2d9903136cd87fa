package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"
	"k8s.io/component-base/configz"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"sigs.k8s.io/yaml"

	"github.com/lockstep-sched/lockstep/pkg/gang"
)

// Scheduler is a kube-scheduler running in this process with the Lockstep
// plugins registered.
type Scheduler struct {
	cancel context.CancelFunc
	done   chan error
}

// StartScheduler runs a scheduler against the control plane with the given
// KubeSchedulerConfiguration (YAML). Its client connection is pointed at the
// control plane and leader election is turned off; everything else is as
// given, so tests run the configuration that ships.
func (cp *ControlPlane) StartScheduler(ctx context.Context, configYAML []byte) (*Scheduler, error) {
	kubeconfig := filepath.Join(cp.Dir, "kubeconfig")
	if err := cp.WriteKubeconfig(kubeconfig); err != nil {
		return nil, err
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(configYAML, &cfg); err != nil {
		return nil, fmt.Errorf("decoding scheduler config: %w", err)
	}
	cfg["clientConnection"] = map[string]any{"kubeconfig": kubeconfig, "qps": 5000, "burst": 10000}
	cfg["leaderElection"] = map[string]any{"leaderElect": false}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(cp.Dir, "scheduler-config-*.yaml")
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(out); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()

	opts := options.NewOptions()
	fs := pflag.NewFlagSet("lockstep-scheduler", pflag.ContinueOnError)
	for _, set := range opts.Flags.FlagSets {
		fs.AddFlagSet(set)
	}
	// No serving port: tests and the sandbox talk to the apiserver only.
	if err := fs.Parse([]string{"--config=" + f.Name(), "--secure-port=0"}); err != nil {
		return nil, err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, err
	}
	// A previous scheduler in this process registered its configz section.
	configz.Delete("componentconfig")
	runCtx, cancel := context.WithCancel(ctx)
	cc, sched, err := app.Setup(runCtx, opts, app.WithPlugin(gang.Name, gang.NewFactory()))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("setting up scheduler: %w", err)
	}
	s := &Scheduler{cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- app.Run(runCtx, cc, sched) }()
	return s, nil
}

// Stop stops the scheduler and waits for it to return.
func (s *Scheduler) Stop() {
	s.cancel()
	<-s.done
}
