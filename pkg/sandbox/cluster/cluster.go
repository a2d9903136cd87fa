// Package cluster lays out the sandbox's simulated nodes: capacity, zone,
// rack and hostname labels, NUMA zones, and the Node and
// NodeResourceTopology objects that describe them to the API server.
package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	nrtv1alpha2 "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/apis/topology/v1alpha2"
	nrtclientset "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/generated/clientset/versioned"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/lockstep-sched/lockstep/pkg/numa"
)

// Labels the nodes carry; the scheduler's topology levels read them.
const (
	LabelZone     = v1.LabelTopologyZone
	LabelRack     = "topology.kubernetes.io/rack"
	LabelHostname = v1.LabelHostname
)

// MaxPods is every simulated node's pod capacity, the kubelet's default.
const MaxPods = 110

// Spec is the shape of the simulated cluster.
type Spec struct {
	Nodes         int
	CPUsPerNode   int
	MemoryPerNode resource.Quantity
	// NUMAZones per node; CPUs and memory are split evenly among them.
	NUMAZones int
	// NUMAPolicy and NUMAScope are every node's Topology Manager policy
	// and scope; single-numa-node and container when empty.
	NUMAPolicy numa.Policy
	NUMAScope  numa.Scope
	// Racks are spread over Zones; nodes are spread over racks.
	Racks int
	Zones int
	// NamePrefix starts every node name, so that a run can share an API
	// server with other users of nodes.
	NamePrefix string
}

// Validate says what is wrong with a spec, in terms of the sandbox's flags.
func (s Spec) Validate() error {
	var errs []error
	if s.Nodes < 1 {
		errs = append(errs, fmt.Errorf("nodes must be at least 1, not %d", s.Nodes))
	}
	if s.CPUsPerNode < 1 {
		errs = append(errs, fmt.Errorf("cpus-per-node must be at least 1, not %d", s.CPUsPerNode))
	}
	if s.MemoryPerNode.Sign() <= 0 {
		errs = append(errs, fmt.Errorf("memory-per-node must be positive, not %s", s.MemoryPerNode.String()))
	}
	if s.NUMAZones < 1 || (s.CPUsPerNode >= 1 && s.NUMAZones > s.CPUsPerNode) {
		errs = append(errs, fmt.Errorf("numa-zones must be between 1 and cpus-per-node (%d), not %d", s.CPUsPerNode, s.NUMAZones))
	}
	if s.Racks < 1 || (s.Nodes >= 1 && s.Racks > s.Nodes) {
		errs = append(errs, fmt.Errorf("racks must be between 1 and the number of nodes (%d), not %d", s.Nodes, s.Racks))
	}
	if s.Zones < 1 || (s.Racks >= 1 && s.Zones > s.Racks) {
		errs = append(errs, fmt.Errorf("zones must be between 1 and the number of racks (%d), not %d", s.Racks, s.Zones))
	}
	return errors.Join(errs...)
}

// Node is one simulated node.
type Node struct {
	Name   string
	Rack   string
	Zone   string
	CPUs   int
	Memory resource.Quantity
	NUMA   []NUMAZone
	// NUMAPolicy and NUMAScope are its Topology Manager's.
	NUMAPolicy numa.Policy
	NUMAScope  numa.Scope
}

// NUMAZone is one NUMA node of a simulated node.
type NUMAZone struct {
	Name   string
	CPUs   int
	Memory resource.Quantity
}

// Layout returns the nodes of a valid spec. Nodes fill racks in order, as
// evenly as the counts allow, and racks fill zones the same way, so that
// neighbouring nodes share a rack and neighbouring racks a zone.
func (s Spec) Layout() []Node {
	width := len(fmt.Sprint(s.Nodes))
	cpus := split(int64(s.CPUsPerNode), s.NUMAZones)
	mem := split(s.MemoryPerNode.Value(), s.NUMAZones)
	var nodes []Node
	for i := range s.Nodes {
		rack := i * s.Racks / s.Nodes
		zone := rack * s.Zones / s.Racks
		n := Node{
			Name:       fmt.Sprintf("%snode-%0*d", s.NamePrefix, width, i+1),
			Rack:       fmt.Sprintf("rack-%d", rack+1),
			Zone:       fmt.Sprintf("zone-%c", 'a'+rune(zone%26)),
			CPUs:       s.CPUsPerNode,
			Memory:     s.MemoryPerNode.DeepCopy(),
			NUMAPolicy: cmp.Or(s.NUMAPolicy, numa.PolicySingleNUMANode),
			NUMAScope:  cmp.Or(s.NUMAScope, numa.ScopeContainer),
		}
		for z := range s.NUMAZones {
			n.NUMA = append(n.NUMA, NUMAZone{
				// node-N is how NUMA zones are named in NodeResourceTopology
				// objects published by the node agents.
				Name:   fmt.Sprintf("node-%d", z),
				CPUs:   int(cpus[z]),
				Memory: *resource.NewQuantity(mem[z], resource.BinarySI),
			})
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// split divides total into n parts that differ by at most one, larger first.
func split(total int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = total / int64(n)
		if int64(i) < total%int64(n) {
			out[i]++
		}
	}
	return out
}

// NUMANode returns the node's zones, all free, as kubelet's CPU manager
// sees them.
func (n Node) NUMANode() numa.Node {
	out := numa.Node{Policy: n.NUMAPolicy, Scope: n.NUMAScope}
	for _, z := range n.NUMA {
		out.Names = append(out.Names, z.Name)
		out.Capacity = append(out.Capacity, int64(z.CPUs))
		out.Free = append(out.Free, int64(z.CPUs))
	}
	return out
}

// NodeObject is the Node as the API server stores it: ready, untainted,
// with its capacity all allocatable.
func (n Node) NodeObject() *v1.Node {
	res := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewQuantity(int64(n.CPUs), resource.DecimalSI),
		v1.ResourceMemory: n.Memory.DeepCopy(),
		v1.ResourcePods:   *resource.NewQuantity(MaxPods, resource.DecimalSI),
	}
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name,
			Labels: map[string]string{
				LabelHostname: n.Name,
				LabelRack:     n.Rack,
				LabelZone:     n.Zone,
			},
		},
		Status: v1.NodeStatus{
			Capacity:    res,
			Allocatable: res.DeepCopy(),
			Conditions: []v1.NodeCondition{{
				Type: v1.NodeReady, Status: v1.ConditionTrue,
				Reason: "SandboxKubelet", Message: "simulated by the Lockstep sandbox",
			}},
		},
	}
}

// Topology attributes, as the node agents publish them.
const (
	policyAttribute = "topologyManagerPolicy"
	scopeAttribute  = "topologyManagerScope"
)

// TopologyObject is the node's NodeResourceTopology: one zone of type Node
// per NUMA zone, with its share of CPU and memory all available, and the
// Topology Manager's policy and scope.
func (n Node) TopologyObject() *nrtv1alpha2.NodeResourceTopology {
	t := &nrtv1alpha2.NodeResourceTopology{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name},
		Attributes: nrtv1alpha2.AttributeList{
			{Name: policyAttribute, Value: string(n.NUMAPolicy)},
			{Name: scopeAttribute, Value: string(n.NUMAScope)},
		},
	}
	if n.NUMAPolicy == numa.PolicySingleNUMANode {
		// The deprecated field too, for consumers that predate attributes.
		level := nrtv1alpha2.SingleNUMANodeContainerLevel
		if n.NUMAScope == numa.ScopePod {
			level = nrtv1alpha2.SingleNUMANodePodLevel
		}
		t.TopologyPolicies = []string{string(level)}
	}
	for _, z := range n.NUMA {
		cpu := *resource.NewQuantity(int64(z.CPUs), resource.DecimalSI)
		t.Zones = append(t.Zones, nrtv1alpha2.Zone{
			Name: z.Name,
			Type: "Node",
			Resources: nrtv1alpha2.ResourceInfoList{
				{Name: string(v1.ResourceCPU), Capacity: cpu, Allocatable: cpu, Available: cpu},
				{Name: string(v1.ResourceMemory), Capacity: z.Memory, Allocatable: z.Memory, Available: z.Memory},
			},
		})
	}
	return t
}

// Create creates every node and its NodeResourceTopology.
func Create(ctx context.Context, client kubernetes.Interface, topo nrtclientset.Interface, nodes []Node) error {
	for _, n := range nodes {
		if _, err := client.CoreV1().Nodes().Create(ctx, n.NodeObject(), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating node %s: %w", n.Name, err)
		}
		if _, err := topo.TopologyV1alpha2().NodeResourceTopologies().Create(ctx, n.TopologyObject(), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating NodeResourceTopology %s: %w", n.Name, err)
		}
	}
	return nil
}
