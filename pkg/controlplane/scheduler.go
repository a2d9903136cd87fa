package controlplane

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/component-base/configz"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"sigs.k8s.io/yaml"

	schedulerapp "github.com/lockstep-sched/lockstep/cmd/lockstep-scheduler/app"
	"github.com/lockstep-sched/lockstep/pkg/gang"
)

// Scheduler is a kube-scheduler running in this process with the Lockstep
// plugins registered.
type Scheduler struct {
	cancel context.CancelFunc
	done   chan error
	// pid is the child process's, for a scheduler run as one.
	pid int
}

// SchedulerOption changes how StartScheduler runs a scheduler.
type SchedulerOption func(*schedulerOptions)

type schedulerOptions struct {
	counter        *RequestCounter
	featureGates   string
	token          string
	leaderElection bool
	env            []string
	verbosity      int
}

// WithEnv adds "NAME=value" variables to the environment of a scheduler
// run as a child process.
func WithEnv(env ...string) SchedulerOption {
	return func(o *schedulerOptions) { o.env = append(o.env, env...) }
}

// WithVerbosity sets the log verbosity (--v) of a scheduler run as a child
// process.
func WithVerbosity(v int) SchedulerOption {
	return func(o *schedulerOptions) { o.verbosity = v }
}

// WithToken makes the scheduler authenticate with a bearer token (its
// ServiceAccount's) instead of as the admin.
func WithToken(token string) SchedulerOption {
	return func(o *schedulerOptions) { o.token = token }
}

// WithLeaderElection keeps the configuration's leader election (on a Lease
// in its resourceNamespace, which must exist) instead of turning it off.
func WithLeaderElection() SchedulerOption {
	return func(o *schedulerOptions) { o.leaderElection = true }
}

// CountRequests sends the scheduler's API requests through a proxy that
// counts them.
func CountRequests(c *RequestCounter) SchedulerOption {
	return func(o *schedulerOptions) { o.counter = c }
}

// WithFeatureGates sets kube-scheduler feature gates ("Name=true,...")
// instead of Lockstep's defaults (gang.FeatureGates), as the
// lockstep-scheduler binary does. The gates are global to the process: a
// caller that starts other schedulers in it sets the gates for each.
func WithFeatureGates(gates string) SchedulerOption {
	return func(o *schedulerOptions) { o.featureGates = gates }
}

// StartScheduler runs a scheduler against the control plane with the given
// KubeSchedulerConfiguration (YAML). Its client connection is pointed at the
// control plane and leader election is turned off (kube-scheduler exits its
// process when it stops leading: use StartSchedulerProcess with
// WithLeaderElection); everything else is as given, so tests run the
// configuration that ships.
func (cp *ControlPlane) StartScheduler(ctx context.Context, configYAML []byte, options ...SchedulerOption) (_ *Scheduler, err error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	so, configFile, err := cp.prepareScheduler(runCtx, configYAML, options)
	if err != nil {
		return nil, err
	}
	opts := schedoptions.NewOptions()
	fs := pflag.NewFlagSet("lockstep-scheduler", pflag.ContinueOnError)
	for _, set := range opts.Flags.FlagSets {
		fs.AddFlagSet(set)
	}
	// No serving port: tests and the sandbox talk to the apiserver only.
	gates := gang.FeatureGatesFlag()
	if so.featureGates != "" {
		gates = so.featureGates
	}
	args := []string{"--config=" + configFile, "--secure-port=0", "--feature-gates=" + gates}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, err
	}
	// A previous scheduler in this process registered its configz section.
	configz.Delete("componentconfig")
	cc, sched, err := schedulerapp.Setup(runCtx, opts, gang.NewFactory())
	if err != nil {
		return nil, fmt.Errorf("setting up scheduler: %w", err)
	}
	s := &Scheduler{cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- app.Run(runCtx, cc, sched) }()
	return s, nil
}

// prepareScheduler applies the options and writes the scheduler's
// kubeconfig (through a counting proxy that lives as long as ctx, when
// asked) and configuration file.
func (cp *ControlPlane) prepareScheduler(ctx context.Context, configYAML []byte, options []SchedulerOption) (schedulerOptions, string, error) {
	var so schedulerOptions
	for _, o := range options {
		o(&so)
	}
	token := so.token
	if token == "" {
		token = cp.Config.BearerToken
	}
	kubeconfig := filepath.Join(cp.Dir, fmt.Sprintf("scheduler-kubeconfig-%d", time.Now().UnixNano()))
	if err := cp.WriteKubeconfigWithToken(kubeconfig, token); err != nil {
		return so, "", err
	}
	if so.counter != nil {
		if err := cp.countingProxy(ctx, so.counter, kubeconfig, so.token); err != nil {
			return so, "", err
		}
	}
	configFile, err := cp.writeSchedulerConfig(configYAML, kubeconfig, so.leaderElection)
	return so, configFile, err
}

// writeSchedulerConfig writes the configuration with its client connection
// pointed at kubeconfig and, unless kept, leader election off. A
// configuration's own client rate limits are kept, so that a shipped one
// runs as on a cluster; one without gets 5000 QPS, burst 10000, far above
// what this apiserver serves, rather than kube-scheduler's default of 50.
func (cp *ControlPlane) writeSchedulerConfig(configYAML []byte, kubeconfig string, keepLeaderElection bool) (string, error) {
	var cfg map[string]any
	if err := yaml.Unmarshal(configYAML, &cfg); err != nil {
		return "", fmt.Errorf("decoding scheduler config: %w", err)
	}
	client := map[string]any{"qps": 5000, "burst": 10000}
	if own, ok := cfg["clientConnection"].(map[string]any); ok {
		for _, k := range []string{"qps", "burst"} {
			if v, ok := own[k]; ok {
				client[k] = v
			}
		}
	}
	client["kubeconfig"] = kubeconfig
	cfg["clientConnection"] = client
	if !keepLeaderElection {
		cfg["leaderElection"] = map[string]any{"leaderElect": false}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(cp.Dir, "scheduler-config-*.yaml")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Write(out); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// Stop stops the scheduler and waits for it to return.
func (s *Scheduler) Stop() {
	s.cancel()
	<-s.done
}

// PeakRSS is the peak resident memory (VmHWM) of a scheduler that runs as a
// child process, read while it runs; ok is false for one that runs in this
// process, whose memory is not its own.
func (s *Scheduler) PeakRSS() (bytes int64, ok bool, err error) {
	if s.pid == 0 {
		return 0, false, nil
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return 0, false, fmt.Errorf("reading the scheduler's memory: %w", err)
	}
	for line := range strings.Lines(string(status)) {
		if kb, found := strings.CutPrefix(line, "VmHWM:"); found {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 10, 64)
			if err != nil {
				return 0, false, fmt.Errorf("parsing VmHWM %q: %w", line, err)
			}
			return n << 10, true, nil
		}
	}
	return 0, false, fmt.Errorf("no VmHWM in /proc/%d/status", s.pid)
}

// StartSchedulerProcess runs a scheduler binary as a child process (a peer
// Lockstep is measured against, or Lockstep with gates of its own),
// configured like StartScheduler's schedulers. Its output goes to a log
// file in the control plane's log directory (else its directory). Stop
// kills it.
func (cp *ControlPlane) StartSchedulerProcess(ctx context.Context, binary string, configYAML []byte, options ...SchedulerOption) (_ *Scheduler, err error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	so, configFile, err := cp.prepareScheduler(runCtx, configYAML, options)
	if err != nil {
		return nil, err
	}
	args := []string{"--config=" + configFile, "--secure-port=0"}
	if so.featureGates != "" {
		args = append(args, "--feature-gates="+so.featureGates)
	}
	if so.verbosity > 0 {
		args = append(args, fmt.Sprintf("--v=%d", so.verbosity))
	}
	logDir := cp.Dir
	if cp.logDir != "" {
		logDir = cp.logDir
	}
	logFile, err := os.Create(filepath.Join(logDir, filepath.Base(binary)+fmt.Sprintf("-%d.log", time.Now().UnixNano())))
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(runCtx, binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if len(so.env) > 0 {
		cmd.Env = append(os.Environ(), so.env...)
	}
	// Should this process die first, the child goes with it.
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	s := &Scheduler{cancel: cancel, done: make(chan error, 1), pid: cmd.Process.Pid}
	go func() {
		err := cmd.Wait()
		logFile.Close()
		if runCtx.Err() != nil {
			err = nil // killed by Stop
		}
		s.done <- err
	}()
	return s, nil
}
