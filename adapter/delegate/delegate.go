// Package delegate lets the adapter stand in front of the metrics server an APIService named
// before it (prometheus-adapter for custom.metrics.k8s.io, KEDA for external.metrics.k8s.io): the
// adapter serves its own metrics and hands every other metric request, and discovery, to that
// server unchanged.
//
// Wrap sits inside the API server's handler chain, after authentication and authorization: a
// caller reaches the backend only for a request the cluster has already allowed it (the same
// SubjectAccessReview the backend would make). The backend then sees the adapter's own identity
// (its service account), which it must allow to read the group.
package delegate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/util/responsewriter"
	"k8s.io/klog/v2"
)

// Backend is the server that served a group before this adapter took its APIServices over.
type Backend struct {
	// Group is the API group handed on: custom.metrics.k8s.io or external.metrics.k8s.io.
	Group string
	// Ours names the metrics this adapter serves in Group; a request for any other goes to URL.
	Ours sets.Set[string]
	// URL is the backend's base (https://name.namespace.svc:port); Transport reaches it with
	// the adapter's credentials.
	URL       *url.URL
	Transport http.RoundTripper
	// DiscoveryTimeout bounds the backend's share of a discovery request (3 s when 0: the
	// aggregator gives the whole request 5 s, and a backend that hangs must not take this
	// adapter's own resources down with it).
	DiscoveryTimeout time.Duration

	proxy *httputil.ReverseProxy
}

// Metrics counts what was handed on.
type Metrics struct {
	Requests        *prometheus.CounterVec // group, code
	DiscoveryErrors *prometheus.CounterVec // group
}

// NewMetrics registers the delegation counters with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "connection_adapter_delegated_requests_total",
			Help: "Metric requests handed to the backend that served the group before (group, HTTP code; 0: backend unreachable)."},
			[]string{"group", "code"}),
		DiscoveryErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "connection_adapter_delegate_discovery_errors_total",
			Help: "Discovery requests answered without the backend's resources because it failed."}, []string{"group"}),
	}
	reg.MustRegister(m.Requests, m.DiscoveryErrors)
	return m
}

// Wrap returns local with the backends in front of it. Requests outside the backends' groups,
// and requests for metrics in Ours, go to local.
func Wrap(local http.Handler, backends []*Backend, m *Metrics) http.Handler {
	if len(backends) == 0 {
		return local
	}
	byGroup := map[string]*Backend{}
	for _, b := range backends {
		b.proxy = b.newProxy(m)
		byGroup[b.Group] = b
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimSuffix(r.URL.Path, "/")
		if path == "/apis" && strings.Contains(r.Header.Get("Accept"), "apidiscovery.k8s.io") {
			// Aggregated discovery would list only this adapter's resources for the whole
			// group. Answered in the legacy form, the aggregator asks each version's list
			// instead, which is merged below.
			r.Header.Set("Accept", "application/json")
			local.ServeHTTP(w, r)
			return
		}
		parts := strings.Split(strings.TrimPrefix(path, "/apis/"), "/")
		if !strings.HasPrefix(path, "/apis/") || len(parts) < 2 {
			local.ServeHTTP(w, r)
			return
		}
		b := byGroup[parts[0]]
		switch {
		case b == nil:
			local.ServeHTTP(w, r)
		case len(parts) == 2:
			b.discovery(w, r, local, m)
		case b.Ours.Has(parts[len(parts)-1]):
			local.ServeHTTP(w, r)
		default:
			b.proxy.ServeHTTP(w, r)
		}
	})
}

func (b *Backend) newProxy(m *Metrics) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(b.URL)
			pr.Out.URL.Path, pr.Out.URL.RawPath = pr.In.URL.Path, pr.In.URL.RawPath
			stripCredentials(pr.Out.Header)
		},
		Transport: b.Transport,
		ModifyResponse: func(resp *http.Response) error {
			m.Requests.WithLabelValues(b.Group, fmt.Sprint(resp.StatusCode)).Inc()
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			m.Requests.WithLabelValues(b.Group, "0").Inc()
			klog.ErrorS(err, "backend unreachable", "group", b.Group, "backend", b.URL.Host, "path", r.URL.Path)
			writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
				fmt.Sprintf("%s is handed to %s, which did not answer: %v", b.Group, b.URL.Host, err))
		},
	}
}

// stripCredentials removes what identified the caller to this adapter: the backend sees the
// adapter's own credentials, added by Transport.
func stripCredentials(h http.Header) {
	h.Del("Authorization")
	for k := range h {
		l := strings.ToLower(k)
		if strings.HasPrefix(l, "x-remote-") || strings.HasPrefix(l, "impersonate-") {
			h.Del(k)
		}
	}
}

// discovery answers GET /apis/<group>/<version> with this adapter's resources and the
// backend's. When the backend fails, this adapter's own are served (its metrics stay available)
// and the failure is logged and counted.
func (b *Backend) discovery(w http.ResponseWriter, r *http.Request, local http.Handler, m *Metrics) {
	r.Header.Set("Accept", "application/json")
	r.Header.Del("Accept-Encoding")
	lw := responsewriter.NewInMemoryResponseWriter()
	local.ServeHTTP(lw, r)
	theirs, code, body, err := b.fetchDiscovery(r.Context(), r.URL.Path)
	if lw.RespCode() == http.StatusNotFound && err == nil {
		// This adapter does not serve the group's version: the backend's answer, as it is.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(body)
		return
	}
	if lw.RespCode() != http.StatusOK {
		copyResponse(w, lw)
		return
	}
	var ours metav1.APIResourceList
	if jerr := json.Unmarshal(lw.Data(), &ours); jerr != nil {
		copyResponse(w, lw)
		return
	}
	switch {
	case err != nil:
		m.DiscoveryErrors.WithLabelValues(b.Group).Inc()
		klog.ErrorS(err, "discovery without the backend's resources", "group", b.Group, "backend", b.URL.Host)
	case theirs != nil: // nil: the backend does not serve this version
		ours.APIResources = Merge(ours.APIResources, theirs.APIResources, b.Ours)
	}
	out, _ := json.Marshal(&ours)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// fetchDiscovery reads the backend's resource list at path. err is set unless it answered 200
// with a list (or 404, which is passed on as it is).
func (b *Backend) fetchDiscovery(ctx context.Context, path string) (*metav1.APIResourceList, int, []byte, error) {
	timeout := b.DiscoveryTimeout
	if timeout == 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := *b.URL
	u.Path = path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := (&http.Client{Transport: b.Transport}).Do(req)
	if err != nil {
		return nil, 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, 0, nil, err
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, resp.StatusCode, body, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, body, fmt.Errorf("GET %s: %s: %.200s", path, resp.Status, body)
	}
	var list metav1.APIResourceList
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, resp.StatusCode, body, fmt.Errorf("GET %s: not a resource list: %w", path, err)
	}
	return &list, resp.StatusCode, body, nil
}

// Merge returns ours followed by those of theirs whose names ours does not have, leaving out
// theirs for a metric this adapter serves (requests for it come here: listing it as theirs would
// promise what they do not answer).
func Merge(ours, theirs []metav1.APIResource, ourMetrics sets.Set[string]) []metav1.APIResource {
	seen := sets.New[string]()
	for _, r := range ours {
		seen.Insert(r.Name)
	}
	out := append([]metav1.APIResource{}, ours...)
	for _, r := range theirs {
		metric := r.Name[strings.LastIndex(r.Name, "/")+1:]
		if !seen.Has(r.Name) && !ourMetrics.Has(metric) {
			seen.Insert(r.Name)
			out = append(out, r)
		}
	}
	return out
}

// recorded is what responsewriter.NewInMemoryResponseWriter records.
type recorded interface {
	Header() http.Header
	RespCode() int
	Data() []byte
}

func copyResponse(w http.ResponseWriter, lw recorded) {
	for k, v := range lw.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(lw.RespCode())
	_, _ = w.Write(lw.Data())
}

func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	st := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Code: int32(code), Reason: reason, Message: msg}
	out, _ := json.Marshal(&st)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(out)
}
