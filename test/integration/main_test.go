// Package integration runs Lockstep against a real kube-apiserver and etcd
// started in this process (pkg/controlplane). Tests share one control plane
// and run one after another; each starts its own scheduler and cleans up
// its nodes and pods.
package integration

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/lockstep-sched/lockstep/pkg/controlplane"
	"github.com/lockstep-sched/lockstep/test/testlog"
)

var cp *controlplane.ControlPlane

func TestMain(m *testing.M) {
	os.Exit(testlog.Run("integration", func() int {
		var err error
		cp, err = controlplane.StartWithCRDs(context.Background(), controlplane.Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cp.Stop()
		return m.Run()
	}))
}
