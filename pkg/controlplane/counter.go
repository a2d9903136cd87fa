package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Kinds of API request a RequestCounter tells apart.
const (
	// RequestBind is a pod binding (POST pods/<name>/binding).
	RequestBind = "bind"
	// RequestPodStatus is a pod status write: conditions, nominated node.
	RequestPodStatus = "pod-status"
	// RequestEvent is an Event written.
	RequestEvent = "event"
	// RequestOtherWrite is any other write.
	RequestOtherWrite = "other-write"
	// RequestRead is a get, list or watch.
	RequestRead = "read"
)

// RequestCounter counts the API requests of one client by kind. It sits in
// a reverse proxy in front of the apiserver, so it sees every request of a
// component that is configured only by a kubeconfig (as kube-scheduler is).
type RequestCounter struct {
	mu     sync.Mutex
	counts map[string]int64
}

// NewRequestCounter returns a counter at zero.
func NewRequestCounter() *RequestCounter {
	return &RequestCounter{counts: map[string]int64{}}
}

// Counts returns a copy of the counts so far.
func (c *RequestCounter) Counts() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// Writes returns the number of write requests so far.
func (c *RequestCounter) Writes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[RequestBind] + c.counts[RequestPodStatus] + c.counts[RequestEvent] + c.counts[RequestOtherWrite]
}

func (c *RequestCounter) count(r *http.Request) {
	kind := requestKind(r.Method, r.URL.Path)
	c.mu.Lock()
	c.counts[kind]++
	c.mu.Unlock()
}

func requestKind(method, path string) string {
	switch {
	case method == http.MethodGet:
		return RequestRead
	case method == http.MethodPost && strings.HasSuffix(path, "/binding"):
		return RequestBind
	case strings.Contains(path, "/pods/") && strings.HasSuffix(path, "/status"):
		return RequestPodStatus
	case strings.Contains(path, "/events"):
		return RequestEvent
	}
	return RequestOtherWrite
}

// CountingKubeconfig writes a kubeconfig through which every request is
// counted by counter, for a component run outside StartScheduler's options
// (a child process a test manages itself). The proxy lives as long as ctx.
func (cp *ControlPlane) CountingKubeconfig(ctx context.Context, counter *RequestCounter, kubeconfig string) error {
	return cp.countingProxy(ctx, counter, kubeconfig)
}

// countingProxy serves the apiserver's API on a loopback port without TLS,
// counting requests, and writes a kubeconfig for it.
func (cp *ControlPlane) countingProxy(ctx context.Context, counter *RequestCounter, kubeconfig string) error {
	target, err := url.Parse(cp.Config.Host)
	if err != nil {
		return fmt.Errorf("parsing the apiserver address: %w", err)
	}
	transport, err := rest.TransportFor(cp.Config)
	if err != nil {
		return fmt.Errorf("building the proxy's transport: %w", err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:     transport,
		FlushInterval: -1, // watches stream
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening for the counting proxy: %w", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		counter.count(r)
		proxy.ServeHTTP(w, r)
	})}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Printf("counting proxy: %v\n", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["counted"] = &clientcmdapi.Cluster{Server: "http://" + ln.Addr().String()}
	kc.AuthInfos["proxy"] = &clientcmdapi.AuthInfo{}
	kc.Contexts["counted"] = &clientcmdapi.Context{Cluster: "counted", AuthInfo: "proxy"}
	kc.CurrentContext = "counted"
	return clientcmd.WriteToFile(*kc, kubeconfig)
}
