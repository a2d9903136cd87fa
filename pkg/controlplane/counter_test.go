package controlplane

import (
	"net/http"
	"testing"
)

func TestRequestKind(t *testing.T) {
	for _, tc := range []struct{ method, path, want string }{
		{http.MethodPost, "/api/v1/namespaces/ns/pods/p/binding", RequestBind},
		{http.MethodPatch, "/api/v1/namespaces/ns/pods/p/status", RequestPodStatus},
		{http.MethodPut, "/api/v1/namespaces/ns/pods/p/status", RequestPodStatus},
		{http.MethodPost, "/api/v1/namespaces/ns/events", RequestEvent},
		{http.MethodPatch, "/api/v1/namespaces/ns/events/e", RequestEvent},
		{http.MethodPost, "/apis/events.k8s.io/v1/namespaces/ns/events", RequestEvent},
		{http.MethodGet, "/api/v1/pods?watch=true", RequestRead},
		{http.MethodPut, "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l", RequestOtherWrite},
	} {
		if got := requestKind(tc.method, tc.path); got != tc.want {
			t.Errorf("%s %s: %s, want %s", tc.method, tc.path, got, tc.want)
		}
	}
}

func TestBoundPod(t *testing.T) {
	for _, tc := range []struct{ method, path, want string }{
		{http.MethodPost, "/api/v1/namespaces/ns/pods/p/binding", "ns/p"},
		{http.MethodPost, "/api/v1/namespaces/ns/pods/p/binding/", "ns/p"},
		{http.MethodGet, "/api/v1/namespaces/ns/pods/p/binding", ""},
		{http.MethodPost, "/api/v1/namespaces/ns/pods/p/eviction", ""},
		{http.MethodPost, "/api/v1/namespaces/ns/bindings", ""},
		{http.MethodPost, "/apis/x/v1/namespaces/ns/pods/p/binding", ""},
	} {
		if got := boundPod(tc.method, tc.path); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}
