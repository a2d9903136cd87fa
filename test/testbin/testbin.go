// Package testbin builds the project's binaries for tests that run them as
// child processes.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// BuildScheduler builds ./cmd/lockstep-scheduler into dir, without the race
// detector whatever the test binary was built with: it is a child process.
func BuildScheduler(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module (GOMOD=%q)", gomod)
	}
	bin := filepath.Join(dir, "lockstep-scheduler")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/lockstep-scheduler")
	cmd.Dir = filepath.Dir(gomod)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the scheduler: %v\n%s", err, out)
	}
	fmt.Fprintf(os.Stderr, "built lockstep-scheduler in %s\n", time.Since(start).Round(time.Second))
	return bin, nil
}
