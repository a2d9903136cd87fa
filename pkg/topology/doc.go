// Package topology knows nodes' NUMA zones from NodeResourceTopology
// objects (topology.node.k8s.io/v1alpha2) and keeps account of the pods
// with exclusive CPUs that kubelet has yet to admit there, so that the
// scheduler asks pkg/numa's model of kubelet the right question.
package topology
