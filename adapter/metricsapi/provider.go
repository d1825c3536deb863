// Package metricsapi translates the store's values into custom.metrics.k8s.io answers for
// sigs.k8s.io/custom-metrics-apiserver: pods metrics by name or label selector, with a metric
// label selector "port=<n>" narrowing a metric to one listening port; and object metrics for
// Services (over their ready endpoints' pods), Deployments and StatefulSets (over their pods),
// each the sum over those pods.
package metricsapi

import (
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
}{
	"tcp_connections":                {true, average(func(v store.Values) float64 { return v.Connections })},
	"tcp_connections_max":            {false, average(func(v store.Values) float64 { return v.ConnectionsMax })},
	"tcp_new_connections_per_second": {false, func(v store.Values) (float64, time.Duration, bool) { return v.NewPerSecond, v.RateWindow, v.HasRate }},
	"tcp_syn_backlog": {false, func(v store.Values) (float64, time.Duration, bool) {
		return v.SynBacklog, v.Window, v.HasSynBacklog
	}},
	"tcp_outbound_connections": {false, average(func(v store.Values) float64 { return v.Outbound })},
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

// errNotListening says a pod has values but does not listen on the port asked for.
type errNotListening struct {
	port      uint16
	listening []uint16
}

func (e errNotListening) Error() string {
	ports := make([]string, len(e.listening))
	for i, p := range e.listening {
		ports[i] = strconv.Itoa(int(p))
	}
	return fmt.Sprintf("port %d is not a listening port of the pod (it listens on %s)", e.port, strings.Join(ports, ", "))
}

// value is a pod's metric; nil without a fresh value, or with errNotListening for a port the
// pod does not listen on.
func (p *Provider) value(pod *corev1.Pod, info provider.CustomMetricInfo, port uint16, metricSelector labels.Selector) (*custom_metrics.MetricValue, error) {
	v, ok := p.Store.Get(store.Key{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}, p.Now())
	if !ok {
		return nil, nil
	}
	x, span, ok := metrics[info.Metric].value(v)
	if !ok {
		return nil, nil
	}
	if port != 0 {
		var listening bool
		if x, listening = v.ByPort[port]; !listening {
			ports := make([]uint16, 0, len(v.ByPort))
			for lp := range v.ByPort {
				ports = append(ports, lp)
			}
			sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
			return nil, errNotListening{port: port, listening: ports}
		}
	}
	window := int64(span.Seconds())
	mv := &custom_metrics.MetricValue{
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
	return mv, nil
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
	mv, err := p.value(pod, info, port, metricSelector)
	if err != nil {
		return nil, notListening(err, info, "pod "+name.String())
	}
	if mv == nil {
		return nil, statusError(http.StatusNotFound, metav1.StatusReasonNotFound,
			"no fresh %s for pod %s/%s: its node's connection-agent has not reported it recently (or its runtime is unsupported, or the agent does not count it: tcp_syn_backlog needs --counter=sock_diag)", info.Metric, name.Namespace, name.Name)
	}
	return mv, nil
}

// GetMetricBySelector answers for the pods matching selector; pods without fresh values are left
// out (the HPA then treats them as it treats pods whose metrics are missing), and so are pods
// not listening on the port asked for, unless none does: that is an error naming their ports.
// Requests across all namespaces are refused: every metric is namespaced.
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
	var listenErr error
	for _, pod := range pods {
		mv, err := p.value(pod, info, port, metricSelector)
		switch {
		case err != nil:
			listenErr = err
		case mv != nil:
			out.Items = append(out.Items, *mv)
		}
	}
	if len(out.Items) == 0 && listenErr != nil {
		return nil, notListening(listenErr, info, fmt.Sprintf("the pods of %s matching %q", namespace, selector.String()))
	}
	return out, nil
}
