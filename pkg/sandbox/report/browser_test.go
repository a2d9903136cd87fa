package report

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

// bigRun is a run on 1000 nodes: 2 zones of 25 racks of 20 nodes with 64
// CPUs in 2 NUMA zones; 240 gangs of 8 pods of 16 CPUs, 4 pods a node,
// one after another on the same nodes, a few pods split over zones; and
// ordinary pods.
func bigRun() Run {
	run := Run{Start: t0, End: at(120000), Cluster: "1000 nodes"}
	for i := range 1000 {
		run.Nodes = append(run.Nodes, Node{
			Name: fmt.Sprintf("node-%04d", i), Rack: fmt.Sprintf("rack-%02d", i/20), Zone: fmt.Sprintf("zone-%d", i/500),
			CPUs: 64, Memory: 256 << 30, NUMAZones: []string{"node-0", "node-1"},
		})
	}
	done := v1.PodSucceeded
	for g := range 240 {
		name := fmt.Sprintf("job-%03d", g)
		created := at(g * 400)
		run.Gangs = append(run.Gangs, Gang{Namespace: "train", Name: name, MinMember: 8, Created: created, Phase: "Finished"})
		for m := range 8 {
			node := run.Nodes[(g*2+m/4)%1000].Name
			zones := []string{fmt.Sprintf("node-%d", m%4/2)}
			if g%17 == 0 && m == 0 {
				zones = []string{"node-0", "node-1"}
			}
			bound := created.Add(time.Duration(500+m) * time.Millisecond)
			run.Pods = append(run.Pods, Pod{
				Namespace: "train", Name: fmt.Sprintf("%s-%d", name, m), Gang: name, Node: node, CPUMilli: 16000, Memory: 8 << 30,
				Created: created, Bound: bound, Running: bound.Add(time.Second), Finished: bound.Add(20 * time.Second), Phase: done, NUMAZones: zones,
			})
		}
	}
	for i := range 300 {
		run.Pods = append(run.Pods, Pod{
			Namespace: "web", Name: fmt.Sprintf("web-%d", i), Node: run.Nodes[500+i].Name, CPUMilli: 2000,
			Created: at(i * 10), Bound: at(i*10 + 50), Running: at(i*10 + 60), Finished: at(i*10 + 30000), Phase: done, NUMAZones: []string{"node-1"},
		})
	}
	return run
}

// probe is added to a copy of the report before </body>: it measures the
// page and searches for a gang as a person would type it, and leaves what
// it found on the <body> of the page that frames the report, the DOM
// Chromium dumps.
const probe = `<script>
(function () {
  var b = parent.document.body, d = document.documentElement;
  b.setAttribute("data-probe-viewport", window.innerWidth);
  b.setAttribute("data-probe-overflow", d.scrollWidth - d.clientWidth);
  b.setAttribute("data-probe-open-before", document.querySelectorAll("details.rack[open]").length);
  var input = document.getElementById("find-gang");
  input.value = "%s";
  input.dispatchEvent(new Event("input"));
  b.setAttribute("data-probe-hits", document.querySelectorAll(".pod.hit").length);
  b.setAttribute("data-probe-open", document.querySelectorAll("details.rack[open]").length);
  b.setAttribute("data-probe-status", document.getElementById("find-status").textContent);
  b.setAttribute("data-probe-overflow-after", d.scrollWidth - d.clientWidth);
})();
</script>
</body>`

// chromium finds Debian's Chromium, which .ci/run installs; the test is
// skipped, saying so, where there is none.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Skip("no Chromium here (Debian's chromium package; .ci/run installs it): the report is not checked in a browser")
	return ""
}

type rendered struct {
	viewport, overflow, overflowAfter, hits, openBefore, open int
	status                                                    string
}

// render opens the report in headless Chromium in a frame of a width (a
// headless window is at least 500 px wide; a frame is the viewport of
// the page in it), runs the probe and reads what it found.
func render(t *testing.T, bin string, page []byte, width int, find string) rendered {
	t.Helper()
	withProbe := bytes.Replace(page, []byte("</body>"), []byte(fmt.Sprintf(probe, find)), 1)
	frame := fmt.Sprintf(`<!DOCTYPE html><html><body style="margin: 0"><iframe src="/report.html" style="border: 0; width: %dpx; height: 900px"></iframe></body></html>`, width)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if r.URL.Path == "/report.html" {
			_, _ = w.Write(withProbe)
			return
		}
		_, _ = io.WriteString(w, frame)
	}))
	defer srv.Close()
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--user-data-dir="+filepath.Join(t.TempDir(), "profile"), fmt.Sprintf("--window-size=%d,1000", width+100),
		"--dump-dom", srv.URL+"/")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	dom := stdout.String()
	attr := func(name string) string {
		m := regexp.MustCompile(`data-probe-` + name + `="([^"]*)"`).FindStringSubmatch(dom)
		if m == nil {
			t.Fatalf("the probe did not run (no data-probe-%s in the DOM); chromium said:\n%s", name, stderr.String())
		}
		return m[1]
	}
	num := func(name string) int {
		n, err := strconv.Atoi(attr(name))
		if err != nil {
			t.Fatalf("data-probe-%s: %v", name, err)
		}
		return n
	}
	return rendered{viewport: num("viewport"), overflow: num("overflow"), overflowAfter: num("overflow-after"),
		hits: num("hits"), openBefore: num("open-before"), open: num("open"), status: attr("status")}
}

// The report, opened in a real browser at a desktop's and a phone's width,
// never scrolls sideways, on 3 nodes as on 1000; on 1000 its racks are
// strips opened on demand, and finding a gang opens the racks that hold
// it and marks its pods.
func TestReportInBrowser(t *testing.T) {
	bin := chromium(t)
	for _, c := range []struct {
		name string
		run  Run
		find string
		// pods drawn for the gang (a split pod twice), racks that hold it,
		// racks open before the search.
		hits, racks, openBefore int
	}{
		{name: "3 nodes", run: testRun(), find: "ns/a", hits: 4, racks: 2, openBefore: 2},
		// job-017: 8 pods on nodes 34 and 35 (rack 1), its first split.
		{name: "1000 nodes", run: bigRun(), find: "train/job-017", hits: 9, racks: 1, openBefore: 0},
	} {
		var page bytes.Buffer
		if err := WriteHTML(&page, c.run, Summarize(c.run)); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d KiB", c.name, page.Len()/1024)
		for _, width := range []int{1400, 390} {
			got := render(t, bin, page.Bytes(), width, c.find)
			what := fmt.Sprintf("%s at %d px", c.name, width)
			if got.viewport != width {
				t.Fatalf("%s: the page was laid out %d px wide", what, got.viewport)
			}
			if got.overflow > 0 || got.overflowAfter > 0 {
				t.Errorf("%s: the page scrolls sideways by %d px (%d px with racks opened)", what, got.overflow, got.overflowAfter)
			}
			if got.openBefore != c.openBefore {
				t.Errorf("%s: %d racks open before a search, want %d", what, got.openBefore, c.openBefore)
			}
			if got.hits != c.hits || got.open != max(c.racks, c.openBefore) {
				t.Errorf("%s: finding %s marked %d pod boxes and left %d racks open, want %d and %d (status %q)",
					what, c.find, got.hits, got.open, c.hits, max(c.racks, c.openBefore), got.status)
			}
			if !strings.HasPrefix(got.status, c.find+": ") {
				t.Errorf("%s: status %q", what, got.status)
			}
		}
	}
}
