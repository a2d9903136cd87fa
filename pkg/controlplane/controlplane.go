// Package controlplane starts a real etcd and kube-apiserver 1.37 inside the
// current process, on loopback, with a temporary data directory. The
// integration tests, the sandbox and the benchmark all start their cluster
// through it, so they exercise the same API machinery a real cluster runs.
package controlplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	schedulingv1beta1 "k8s.io/api/scheduling/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	// Config is an admin client config for the apiserver.
	Config *rest.Config
	// Dir holds etcd's data, the serving certificates and the kubeconfig.
	Dir string

	// logDir is Options.LogDir: where child schedulers log too.
	logDir  string
	etcd    *embed.Etcd
	cancel  context.CancelFunc
	stopped chan struct{}
	ownDir  bool
}

// Options tune Start.
type Options struct {
	// Dir is where data goes; a fresh temporary directory when empty, removed
	// by Stop.
	Dir string
	// LogDir receives etcd.log, etcd's own log (errors only), which does not
	// go through klog; stderr when empty. etcd reports its listeners closing
	// at Stop as errors, noise on a terminal.
	LogDir string
	// RBAC authorizes requests with RBAC instead of allowing every
	// authenticated client everything, so that components can run as their
	// ServiceAccounts with exactly the roles they ship with. Config (the
	// loopback admin) is unaffected.
	RBAC bool
	// WorkloadAPI serves Kubernetes' own Workload and PodGroup API
	// (scheduling.k8s.io/v1beta1), with its topology constraints: feature
	// gates GenericWorkload and TopologyAwareWorkloadScheduling, and the
	// group version enabled. The gates belong to the whole process: a
	// kube-scheduler started in it then runs upstream's pod-group
	// scheduling cycle for every pod with spec.schedulingGroup, whatever
	// its profile, so Lockstep's scheduler must run as a child process
	// (StartSchedulerProcess) beside such a control plane.
	WorkloadAPI bool
}

// workloadGates are the feature gates WorkloadAPI turns on.
var workloadGates = map[string]bool{"GenericWorkload": true, "TopologyAwareWorkloadScheduling": true}

// Start runs etcd and kube-apiserver until Stop is called or ctx ends.
func Start(ctx context.Context, opts Options) (cp *ControlPlane, err error) {
	logger := klog.FromContext(ctx)
	cp = &ControlPlane{Dir: opts.Dir, logDir: opts.LogDir, stopped: make(chan struct{})}
	if cp.Dir == "" {
		if cp.Dir, err = os.MkdirTemp("", "lockstep-controlplane-"); err != nil {
			return nil, fmt.Errorf("creating data dir: %w", err)
		}
		cp.ownDir = true
	}
	defer func() {
		if err != nil {
			cp.Stop()
		}
	}()

	etcdURL, err := cp.startEtcd(opts.LogDir)
	if err != nil {
		return nil, err
	}
	logger.V(1).Info("etcd is ready", "url", etcdURL)

	runCtx, cancel := context.WithCancel(ctx)
	cp.cancel = cancel
	if err := cp.startAPIServer(runCtx, etcdURL, opts); err != nil {
		return nil, err
	}
	return cp, nil
}

func (cp *ControlPlane) startEtcd(logDir string) (string, error) {
	ports, err := freePorts(2)
	if err != nil {
		return "", err
	}
	cfg := embed.NewConfig()
	cfg.Name = "lockstep"
	cfg.Dir = filepath.Join(cp.Dir, "etcd")
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[0])}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[1])}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	if logDir != "" {
		cfg.LogOutputs = []string{filepath.Join(logDir, "etcd.log")}
	}
	// The data is thrown away at the end; fsync only slows every write.
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return "", fmt.Errorf("starting etcd: %w", err)
	}
	cp.etcd = e
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return "", fmt.Errorf("etcd failed: %w", err)
	case <-time.After(time.Minute):
		return "", errors.New("etcd did not become ready within a minute")
	}
	return client.String(), nil
}

func (cp *ControlPlane) startAPIServer(ctx context.Context, etcdURL string, opts Options) error {
	s := options.NewServerRunOptions()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening for the apiserver: %w", err)
	}
	s.SecureServing.Listener = ln
	s.SecureServing.BindPort = ln.Addr().(*net.TCPAddr).Port
	s.SecureServing.ExternalAddress = net.ParseIP("127.0.0.1")
	s.SecureServing.ServerCert.CertDirectory = filepath.Join(cp.Dir, "certs")
	s.Etcd.StorageConfig.Transport.ServerList = []string{etcdURL}
	s.ServiceClusterIPRanges = "10.0.0.0/16"
	// A single in-process apiserver has no peers to reconcile endpoints with.
	s.EndpointReconcilerType = "none"
	// No controller-manager runs here: nothing would create service
	// accounts, nor lift the not-ready taint put on every new node.
	s.Admission.GenericAdmission.DisablePlugins = []string{"ServiceAccount", "TaintNodesByCondition"}

	if opts.RBAC {
		s.Authorization.Modes = []string{"RBAC"}
	}
	if opts.WorkloadAPI {
		if err := s.APIEnablement.RuntimeConfig.Set(schedulingv1beta1.SchemeGroupVersion.String() + "=true"); err != nil {
			return fmt.Errorf("enabling the Workload API: %w", err)
		}
		// Nor does any controller remove the finalizer this puts on every
		// PodGroup: one deleted here would never go.
		s.Admission.GenericAdmission.DisablePlugins = append(s.Admission.GenericAdmission.DisablePlugins, "PodGroupProtection")
	}

	keyFile := filepath.Join(cp.Dir, "sa.key")
	if err := writeSigningKey(keyFile); err != nil {
		return err
	}
	s.ServiceAccountSigningKeyFile = keyFile
	s.Authentication.ServiceAccounts.KeyFiles = []string{keyFile}
	s.Authentication.ServiceAccounts.Issuers = []string{"https://lockstep.invalid"}

	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("setting component globals: %w", err)
	}
	if opts.WorkloadAPI {
		if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(workloadGates); err != nil {
			return fmt.Errorf("enabling the Workload API: %w", err)
		}
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return fmt.Errorf("completing apiserver options: %w", err)
	}
	if errs := completed.Validate(); len(errs) > 0 {
		return fmt.Errorf("invalid apiserver options: %w", utilerrors.NewAggregate(errs))
	}
	config, err := app.NewConfig(completed)
	if err != nil {
		return fmt.Errorf("configuring apiserver: %w", err)
	}
	done, err := config.Complete()
	if err != nil {
		return fmt.Errorf("completing apiserver config: %w", err)
	}
	server, err := app.CreateServerChain(done)
	if err != nil {
		return fmt.Errorf("creating apiserver: %w", err)
	}
	prepared, err := server.PrepareRun()
	if err != nil {
		return fmt.Errorf("preparing apiserver: %w", err)
	}
	errCh := make(chan error, 1)
	go func() {
		defer close(cp.stopped)
		errCh <- prepared.Run(ctx)
	}()

	cfg := rest.CopyConfig(server.GenericAPIServer.LoopbackClientConfig)
	cfg.QPS, cfg.Burst = 5000, 10000
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-errCh:
			return false, fmt.Errorf("apiserver stopped: %w", err)
		default:
		}
		status := 0
		client.CoreV1().RESTClient().Get().AbsPath("/readyz").Do(ctx).StatusCode(&status)
		if status != 200 {
			return false, nil
		}
		_, err := client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the apiserver to be ready: %w", err)
	}
	cp.Config = cfg
	return nil
}

// Stop shuts the apiserver and etcd down and removes a temporary data dir.
func (cp *ControlPlane) Stop() {
	if cp.cancel != nil {
		cp.cancel()
		select {
		case <-cp.stopped:
		case <-time.After(30 * time.Second):
		}
	}
	if cp.etcd != nil {
		cp.etcd.Close()
	}
	if cp.ownDir {
		_ = os.RemoveAll(cp.Dir)
	}
}

// WriteKubeconfig writes an admin kubeconfig for kubectl and other clients.
func (cp *ControlPlane) WriteKubeconfig(path string) error {
	return cp.WriteKubeconfigWithToken(path, cp.Config.BearerToken)
}

// WriteKubeconfigWithToken writes a kubeconfig for the apiserver that
// authenticates with a bearer token (a ServiceAccount's, say).
func (cp *ControlPlane) WriteKubeconfigWithToken(path, token string) error {
	c := cp.Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["lockstep"] = &clientcmdapi.Cluster{
		Server:                   c.Host,
		CertificateAuthorityData: c.TLSClientConfig.CAData,
		TLSServerName:            c.TLSClientConfig.ServerName,
	}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["lockstep"] = &clientcmdapi.Context{Cluster: "lockstep", AuthInfo: "admin"}
	kc.CurrentContext = "lockstep"
	return clientcmd.WriteToFile(*kc, path)
}

func writeSigningKey(path string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating service account key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding service account key: %w", err)
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

// freePorts finds n free loopback ports. Another process may take one
// before etcd binds it; on this single-user machine that is rare enough.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
