// Package app builds the lockstep-scheduler program: kube-scheduler's own
// options, configuration and run loop, with the gang plugin registered and
// the scheduler's Event recorders passed through the plugin (see
// gang.Factory.Recorders). kube-scheduler's app.Setup offers no way to wrap
// its recorders, so Setup here builds the scheduler the same way with that
// one difference; the rest is kube-scheduler's exported code.
package app

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/server"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/component-base/cli"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/cli/globalflag"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/featuregate"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/component-base/version/verflag"
	"k8s.io/klog/v2"
	kubeapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedulerserverconfig "k8s.io/kubernetes/cmd/kube-scheduler/app/config"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/kubernetes/pkg/scheduler"
	kubeschedulerconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/latest"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"

	"github.com/lockstep-sched/lockstep/pkg/gang"
	"github.com/lockstep-sched/lockstep/pkg/preemption"
)

// Main runs lockstep-scheduler with the process's arguments and returns its
// exit status. Lockstep's gate defaults go in before the flags are
// parsed, so an admin's --feature-gates still wins.
func Main() int {
	if err := gang.SetFeatureDefaults(utilfeature.DefaultMutableFeatureGate); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return cli.Run(NewCommand())
}

// NewCommand returns the lockstep-scheduler command: kube-scheduler's flags
// and behaviour, with a new gang.Factory.
func NewCommand() *cobra.Command {
	opts := options.NewOptions()
	cmd := &cobra.Command{
		Use:  "lockstep-scheduler",
		Long: "lockstep-scheduler is kube-scheduler with Lockstep's gang scheduling plugin. It takes kube-scheduler's flags and a KubeSchedulerConfiguration; see manifests/scheduler-config.yaml.",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			// Feature gates must be set before RunE.
			return opts.ComponentGlobalsRegistry.Set()
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, opts)
		},
		Args: cobra.NoArgs,
	}
	nfs := opts.Flags
	verflag.AddFlags(nfs.FlagSet("global"))
	globalflag.AddGlobalFlags(nfs.FlagSet("global"), cmd.Name(), logs.SkipLoggingConfigurationFlags())
	for _, f := range nfs.FlagSets {
		cmd.Flags().AddFlagSet(f)
	}
	cliflag.SetUsageAndHelpFunc(cmd, *nfs, 0)
	return cmd
}

func run(cmd *cobra.Command, opts *options.Options) error {
	verflag.PrintAndExitIfRequested()
	fg := opts.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	if err := logsapi.ValidateAndApply(opts.Logs, fg); err != nil {
		fmt.Fprintf(os.Stderr, "%v\n", err)
		os.Exit(1)
	}
	cliflag.PrintFlags(cmd.Flags())
	// Names the informers in client-go's metrics; once per process, so not
	// in Setup, which tests call for each scheduler they start.
	informerName, err := cache.NewInformerName("lockstep-scheduler")
	if err != nil {
		return err
	}
	opts.InformerName = informerName
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-server.SetupSignalHandler()
		cancel()
	}()
	cc, sched, err := Setup(ctx, opts, gang.NewFactory())
	if err != nil {
		return err
	}
	if mfg, ok := fg.(featuregate.MutableFeatureGate); ok {
		mfg.AddMetrics()
	}
	opts.ComponentGlobalsRegistry.AddMetrics()
	return kubeapp.Run(ctx, cc, sched)
}

// Setup builds a scheduler from opts, as kube-scheduler's app.Setup does,
// with the gang plugin of f registered and the profiles' Event recorders
// wrapped by f.
func Setup(ctx context.Context, opts *options.Options, f *gang.Factory) (*schedulerserverconfig.CompletedConfig, *scheduler.Scheduler, error) {
	cfg, err := latest.Default()
	if err != nil {
		return nil, nil, err
	}
	opts.ComponentConfig = cfg
	if errs := opts.Validate(); len(errs) > 0 {
		return nil, nil, utilerrors.NewAggregate(errs)
	}
	c, err := opts.Config(ctx)
	if err != nil {
		return nil, nil, err
	}
	cc := c.Complete()
	if cc.LeaderElection != nil {
		// Until this replica leads, the plugin writes nothing.
		f.Standby()
		cc.LeaderElection.Lock = &leadershipLock{Interface: cc.LeaderElection.Lock, onLead: f.Lead}
	}
	recorders := f.Recorders(func(profile string) events.EventRecorderLogger {
		return cc.EventBroadcaster.NewRecorder(profile)
	})
	var completedProfiles []kubeschedulerconfig.KubeSchedulerProfile
	sched, err := scheduler.New(ctx,
		cc.Client,
		cc.InformerFactory,
		cc.DynInformerFactory,
		recorders,
		scheduler.WithComponentConfigVersion(cc.ComponentConfig.TypeMeta.APIVersion),
		scheduler.WithKubeConfig(cc.KubeConfig),
		scheduler.WithProfiles(cc.ComponentConfig.Profiles...),
		scheduler.WithPercentageOfNodesToScore(cc.ComponentConfig.PercentageOfNodesToScore),
		scheduler.WithFrameworkOutOfTreeRegistry(frameworkruntime.Registry{gang.Name: f.New, preemption.Name: preemption.New}),
		scheduler.WithPodMaxBackoffSeconds(cc.ComponentConfig.PodMaxBackoffSeconds),
		scheduler.WithPodInitialBackoffSeconds(cc.ComponentConfig.PodInitialBackoffSeconds),
		scheduler.WithPodMaxInUnschedulablePodsDuration(cc.PodMaxInUnschedulablePodsDuration),
		scheduler.WithExtenders(cc.ComponentConfig.Extenders...),
		scheduler.WithParallelism(cc.ComponentConfig.Parallelism),
		scheduler.WithBuildFrameworkCapturer(func(profile kubeschedulerconfig.KubeSchedulerProfile) {
			completedProfiles = append(completedProfiles, profile)
		}),
	)
	if err != nil {
		return nil, nil, err
	}
	if err := options.LogOrWriteConfig(klog.FromContext(ctx), opts.WriteConfigTo, &cc.ComponentConfig, completedProfiles); err != nil {
		return nil, nil, err
	}
	return &cc, sched, nil
}

// leadershipLock tells the plugin when this replica has taken the lease:
// kube-scheduler's Run owns the leader election callbacks, so the lock is
// where a successful acquisition can be seen. Losing the lease ends the
// process (kube-scheduler exits), so only the first acquisition matters.
type leadershipLock struct {
	resourcelock.Interface
	onLead func()
}

func (l *leadershipLock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Create(ctx, ler)
	l.acquired(ler, err)
	return err
}

func (l *leadershipLock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Update(ctx, ler)
	l.acquired(ler, err)
	return err
}

func (l *leadershipLock) acquired(ler resourcelock.LeaderElectionRecord, err error) {
	if err == nil && ler.HolderIdentity == l.Identity() {
		l.onLead()
	}
}
