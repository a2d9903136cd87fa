// Package apidiscovery runs a watch once the cluster serves an API that it
// may not serve yet (a CRD installed later, a feature gate turned on), so
// that a scheduler started before works as before until then and picks
// the API up without a restart.
package apidiscovery

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
)

// Serves reports whether the cluster serves resource gvr.
func Serves(disc discovery.DiscoveryInterface, gvr schema.GroupVersionResource) bool {
	list, err := disc.ServerResourcesForGroupVersion(gvr.GroupVersion().String())
	if err != nil {
		return false
	}
	for _, r := range list.APIResources {
		if r.Name == gvr.Resource {
			return true
		}
	}
	return false
}

// WhenServed asks once, now, whether the cluster serves gvr, and returns
// the answer; then, on its own goroutine, it runs found as soon as the
// API is served (at once if it already is), asking every interval until
// ctx ends. missing runs once, the first time the API is found missing.
func WhenServed(ctx context.Context, disc discovery.DiscoveryInterface, gvr schema.GroupVersionResource, interval time.Duration, missing, found func()) bool {
	served := Serves(disc, gvr)
	go func() {
		said := false
		for now := served; ; now = Serves(disc, gvr) {
			if now {
				found()
				return
			}
			if !said {
				missing()
				said = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
			}
		}
	}()
	return served
}
