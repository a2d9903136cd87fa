// Package integration runs Lockstep against a real kube-apiserver and etcd
// started in this process (pkg/controlplane). Tests share one control plane
// and run one after another; each starts its own scheduler and cleans up
// its nodes and pods.
package integration

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/lockstep-sched/lockstep/pkg/controlplane"
)

var (
	cp      *controlplane.ControlPlane
	logPath string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// The apiserver and scheduler log a lot; keep it in a file that a failing
	// test points to, unless LOCKSTEP_TEST_LOG=stderr.
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("v", envOr("LOCKSTEP_TEST_V", "2"))
	if os.Getenv("LOCKSTEP_TEST_LOG") != "stderr" {
		dir, err := os.MkdirTemp("", "lockstep-integration-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		logPath = filepath.Join(dir, "integration.log")
		f, err := os.Create(logPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer f.Close()
		_ = klogFlags.Set("logtostderr", "false")
		_ = klogFlags.Set("alsologtostderr", "false")
		_ = klogFlags.Set("stderrthreshold", "FATAL")
		klog.SetOutput(f)
	}

	ctrl.SetLogger(klog.NewKlogr())
	ctx := context.Background()
	var err error
	cp, err = controlplane.StartWithCRDs(ctx, controlplane.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "%v (log: %s)\n", err, logPath)
		return 1
	}
	defer cp.Stop()
	code := m.Run()
	if code != 0 && logPath != "" {
		fmt.Fprintf(os.Stderr, "control plane and scheduler log: %s\n", logPath)
	}
	return code
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
