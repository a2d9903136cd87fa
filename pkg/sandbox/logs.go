package sandbox

import (
	"flag"
	"fmt"
	"os"
	"strconv"

	"k8s.io/klog/v2"
)

// LogToFile sends klog's output, which the API server and the scheduler
// fill quickly, to a file at the given verbosity instead of the terminal.
// The returned function flushes and closes the file.
func LogToFile(path string, verbosity int) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating log file: %w", err)
	}
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for k, v := range map[string]string{
		"v":               strconv.Itoa(verbosity),
		"logtostderr":     "false",
		"alsologtostderr": "false",
		"stderrthreshold": "FATAL",
	} {
		if err := fs.Set(k, v); err != nil {
			f.Close()
			return nil, fmt.Errorf("setting klog flag %s: %w", k, err)
		}
	}
	klog.SetOutput(f)
	return func() {
		klog.Flush()
		f.Close()
	}, nil
}
