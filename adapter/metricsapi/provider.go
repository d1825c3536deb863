// Package metricsapi translates the store's values into custom.metrics.k8s.io answers for
// sigs.k8s.io/custom-metrics-apiserver: pods metrics by name or label selector, with a metric
// label selector "port=<n>" narrowing a metric to one listening port; and object metrics for
// Services (over their ready endpoints' pods), Deployments and StatefulSets (over their pods),
// each the sum over those pods.
package metricsapi

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/store"
)

// The served metrics, each a function of a pod's values (port-aware where it makes sense).
var metrics = map[string]struct {
	portAware bool
	// value is the metric and the window it covers; ok is false when there is none yet.
	value func(v store.Values) (x float64, window time.Duration, ok bool)
	// missing says why value has none.
	missing string
}{
	"tcp_connections":     {true, average(func(v store.Values) float64 { return v.Connections }), ""},
	"tcp_connections_max": {false, average(func(v store.Values) float64 { return v.ConnectionsMax }), ""},
	"tcp_new_connections_per_second": {false, func(v store.Values) (float64, time.Duration, bool) { return v.NewPerSecond, v.RateWindow, v.HasRate },
		"there is no rate until its agent has read its accepted-connections counter twice within the window"},
	"tcp_syn_backlog": {false, func(v store.Values) (float64, time.Duration, bool) {
		return v.SynBacklog, v.Window, v.HasSynBacklog
	}, "its node's connection-agent does not count half-open handshakes (tcp_syn_backlog needs --counter=sock_diag)"},
	"tcp_outbound_connections": {false, average(func(v store.Values) float64 { return v.Outbound }), ""},
}

// average serves a value computed over the samples' window.
func average(f func(store.Values) float64) func(store.Values) (float64, time.Duration, bool) {
	return func(v store.Values) (float64, time.Duration, bool) { return f(v), v.Window, true }
}

// PortLabel is the metric label that picks one listening port.
const PortLabel = "port"

var (
	podsResource         = schema.GroupResource{Resource: "pods"}
	servicesResource     = schema.GroupResource{Resource: "services"}
	deploymentsResource  = schema.GroupResource{Group: "apps", Resource: "deployments"}
	statefulSetsResource = schema.GroupResource{Group: "apps", Resource: "statefulsets"}
	resources            = []schema.GroupResource{podsResource, servicesResource, deploymentsResource, statefulSetsResource}
)

// Provider serves the store's values.
type Provider struct {
	Store *store.Store
	Pods  corelisters.PodLister
	// For object metrics (optional: without them only pods are served).
	Slices       discoverylisters.EndpointSliceLister
	Deployments  appslisters.DeploymentLister
	StatefulSets appslisters.StatefulSetLister
	Now          func() time.Time
}

var _ provider.CustomMetricsProvider = &Provider{}

// MetricNames lists the served metrics, sorted.
func MetricNames() []string {
	names := make([]string, 0, len(metrics))
	for n := range metrics {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ListAllMetrics answers discovery from a constant list, without scanning anything.
func (p *Provider) ListAllMetrics() []provider.CustomMetricInfo {
	out := make([]provider.CustomMetricInfo, 0, len(metrics)*len(resources))
	for _, r := range resources {
		for _, n := range MetricNames() {
			out = append(out, provider.CustomMetricInfo{GroupResource: r, Namespaced: true, Metric: n})
		}
	}
	return out
}

func statusError(code int32, reason metav1.StatusReason, format string, a ...any) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: code, Reason: reason,
		Message: fmt.Sprintf(format, a...)}}
}

// check validates the metric and the resource, and parses the metric selector.
func check(info provider.CustomMetricInfo, metricSelector labels.Selector) (port uint16, err error) {
	m, ok := metrics[info.Metric]
	known := false
	for _, r := range resources {
		known = known || r == info.GroupResource
	}
	if !ok || !known {
		return 0, statusError(http.StatusNotFound, metav1.StatusReasonNotFound,
			"metric %q is not served for %s: this adapter serves %s for pods, services, deployments.apps and statefulsets.apps",
			info.Metric, info.GroupResource.String(), strings.Join(MetricNames(), ", "))
	}
	if metricSelector == nil || metricSelector.Empty() {
		return 0, nil
	}
	reqs, _ := metricSelector.Requirements()
	if len(reqs) > 1 {
		return 0, statusError(http.StatusBadRequest, metav1.StatusReasonBadRequest,
			"metric selector %q: give %s=<number> once (one listening port per metric)", metricSelector.String(), PortLabel)
	}
	for _, r := range reqs {
		if r.Key() != PortLabel || (r.Operator() != selection.Equals && r.Operator() != selection.DoubleEquals) || !m.portAware {
			return 0, statusError(http.StatusBadRequest, metav1.StatusReasonBadRequest,
				"metric selector %q: only %s=<number> is supported, and only for tcp_connections", metricSelector.String(), PortLabel)
		}
		n, err := strconv.ParseUint(r.Values().List()[0], 10, 16)
		if err != nil || n == 0 {
			return 0, statusError(http.StatusBadRequest, metav1.StatusReasonBadRequest,
				"metric selector %q: %q is not a port number", metricSelector.String(), r.Values().List()[0])
		}
		port = uint16(n)
	}
	return port, nil
}

// errNotListening says that no pod with values listens on the port asked for.
type errNotListening struct {
	port      uint16
	listening []uint16 // the ports they listen on, sorted
	pods      int      // how many pods with values there are
}

func (e errNotListening) Error() string {
	ports := make([]string, len(e.listening))
	for i, p := range e.listening {
		ports[i] = strconv.Itoa(int(p))
	}
	if len(ports) == 0 {
		ports = []string{"no port"}
	}
	if e.pods == 1 {
		return fmt.Sprintf("port %d is not a listening port of the pod (it listens on %s)", e.port, strings.Join(ports, ", "))
	}
	return fmt.Sprintf("port %d is not a listening port of any of its %d pods with values (they listen on %s)", e.port, e.pods, strings.Join(ports, ", "))
}

// listeners gathers, over pods with values, whether one listens on the port asked for.
type listeners struct {
	port      uint16
	pods      int
	listening bool
	ports     map[uint16]bool
}

func (l *listeners) add(ports []uint16) {
	l.pods++
	for _, p := range ports {
		l.listening = l.listening || p == l.port
		if l.ports == nil {
			l.ports = map[uint16]bool{}
		}
		l.ports[p] = true
	}
}

// err is errNotListening when a port was asked for, some pod has values, and none listens on it.
func (l *listeners) err() error {
	if l.port == 0 || l.pods == 0 || l.listening {
		return nil
	}
	e := errNotListening{port: l.port, pods: l.pods}
	for p := range l.ports {
		e.listening = append(e.listening, p)
	}
	sort.Slice(e.listening, func(i, j int) bool { return e.listening[i] < e.listening[j] })
	return e
}

// value is a pod's metric, with the ports it listens on; without a fresh value it is nil, and
// why says why. On a port the pod does not listen on (yet: a starting app), it holds 0
// connections: that is its value; whether any pod listens on the port is the caller's to judge
// (a port no pod listens on is a typo).
func (p *Provider) value(pod *corev1.Pod, info provider.CustomMetricInfo, port uint16, metricSelector labels.Selector) (mv *custom_metrics.MetricValue, ports []uint16, why string) {
	v, ok := p.Store.Get(store.Key{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}, p.Now())
	if !ok {
		return nil, nil, cmp.Or(v.Withheld, "its node's connection-agent has not reported it (it is starting, or its node has no agent)")
	}
	m := metrics[info.Metric]
	x, span, ok := m.value(v)
	if !ok {
		return nil, nil, m.missing
	}
	if port != 0 {
		x = v.ByPort[port] // 0 when the pod does not listen on it
		ports = make([]uint16, 0, len(v.ByPort))
		for lp := range v.ByPort {
			ports = append(ports, lp)
		}
		sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	}
	window := int64(span.Seconds())
	mv = &custom_metrics.MetricValue{
		DescribedObject: custom_metrics.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Metric:          custom_metrics.MetricIdentifier{Name: info.Metric},
		Timestamp:       metav1.NewTime(v.Time),
		WindowSeconds:   &window,
		Value:           *resource.NewMilliQuantity(int64(x*1000+0.5), resource.DecimalSI),
	}
	if metricSelector != nil && !metricSelector.Empty() {
		sel, _ := metav1.ParseToLabelSelector(metricSelector.String())
		mv.Metric.Selector = sel
	}
	return mv, ports, ""
}

func notListening(err error, info provider.CustomMetricInfo, what string) error {
	return statusError(http.StatusBadRequest, metav1.StatusReasonBadRequest, "%s for %s: %v: fix the HPA's metric selector", info.Metric, what, err)
}

// GetMetricByName answers for one pod.
func (p *Provider) GetMetricByName(_ context.Context, name types.NamespacedName, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValue, error) {
	port, err := check(info, metricSelector)
	if err != nil {
		return nil, err
	}
	if info.GroupResource != podsResource {
		return p.objectValue(name, info, port, metricSelector)
	}
	pod, err := p.Pods.Pods(name.Namespace).Get(name.Name)
	if err != nil {
		return nil, provider.NewMetricNotFoundForError(info.GroupResource, info.Metric, name.Name)
	}
	mv, ports, why := p.value(pod, info, port, metricSelector)
	if mv == nil {
		return nil, statusError(http.StatusNotFound, metav1.StatusReasonNotFound, "no fresh %s for pod %s/%s: %s", info.Metric, name.Namespace, name.Name, why)
	}
	l := listeners{port: port}
	l.add(ports)
	if err := l.err(); err != nil {
		return nil, notListening(err, info, "pod "+name.String())
	}
	return mv, nil
}

// GetMetricBySelector answers for the pods matching selector; pods without fresh values are left
// out (the HPA then treats them as it treats pods whose metrics are missing). A pod not
// listening on the port asked for (yet) holds 0 connections on it and is served 0, unless no
// pod listens on it: that is an error naming the ports they listen on. Requests across all
// namespaces are refused: every metric is namespaced.
func (p *Provider) GetMetricBySelector(_ context.Context, namespace string, selector labels.Selector, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValueList, error) {
	port, err := check(info, metricSelector)
	if err != nil {
		return nil, err
	}
	if namespace == "" {
		return nil, statusError(http.StatusBadRequest, metav1.StatusReasonBadRequest,
			"%s is served per namespace: ask for /namespaces/<namespace>/%s/…", info.Metric, info.GroupResource.String())
	}
	out := &custom_metrics.MetricValueList{}
	if info.GroupResource != podsResource {
		names, err := p.objectsMatching(namespace, info.GroupResource, selector)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if mv, err := p.objectValue(types.NamespacedName{Namespace: namespace, Name: n}, info, port, metricSelector); err == nil {
				out.Items = append(out.Items, *mv)
			}
		}
		return out, nil
	}
	pods, err := p.Pods.Pods(namespace).List(selector)
	if err != nil {
		return nil, err
	}
	l := listeners{port: port}
	for _, pod := range pods {
		if mv, ports, _ := p.value(pod, info, port, metricSelector); mv != nil {
			out.Items = append(out.Items, *mv)
			l.add(ports)
		}
	}
	if err := l.err(); err != nil {
		return nil, notListening(err, info, fmt.Sprintf("the pods of %s matching %q", namespace, selector.String()))
	}
	return out, nil
}
