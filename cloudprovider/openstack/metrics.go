package openstack

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of every OpenStack API call, by service, operation and result.
type Metrics struct {
	Requests *prometheus.CounterVec
	Latency  *prometheus.HistogramVec
}

// NewMetrics registers the call metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "openstack_autoscaler_openstack_requests_total",
			Help: "OpenStack API requests by service, operation (method and path template) and result (HTTP status class or error).",
		}, []string{"service", "operation", "result"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "openstack_autoscaler_openstack_request_duration_seconds",
			Help:    "Latency of OpenStack API requests.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"service", "operation"}),
	}
	reg.MustRegister(m.Requests, m.Latency)
	return m
}

// Transport wraps next so every request is counted and timed.
func (m *Metrics) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		service, operation := Operation(req)
		start := time.Now()
		resp, err := next.RoundTrip(req)
		m.Latency.WithLabelValues(service, operation).Observe(time.Since(start).Seconds())
		result := "error"
		if err == nil {
			result = strconv.Itoa(resp.StatusCode/100) + "xx"
		}
		m.Requests.WithLabelValues(service, operation, result).Inc()
		return resp, err
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

var (
	uuidSegment  = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)
	versionRoots = map[string]string{"v2.1": "compute", "v3": "identity", "v1": "orchestration", "v2": "image", "v2.0": "network"}
)

// Operation names a request for metrics with bounded cardinality: the service (from the API
// version in the path) and the method with IDs and names replaced, like "GET /servers/{id}".
func Operation(req *http.Request) (service, operation string) {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	service = "unknown"
	start := 0
	for i, p := range parts {
		if s, ok := versionRoots[p]; ok {
			service, start = s, i+1
			break
		}
	}
	var tmpl []string
	for i, p := range parts[start:] {
		switch {
		case service == "orchestration" && i == 0:
			tmpl = append(tmpl, "{project}") // Heat URLs start with the project ID
		case uuidSegment.MatchString(p):
			tmpl = append(tmpl, "{id}")
		case service == "orchestration" && i == 2 && len(tmpl) > 0 && tmpl[1] == "stacks":
			tmpl = append(tmpl, "{name}") // /stacks/<name>/<id>
		default:
			tmpl = append(tmpl, p)
		}
	}
	return service, req.Method + " /" + strings.Join(tmpl, "/")
}
