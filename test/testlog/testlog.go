// Package testlog keeps the logs of the control plane, schedulers and
// controllers that tests start in-process out of the test output: they go
// to a file, which is named when a test fails. LOCKSTEP_TEST_LOG=stderr
// keeps them on stderr; LOCKSTEP_TEST_V sets klog's verbosity (2).
package testlog

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/lockstep-sched/lockstep/pkg/sandbox"
)

// Main runs a test binary's tests with logs in a file and exits.
func Main(m *testing.M, name string) {
	os.Exit(Run(name, m.Run))
}

// Run sends the logs to a file, runs body (which starts whatever the tests
// share, then runs them) and returns its exit code.
func Run(name string, body func() int) int {
	flag.Parse()
	ctrl.SetLogger(klog.NewKlogr())
	if os.Getenv("LOCKSTEP_TEST_LOG") == "stderr" {
		return body()
	}
	dir, err := os.MkdirTemp("", "lockstep-"+name+"-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	path := filepath.Join(dir, name+".log")
	v := 2
	if s := os.Getenv("LOCKSTEP_TEST_V"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			v = n
		}
	}
	closeLog, err := sandbox.LogToFile(path, v)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer closeLog()
	code := body()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "control plane and scheduler log: %s\n", path)
	}
	return code
}
