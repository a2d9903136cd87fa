package controlplane

import (
	"os"
	"testing"
)

func TestPeakRSS(t *testing.T) {
	// This test process stands in for a scheduler's child process.
	rss, ok, err := (&Scheduler{pid: os.Getpid()}).PeakRSS()
	if err != nil || !ok || rss < 1<<20 {
		t.Fatalf("PeakRSS of a running process = %d, %t, %v; want over 1 MiB", rss, ok, err)
	}
	if _, ok, err := (&Scheduler{}).PeakRSS(); ok || err != nil {
		t.Fatalf("an in-process scheduler has no memory of its own; got ok=%t err=%v", ok, err)
	}
	if _, _, err := (&Scheduler{pid: 1 << 30}).PeakRSS(); err == nil {
		t.Fatal("a process that is gone: want an error")
	}
}
