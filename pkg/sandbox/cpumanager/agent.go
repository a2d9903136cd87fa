package cpumanager

import (
	"context"
	"time"

	nrtclientset "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/generated/clientset/versioned"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
)

// DefaultPublishInterval is how often the agent publishes the nodes whose
// CPUs changed: real agents take from a second (on kubelet's state
// changes) to a minute (polling).
const DefaultPublishInterval = 500 * time.Millisecond

// RunAgent publishes, as a node agent (NFD's topology-updater, RTE) does,
// each changed node's free CPUs per zone as the NodeResourceTopology's
// available, until ctx ends.
func (m *Manager) RunAgent(ctx context.Context, client nrtclientset.Interface, interval time.Duration) {
	logger := klog.FromContext(ctx).WithName("node-agent")
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.notify:
		}
		for node, free := range m.changed() {
			if err := publish(ctx, client, node, free); err != nil && ctx.Err() == nil {
				logger.Error(err, "Publishing NodeResourceTopology", "node", node)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func publish(ctx context.Context, client nrtclientset.Interface, node string, free map[string]int64) error {
	nrts := client.TopologyV1alpha2().NodeResourceTopologies()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj, err := nrts.Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for zi := range obj.Zones {
			z := &obj.Zones[zi]
			cpus, ok := free[z.Name]
			if z.Type != "Node" || !ok {
				continue
			}
			for ri := range z.Resources {
				if z.Resources[ri].Name == string(v1.ResourceCPU) {
					z.Resources[ri].Available = *resource.NewQuantity(cpus, resource.DecimalSI)
				}
			}
		}
		_, err = nrts.Update(ctx, obj, metav1.UpdateOptions{})
		return err
	})
}
