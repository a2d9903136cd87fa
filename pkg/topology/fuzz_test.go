package topology

import (
	"encoding/json"
	"testing"

	nrtv1alpha2 "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/apis/topology/v1alpha2"

	"github.com/lockstep-sched/lockstep/pkg/numa"
)

// FuzzParseNRT: whatever a node agent publishes, reading its zones never
// panics, never gives a zone more free CPUs than it can allocate, an object
// compared with itself never looks like more room, and kubelet's model
// never gives a pod more than a zone has.
func FuzzParseNRT(f *testing.F) {
	seed, _ := json.Marshal(nrt("single-numa-node", "8", "6"))
	f.Add(seed, int64(4))
	f.Add([]byte(`{"zones":[{"name":"node-0","type":"Node","resources":[{"name":"cpu","capacity":"-1","allocatable":"1e3","available":"-5"}]}]}`), int64(1))
	f.Add([]byte(`{"attributes":[{"name":"topologyManagerPolicy","value":"restricted"}],"zones":[{"name":"","type":"Node"}]}`), int64(0))
	f.Add([]byte(`{}`), int64(-1))
	f.Fuzz(func(t *testing.T, data []byte, cpus int64) {
		var obj nrtv1alpha2.NodeResourceTopology
		if err := json.Unmarshal(data, &obj); err != nil {
			return
		}
		p := parse(&obj)
		for i := range p.Free {
			if p.Free[i] < 0 || p.Free[i] > p.Allocatable[i] || p.Allocatable[i] > p.Capacity[i] {
				t.Fatalf("zone %d: free %d, allocatable %d, capacity %d", i, p.Free[i], p.Allocatable[i], p.Capacity[i])
			}
		}
		if roomGrew(p, p) {
			t.Fatal("an object compared with itself shows more room")
		}
		if len(p.Free) > 8 {
			return // kubelet refuses to run on more NUMA nodes
		}
		free := append([]int64(nil), p.Free...)
		a := numa.Admit(p.Policy, p.Capacity, free, numa.Demand{{CPUs: cpus}})
		for i, c := range a.Took {
			if c < 0 || c > p.Free[i] {
				t.Fatalf("zone %d given %d of %d", i, c, p.Free[i])
			}
		}
	})
}
