package agent

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	podInboundDesc = prometheus.NewDesc("connection_agent_pod_inbound_connections",
		"ESTABLISHED inbound connections of the pod, per listening port, at the last scrape.", []string{"namespace", "pod", "port"}, nil)
	podOutboundDesc = prometheus.NewDesc("connection_agent_pod_outbound_connections",
		"ESTABLISHED outbound connections of the pod at the last scrape.", []string{"namespace", "pod"}, nil)
	podAcceptedDesc = prometheus.NewDesc("connection_agent_pod_accepted_connections_total",
		"Connections accepted in the pod's network namespace since it was made (its TCP PassiveOpens counter).", []string{"namespace", "pod"}, nil)
)

// PodCollector exposes the last scrape's counts per pod on the agent's /metrics, for Prometheus
// and dashboards. Labels are bounded by the node's pods and their listening ports.
type PodCollector struct{ s *Scraper }

// NewPodCollector collects from s.
func NewPodCollector(s *Scraper) *PodCollector { return &PodCollector{s: s} }

// Describe implements prometheus.Collector.
func (c *PodCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- podInboundDesc
	ch <- podOutboundDesc
	ch <- podAcceptedDesc
}

// Collect implements prometheus.Collector.
func (c *PodCollector) Collect(ch chan<- prometheus.Metric) {
	r, ok := c.s.Latest()
	if !ok {
		return
	}
	for _, p := range r.Pods {
		if p.Unsupported != "" {
			continue
		}
		for port, n := range p.InboundByPort {
			ch <- prometheus.MustNewConstMetric(podInboundDesc, prometheus.GaugeValue, float64(n), p.Namespace, p.Name, strconv.Itoa(int(port)))
		}
		ch <- prometheus.MustNewConstMetric(podOutboundDesc, prometheus.GaugeValue, float64(p.Outbound), p.Namespace, p.Name)
		if p.PassiveOpens != nil {
			ch <- prometheus.MustNewConstMetric(podAcceptedDesc, prometheus.CounterValue, float64(*p.PassiveOpens), p.Namespace, p.Name)
		}
	}
}
