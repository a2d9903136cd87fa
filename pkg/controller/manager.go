// Package controller keeps PodGroup status true: it counts each gang's member
// pods and writes phase, running, succeeded, failed and scheduleStartTime,
// recording an Event on every phase change. It handles gangs that lose
// their quorum by their disruption mode, for Kubernetes' own PodGroups too
// (upstream.go).
package controller

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// Name is the controller's name: its leader-election lease and the
// reporting controller of its Events.
const Name = "lockstep-controller"

// Options configures the manager NewManager builds.
type Options struct {
	// MetricsBindAddress serves Prometheus metrics; "0" disables them and
	// "" means controller-runtime's default, ":8080".
	MetricsBindAddress string
	// MetricsSecure serves metrics over HTTPS to clients the apiserver
	// authenticates (TokenReview) and authorizes to get /metrics
	// (SubjectAccessReview); otherwise they are plain HTTP to anyone who
	// can reach the address, which should then be loopback.
	MetricsSecure bool
	// HealthProbeBindAddress serves /healthz and /readyz; "" disables them.
	HealthProbeBindAddress string
	// LeaderElection makes only one replica write status at a time.
	LeaderElection bool
	// LeaderElectionNamespace holds the lease; required out of cluster.
	LeaderElectionNamespace string
	// DefaultScheduleTimeout is the scheduler's timeout for PodGroups that
	// set none (its defaultScheduleTimeoutSeconds); 60 s when zero.
	DefaultScheduleTimeout time.Duration
	// PartialGrace is how long past its timeout a gang may stay partially
	// bound before it is reported incomplete and handled by its disruption
	// mode: the scheduler retries a failed binding for up to the timeout.
	// 30 s when zero.
	PartialGrace time.Duration
}

// NewManager returns a manager running the PodGroup status controller. The
// caller adds health checks if it wants them and runs mgr.Start.
func NewManager(cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	if cfg == nil {
		return nil, errors.New("controller: nil rest config")
	}
	// PodGroups are CRDs, served as JSON only; a config that asks for
	// protobuf (as kube components' configs do) would fail every write.
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = runtime.ContentTypeJSON
	scheme, err := newScheme()
	if err != nil {
		return nil, err
	}
	// Cache only pods that name a PodGroup, not every pod of the cluster.
	named, err := labels.NewRequirement(podgroup.Label, selection.Exists, nil)
	if err != nil {
		return nil, fmt.Errorf("pod label selector: %w", err)
	}
	metrics := metricsserver.Options{BindAddress: opts.MetricsBindAddress}
	if opts.MetricsSecure {
		// A self-signed certificate, made at start.
		metrics.SecureServing = true
		metrics.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metrics,
		HealthProbeBindAddress:        opts.HealthProbeBindAddress,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              Name,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		// The sandbox, the benchmark and the tests start a manager more than
		// once in one process; names stay unique within each manager.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Pod{}: {Label: labels.NewSelector().Add(*named)},
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create pod client: %w", err)
	}
	r := &reconciler{
		client:   mgr.GetClient(),
		recorder: mgr.GetEventRecorder(Name),
		now:      metav1.Now,
		evict:    evictOnce(kube),
		timeout:  cmp.Or(opts.DefaultScheduleTimeout, 60*time.Second),
		grace:    cmp.Or(opts.PartialGrace, 30*time.Second),
	}
	if err := r.setupWithManager(mgr); err != nil {
		return nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create discovery client: %w", err)
	}
	if err := setupUpstream(mgr, r, disc); err != nil {
		return nil, fmt.Errorf("set up Kubernetes PodGroups: %w", err)
	}
	return mgr, nil
}

// newScheme knows the built-in types and the PodGroup API.
func newScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("add client-go types to scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("add PodGroup types to scheme: %w", err)
	}
	return scheme, nil
}
