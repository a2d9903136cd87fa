package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/endpoints/request"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
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
	// uses counts requests by "verb group/resource[/subresource]", as RBAC
	// sees them; forbidden lists those the apiserver refused with 403.
	uses      map[string]int64
	forbidden map[string]bool
	// binds times each pod's first successful binding, by
	// "namespace/name".
	binds map[string]BindTiming
}

// BindTiming is when a pod's successful binding reached the proxy on its
// way to the apiserver, and when the apiserver's answer came back: the
// moment the pod was bound, with no watch delivery in between.
type BindTiming struct {
	Sent, Answered time.Time
}

// NewRequestCounter returns a counter at zero.
func NewRequestCounter() *RequestCounter {
	return &RequestCounter{counts: map[string]int64{}, uses: map[string]int64{}, forbidden: map[string]bool{}, binds: map[string]BindTiming{}}
}

// Uses returns how many requests were made of each RBAC verb on each
// resource ("list /pods", "create /pods/binding", "get coordination.k8s.io/leases"),
// non-resource paths as "get /healthz".
func (c *RequestCounter) Uses() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.uses)
}

// Forbidden lists the uses the apiserver refused with 403 Forbidden.
func (c *RequestCounter) Forbidden() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.forbidden))
}

var requestInfos = &request.RequestInfoFactory{APIPrefixes: sets.NewString("api", "apis"), GrouplessAPIPrefixes: sets.NewString("api")}

// use names a request as RBAC authorizes it.
func use(r *http.Request) string {
	info, err := requestInfos.NewRequestInfo(r)
	if err != nil {
		return r.Method + " " + r.URL.Path
	}
	if !info.IsResourceRequest {
		return info.Verb + " " + info.Path
	}
	res := info.APIGroup + "/" + info.Resource
	if info.Subresource != "" {
		res += "/" + info.Subresource
	}
	return info.Verb + " " + res
}

// BindTimes returns the timing of each pod's first successful binding, by
// "namespace/name".
func (c *RequestCounter) BindTimes() map[string]BindTiming {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.binds)
}

func (c *RequestCounter) bound(pod string, t BindTiming) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, seen := c.binds[pod]; !seen {
		c.binds[pod] = t
	}
}

// boundPod names the pod of a binding request: "namespace/name" from
// /api/v1/namespaces/<namespace>/pods/<name>/binding, "" for any other.
func boundPod(method, path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if method != http.MethodPost || len(parts) != 7 || parts[0] != "api" || parts[2] != "namespaces" || parts[4] != "pods" || parts[6] != "binding" {
		return ""
	}
	return parts[3] + "/" + parts[5]
}

// used counts a use when its request arrives: a watch is answered only
// when it ends.
func (c *RequestCounter) used(u string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.uses[u]++
}

func (c *RequestCounter) refused(u string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forbidden[u] = true
}

// statusRecorder reports a 403, and a binding's success, as the proxy
// writes the apiserver's answer.
type statusRecorder struct {
	http.ResponseWriter
	onForbidden func()
	// onSuccess, when set, is told of a 2xx answer.
	onSuccess func()
}

func (s *statusRecorder) WriteHeader(code int) {
	switch {
	case code == http.StatusForbidden:
		s.onForbidden()
	case code >= 200 && code < 300 && s.onSuccess != nil:
		s.onSuccess()
	}
	s.ResponseWriter.WriteHeader(code)
}

// Flush passes streaming (watches) through.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
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
// With a token, the component authenticates with it (a ServiceAccount's)
// rather than as the admin.
func (cp *ControlPlane) CountingKubeconfig(ctx context.Context, counter *RequestCounter, kubeconfig, token string) error {
	return cp.countingProxy(ctx, counter, kubeconfig, token)
}

// countingProxy serves the apiserver's API on a loopback port, counting
// requests, and writes a kubeconfig for it. Requests that carry a
// token of their own keep it: the proxy's admin token is only added to
// those that carry none.
func (cp *ControlPlane) countingProxy(ctx context.Context, counter *RequestCounter, kubeconfig, token string) error {
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
		u := use(r)
		counter.used(u)
		sr := &statusRecorder{ResponseWriter: w, onForbidden: func() { counter.refused(u) }}
		if pod := boundPod(r.Method, r.URL.Path); pod != "" {
			sent := time.Now()
			sr.onSuccess = func() { counter.bound(pod, BindTiming{Sent: sent, Answered: time.Now()}) }
		}
		proxy.ServeHTTP(sr, r)
	})}
	// HTTPS, so that clients speak HTTP/2 to the proxy as they do to an
	// apiserver: over plain HTTP client-go uses HTTP/1.1, one connection
	// per request in flight, and a gang of hundreds released at once
	// would open hundreds of connections, a cost no cluster has.
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		return fmt.Errorf("the counting proxy's certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("the counting proxy's certificate: %w", err)
	}
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Printf("counting proxy: %v\n", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["counted"] = &clientcmdapi.Cluster{Server: "https://" + ln.Addr().String(), CertificateAuthorityData: certPEM}
	kc.AuthInfos["proxy"] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["counted"] = &clientcmdapi.Context{Cluster: "counted", AuthInfo: "proxy"}
	kc.CurrentContext = "counted"
	return clientcmd.WriteToFile(*kc, kubeconfig)
}
