package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints the per-gang table and the totals.
func WriteTable(w io.Writer, s Summary) error {
	if len(s.Gangs) == 0 {
		fmt.Fprintln(w, "No gangs in this run.")
		fmt.Fprintln(w)
		for _, line := range Totals(s) {
			fmt.Fprintln(w, line)
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GANG\tPODS / MINMEMBER\tWAIT\tBIND SKEW\tNODES (IDEAL)\tRACKS\tNUMA ZONES/POD\tPHASE")
	notes := false
	for _, g := range s.Gangs {
		name := g.Key()
		if g.RequiredTopology != "" {
			name += " *"
			notes = true
		}
		wait, skew, nodes, racks := "-", "-", "-", "-"
		if g.Bound > 0 {
			wait, skew = Seconds(g.Wait), Millis(g.Skew)
			nodes = fmt.Sprintf("%d (%d)", g.Nodes, g.IdealNodes)
			racks = fmt.Sprint(g.Racks)
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
			name, g.Pods, g.MinMember, wait, skew, nodes, racks, numaRange(g), g.Phase)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if notes {
		fmt.Fprintln(w, "* must fit one topology domain (lockstep.io/required-topology, or an upstream PodGroup's topology constraint)")
	}
	fmt.Fprintln(w)
	for _, line := range Totals(s) {
		fmt.Fprintln(w, line)
	}
	return nil
}

// Totals are the run's totals, one fact per line.
func Totals(s Summary) []string {
	lines := []string{
		fmt.Sprintf("gangs finished:   %d of %d", s.GangsFinished, len(s.Gangs)),
		fmt.Sprintf("pods:             %d bound of %d, %d succeeded, %d failed (ordinary pods: %d of %d done)",
			s.PodsBound, s.PodsTotal, s.PodsSucceeded, s.PodsFailed, s.OrdinaryDone, s.OrdinaryPods),
	}
	if s.GangsBound > 0 {
		lines = append(lines,
			fmt.Sprintf("gang wait:        p50 %s, max %s (PodGroup created to minMember-th member bound)", Seconds(s.WaitP50), Seconds(s.WaitMax)),
			fmt.Sprintf("bind skew:        max %s (minMember-th bind - first bind, per gang)", Millis(s.SkewMax)))
	}
	if s.Throughput > 0 {
		lines = append(lines, fmt.Sprintf("bind throughput:  %.1f pods/s (first bind of the run to the last)", s.Throughput))
	}
	if s.PodsBound > 0 {
		lines = append(lines, fmt.Sprintf("NUMA:             %d pods rejected by kubelet (TopologyAffinityError: no NUMA zone could hold their CPUs), %d pods across NUMA zones", s.Rejected, s.SplitPods))
	}
	if n := len(s.LeftBehind); n > 0 {
		shown := s.LeftBehind
		if n > 5 {
			shown = append(shown[:5:5], "...")
		}
		lines = append(lines, fmt.Sprintf("left behind:      %d pods never bound, though their PodGroup had finished: %s", n, strings.Join(shown, ", ")))
	}
	status := "finished"
	switch {
	case s.Interrupted:
		status = "INTERRUPTED"
	case s.TimedOut:
		status = "TIMED OUT"
	}
	lines = append(lines, fmt.Sprintf("run:              %s in %s", status, Seconds(s.Duration)))
	if len(s.Errors) > 0 {
		lines = append(lines, fmt.Sprintf("errors:           %d (listed above)", len(s.Errors)))
	}
	return lines
}

func numaRange(g GangSummary) string {
	switch {
	case g.NUMAMax == 0:
		return "-"
	case g.NUMAMin == g.NUMAMax:
		return fmt.Sprint(g.NUMAMax)
	default:
		return fmt.Sprintf("%d-%d (%d split)", g.NUMAMin, g.NUMAMax, g.Split)
	}
}

// Seconds formats a duration as seconds with one decimal.
func Seconds(d time.Duration) string {
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// Millis formats a short duration in milliseconds, a long one in seconds.
func Millis(d time.Duration) string {
	if d >= time.Second {
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}
