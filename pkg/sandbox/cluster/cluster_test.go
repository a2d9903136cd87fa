package cluster

import (
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func spec() Spec {
	return Spec{Nodes: 16, CPUsPerNode: 32, MemoryPerNode: resource.MustParse("128Gi"), NUMAZones: 2, Racks: 4, Zones: 2}
}

func TestLayout(t *testing.T) {
	nodes := spec().Layout()
	if len(nodes) != 16 {
		t.Fatalf("%d nodes", len(nodes))
	}
	if nodes[0].Name != "node-01" || nodes[15].Name != "node-16" {
		t.Errorf("names %s..%s, want node-01..node-16", nodes[0].Name, nodes[15].Name)
	}
	perRack := map[string]int{}
	rackZone := map[string]string{}
	for _, n := range nodes {
		perRack[n.Rack]++
		if z, ok := rackZone[n.Rack]; ok && z != n.Zone {
			t.Errorf("rack %s is in zones %s and %s", n.Rack, z, n.Zone)
		}
		rackZone[n.Rack] = n.Zone
	}
	if len(perRack) != 4 {
		t.Errorf("racks = %v, want 4", perRack)
	}
	for r, c := range perRack {
		if c != 4 {
			t.Errorf("rack %s has %d nodes, want 4", r, c)
		}
	}
	zones := map[string]int{}
	for _, z := range rackZone {
		zones[z]++
	}
	if len(zones) != 2 || zones["zone-a"] != 2 || zones["zone-b"] != 2 {
		t.Errorf("racks per zone = %v, want 2 racks in each of zone-a and zone-b", zones)
	}
	n := nodes[0]
	if len(n.NUMA) != 2 || n.NUMA[0].CPUs != 16 || n.NUMA[1].Name != "node-1" || n.NUMA[1].Memory.Cmp(resource.MustParse("64Gi")) != 0 {
		t.Errorf("NUMA zones = %+v, want 2 of 16 CPUs and 64Gi", n.NUMA)
	}
}

func TestLayoutUneven(t *testing.T) {
	s := Spec{Nodes: 5, CPUsPerNode: 7, MemoryPerNode: resource.MustParse("1Gi"), NUMAZones: 3, Racks: 2, Zones: 1, NamePrefix: "sbx-"}
	nodes := s.Layout()
	if nodes[0].Name != "sbx-node-1" {
		t.Errorf("name = %s", nodes[0].Name)
	}
	sum := 0
	for _, z := range nodes[0].NUMA {
		sum += z.CPUs
	}
	if sum != 7 || nodes[0].NUMA[0].CPUs != 3 || nodes[0].NUMA[2].CPUs != 2 {
		t.Errorf("CPUs per NUMA zone = %+v, want 3,2,2", nodes[0].NUMA)
	}
	var racks []string
	for _, n := range nodes {
		racks = append(racks, n.Rack)
	}
	if got := strings.Join(racks, ","); got != "rack-1,rack-1,rack-1,rack-2,rack-2" {
		t.Errorf("racks = %s", got)
	}
}

func TestValidate(t *testing.T) {
	if err := spec().Validate(); err != nil {
		t.Errorf("default spec: %v", err)
	}
	bad := spec()
	bad.Nodes, bad.Racks, bad.NUMAZones = 2, 3, 0
	err := bad.Validate()
	if err == nil || !strings.Contains(err.Error(), "racks must be between 1 and the number of nodes (2), not 3") ||
		!strings.Contains(err.Error(), "numa-zones") {
		t.Errorf("Validate = %v", err)
	}
}

func TestObjects(t *testing.T) {
	n := spec().Layout()[5]
	node := n.NodeObject()
	if node.Labels[LabelRack] != n.Rack || node.Labels[LabelZone] != n.Zone || node.Labels[LabelHostname] != n.Name {
		t.Errorf("labels = %v", node.Labels)
	}
	if node.Status.Allocatable.Pods().Value() != MaxPods || node.Status.Allocatable.Cpu().Value() != 32 {
		t.Errorf("allocatable = %v", node.Status.Allocatable)
	}
	topo := n.TopologyObject()
	if topo.Name != n.Name || len(topo.Zones) != 2 {
		t.Fatalf("topology = %+v", topo)
	}
	attrs := map[string]string{}
	for _, a := range topo.Attributes {
		attrs[a.Name] = a.Value
	}
	if attrs["topologyManagerPolicy"] != "single-numa-node" || attrs["topologyManagerScope"] != "container" {
		t.Errorf("attributes = %v", attrs)
	}
	z := topo.Zones[1]
	if z.Name != "node-1" || z.Type != "Node" || len(z.Resources) != 2 {
		t.Fatalf("zone = %+v", z)
	}
	for _, r := range z.Resources {
		want := map[string]string{string(v1.ResourceCPU): "16", string(v1.ResourceMemory): "64Gi"}[r.Name]
		if r.Capacity.String() != want || r.Available.String() != want || r.Allocatable.String() != want {
			t.Errorf("%s = %s/%s/%s, want %s", r.Name, r.Capacity.String(), r.Allocatable.String(), r.Available.String(), want)
		}
	}
}
