package gang

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func readyNode(name, cpu string) *v1.Node {
	n := node(name, cpu)
	n.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}
	return n
}

// A node lost while members wait at Permit on it: the plan is dropped, the
// waiting members are rejected, and the gang is placed again on the nodes
// left, none of it on the lost node. A taint the members tolerate loses
// nothing.
func TestNodeLostWhileMembersWaitAtPermit(t *testing.T) {
	for _, tc := range []struct {
		name string
		// lose changes the node; it returns false when the members should
		// not notice.
		lose func(n *v1.Node) (deleted, lost bool)
	}{
		{"deleted", func(*v1.Node) (bool, bool) { return true, true }},
		{"cordoned", func(n *v1.Node) (bool, bool) { n.Spec.Unschedulable = true; return false, true }},
		{"not ready", func(n *v1.Node) (bool, bool) {
			n.Status.Conditions[0].Status = v1.ConditionFalse
			return false, true
		}},
		{"tainted NoExecute", func(n *v1.Node) (bool, bool) {
			n.Spec.Taints = append(n.Spec.Taints, v1.Taint{Key: "maintenance", Effect: v1.TaintEffectNoExecute})
			return false, true
		}},
		{"tainted with a taint the members tolerate", func(n *v1.Node) (bool, bool) {
			n.Spec.Taints = append(n.Spec.Taints, v1.Taint{Key: "tolerated", Effect: v1.TaintEffectNoSchedule})
			return false, false
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, readyNode("n1", "4"), readyNode("n2", "4"), readyNode("n3", "4"))
			h.podGroup("g", 3)
			pods := make([]*v1.Pod, 3)
			for i := range pods {
				pods[i] = member("g", i, "2")
				pods[i].Spec.Tolerations = []v1.Toleration{{Key: "tolerated", Operator: v1.TolerationOpExists}}
			}
			h.pods(pods...)
			first, s := h.schedule(pods[0])
			if !s.IsWait() {
				t.Fatalf("first member: %v", s)
			}
			if _, s := h.schedule(pods[1]); !s.IsWait() {
				t.Fatalf("second member: %v", s)
			}

			n, err := h.client.CoreV1().Nodes().Get(h.ctx, first, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			deleted, lost := tc.lose(n)
			if deleted {
				err = h.client.CoreV1().Nodes().Delete(h.ctx, first, metav1.DeleteOptions{})
			} else {
				_, err = h.client.CoreV1().Nodes().Update(h.ctx, n, metav1.UpdateOptions{})
			}
			if err != nil {
				t.Fatal(err)
			}
			if !lost {
				h.stillWaiting(pods[0])
				if _, s := h.schedule(pods[2]); !s.IsSuccess() {
					t.Fatalf("the quorum after a tolerated taint: %v", s)
				}
				return
			}
			for _, p := range pods[:2] {
				if s := h.outcome(p); s.IsSuccess() {
					t.Fatalf("%s was let go to a node that was %s", p.Name, tc.name)
				}
			}
			if got := h.waitEvent("NodeLost"); len(got) == 0 {
				t.Fatal("no NodeLost Event")
			}
			// The scheduler's snapshot catches up with the node.
			h.setNodes(n, deleted)
			var placed []string
			for _, p := range pods {
				node, s := h.schedule(p)
				if node == first {
					t.Fatalf("%s placed again on the lost node %s", p.Name, first)
				}
				placed = append(placed, node)
				if p == pods[2] && !s.IsSuccess() {
					t.Fatalf("the gang was not placed again: %v (placed %v)", s, placed)
				}
			}
		})
	}
}
