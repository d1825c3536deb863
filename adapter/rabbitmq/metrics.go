package rabbitmq

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the brokers' polling figures on the adapter's own /metrics.
type Metrics struct {
	// Requests to the management API by broker and result: ok, not_found (queue missing),
	// refused (the broker answered with another error), malformed (an answer that is not the
	// API's JSON, or without the queue's counts) or unreachable.
	Requests *prometheus.CounterVec
	// Unavailable is the number of a broker's queues that have no fresh reading after its last poll.
	Unavailable *prometheus.GaugeVec
}

// NewMetrics registers the polling metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "connection_adapter_rabbitmq_requests_total",
			Help: "Requests to RabbitMQ management APIs, by broker and result."}, []string{"broker", "result"}),
		Unavailable: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "connection_adapter_rabbitmq_queues_unavailable",
			Help: "Configured queues whose last poll failed, by broker."}, []string{"broker"}),
	}
	reg.MustRegister(m.Requests, m.Unavailable)
	return m
}
