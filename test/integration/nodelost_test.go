package integration

import (
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// A node lost while members wait at Permit on it, on the real apiserver.
// The bind budget is one gang of two, and the first gang's bindings are held
// by an admission webhook, so the second gang, planned onto the only node
// left and assumed there, waits at Permit for its turn. That node is deleted
// (a new one having joined): the plan is dropped with a NodeLost Event, the
// gang is placed again on the new node, and once the first gang's bindings
// go through the second binds there, none of it to the lost node.
func TestNodeLostWhileMembersWaitAtPermit(t *testing.T) {
	e := newEnv(t, withArgs(map[string]any{"bindBudget": 2}))
	hold := e.holdBindings("held-")
	// Each gang of 2 x 4 CPUs fills one 8-CPU node.
	e.addNodes("a", 1, nodeSpec{cpu: "8", mem: "32Gi"})
	e.createGang("held", 2, 2, podSpec{cpu: "4"})
	e.waitFor("the first gang's bindings held at the webhook", bindBy, func() bool { return hold.waiting() == 2 })
	spare := e.addNodes("b", 1, nodeSpec{cpu: "8", mem: "32Gi"})[0]
	e.createGang("next", 2, 2, podSpec{cpu: "4"})
	// planWindow lets the second gang be planned and assumed on the spare
	// node; the NodeLost Event below checks that it was.
	const planWindow = 2 * time.Second
	e.holdsFor("the second gang waits for the bind budget", planWindow, func() bool { return e.bound()["next"] == 0 })
	replacement := e.addNodes("c", 1, nodeSpec{cpu: "8", mem: "32Gi"})[0]
	if err := e.client.CoreV1().Nodes().Delete(e.ctx, spare, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("PodGroup", "next", "node "+spare+" was deleted", 30*time.Second)
	hold.open()
	e.waitGangBound("held", 2, bindBy)
	e.waitGangBound("next", 2, bindBy)
	for pod, node := range e.nodeOf() {
		if strings.HasPrefix(pod, "next-") && node != replacement {
			t.Errorf("%s bound to %s, want the node that replaced the lost one, %s", pod, node, replacement)
		}
	}
}

// bindingHold is an admission webhook that holds pods/binding requests of
// pods whose name has a prefix until released.
type bindingHold struct {
	mu      sync.Mutex
	held    int
	release chan struct{}
}

func (h *bindingHold) waiting() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held
}

// holdBindings serves a webhook for this namespace's bindings that holds
// those of pods named prefix* until the test releases them (or ends).
func (e *env) holdBindings(prefix string) *bindingHold {
	e.t.Helper()
	h := &bindingHold{release: make(chan struct{})}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		if strings.HasPrefix(review.Request.Name, prefix) {
			h.mu.Lock()
			h.held++
			h.mu.Unlock()
			select {
			case <-h.release:
			case <-r.Context().Done():
			}
			h.mu.Lock()
			h.held--
			h.mu.Unlock()
		}
		review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		review.Request = nil
		_ = json.NewEncoder(w).Encode(review)
	}))
	srv.StartTLS()
	e.t.Cleanup(srv.Close)
	e.t.Cleanup(func() { h.open() })
	name := "hold-bindings-" + e.ns
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	url := srv.URL + "/validate"
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "hold.bindings.lockstep.test",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": e.ns}},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods/binding"}}}},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
			TimeoutSeconds:          ptr.To[int32](30),
		}},
	}
	api := e.client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if _, err := api.Create(e.ctx, cfg, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = api.Delete(e.ctx, name, metav1.DeleteOptions{}) })
	return h
}

// open lets every held binding, and those to come, through.
func (h *bindingHold) open() {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.release:
	default:
		close(h.release)
	}
}
