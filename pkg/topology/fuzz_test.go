package topology

import (
	"encoding/json"
	"testing"

	nrtv1alpha2 "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/apis/topology/v1alpha2"

	"github.com/lockstep-sched/lockstep/pkg/placement"
)

// FuzzParseNRT: whatever a node agent publishes, reading its zones never
// panics, an object compared with itself never looks like more room, and
// Choose never gives a pod more than a zone has under single-numa-node.
func FuzzParseNRT(f *testing.F) {
	seed, _ := json.Marshal(nrt("single-numa-node", "8", "6"))
	f.Add(seed, int64(4000))
	f.Add([]byte(`{"zones":[{"name":"node-0","type":"Node","resources":[{"name":"cpu","capacity":"-1","allocatable":"1e3","available":"-5"}]}]}`), int64(1))
	f.Add([]byte(`{"attributes":[{"name":"topologyManagerPolicy","value":"single-numa-node"}],"zones":[{"name":"","type":"Node"}]}`), int64(0))
	f.Add([]byte(`{}`), int64(-1))
	f.Fuzz(func(t *testing.T, data []byte, needCPU int64) {
		var obj nrtv1alpha2.NodeResourceTopology
		if err := json.Unmarshal(data, &obj); err != nil {
			return
		}
		zones, single := parse(&obj, false)
		parse(&obj, true)
		if roomGrew(&obj, &obj) {
			t.Fatal("an object compared with itself shows more room")
		}
		got, ok := Choose(zones, single, &placement.Resources{MilliCPU: needCPU})
		if !ok || !single {
			return
		}
		for name, r := range got {
			for _, z := range zones {
				if z.Name == name && r.MilliCPU > z.Free.MilliCPU {
					t.Fatalf("zone %s given %dm of %dm", name, r.MilliCPU, z.Free.MilliCPU)
				}
			}
		}
	})
}
