// Package externalapi serves the RabbitMQ queues' cached readings as external.metrics.k8s.io
// values for sigs.k8s.io/custom-metrics-apiserver. It only translates: every answer comes from
// the brokers' caches (adapter/rabbitmq), never from a call to a broker.
package externalapi

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/metrics/pkg/apis/external_metrics"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/rabbitmq"
)

// The metrics' labels; an HPA's metric.selector picks queues with them.
const (
	BrokerLabel = "broker"
	VhostLabel  = "vhost"
	QueueLabel  = "queue"
)

// Metrics maps each served metric to its value in a reading.
var Metrics = map[string]func(rabbitmq.Reading) float64{
	"rabbitmq_queue_messages_ready":          func(r rabbitmq.Reading) float64 { return r.Ready },
	"rabbitmq_queue_messages_unacknowledged": func(r rabbitmq.Reading) float64 { return r.Unacknowledged },
	"rabbitmq_queue_publish_rate":            func(r rabbitmq.Reading) float64 { return r.PublishRate },
	"rabbitmq_queue_deliver_rate":            func(r rabbitmq.Reading) float64 { return r.DeliverRate },
}

// MetricNames lists the served metrics, sorted.
func MetricNames() []string {
	out := make([]string, 0, len(Metrics))
	for n := range Metrics {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Provider answers from the brokers' caches. A request sees the queues configured for its
// namespace (queues[].namespaces), or every queue configured without namespaces.
type Provider struct {
	Brokers []*rabbitmq.Broker
}

var _ provider.ExternalMetricsProvider = &Provider{}

// ListAllExternalMetrics is constant.
func (p *Provider) ListAllExternalMetrics() []provider.ExternalMetricInfo {
	out := make([]provider.ExternalMetricInfo, 0, len(Metrics))
	for _, n := range MetricNames() {
		out = append(out, provider.ExternalMetricInfo{Metric: n})
	}
	return out
}

func statusError(code int32, reason metav1.StatusReason, format string, a ...any) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: code, Reason: reason,
		Message: fmt.Sprintf(format, a...)}}
}

// GetExternalMetric returns one value per configured queue the selector matches. If any of
// them has no fresh reading the whole answer is an error naming the queue and the reason (an
// HPA summing over queues must not see a partial sum).
func (p *Provider) GetExternalMetric(_ context.Context, namespace string, selector labels.Selector, info provider.ExternalMetricInfo) (*external_metrics.ExternalMetricValueList, error) {
	value, ok := Metrics[info.Metric]
	if !ok {
		return nil, statusError(http.StatusNotFound, metav1.StatusReasonNotFound,
			"external metric %q is not served: this adapter serves %s", info.Metric, strings.Join(MetricNames(), ", "))
	}
	if selector == nil {
		selector = labels.Everything()
	}
	list := &external_metrics.ExternalMetricValueList{}
	var known []string
	for _, b := range p.Brokers {
		for _, q := range b.Config.Queues {
			if !q.VisibleIn(namespace) {
				continue // not named, not even in the list of what exists
			}
			set := labels.Set{BrokerLabel: b.Config.Name, VhostLabel: q.VhostLabel(), QueueLabel: q.Name}
			known = append(known, set.String())
			if !selector.Matches(set) {
				continue
			}
			r, err := b.Get(q)
			if err != nil {
				return nil, statusError(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
					"%s{%s} unavailable: %v", info.Metric, set.String(), err)
			}
			list.Items = append(list.Items, external_metrics.ExternalMetricValue{
				MetricName:   info.Metric,
				MetricLabels: set,
				Timestamp:    metav1.NewTime(r.Time),
				Value:        *resource.NewMilliQuantity(int64(value(r)*1000+0.5), resource.DecimalSI),
			})
		}
	}
	if len(list.Items) == 0 {
		return nil, statusError(http.StatusNotFound, metav1.StatusReasonNotFound,
			"%s: no configured queue matches selector %q; configured: %s (select with queue=<name>, vhost=<vhost>, broker=<name>)",
			info.Metric, selector.String(), strings.Join(known, "; "))
	}
	return list, nil
}
