package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/report"
)

// The last scrape's counts per pod are on the agent's /metrics too, for Prometheus and
// dashboards, with bounded labels (namespace, pod, port); pods whose runtime cannot be measured
// have none.
func TestPodSeriesFromTheLastScrape(t *testing.T) {
	s := &Scraper{}
	c := NewPodCollector(s)
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Fatalf("%d series before the first scrape, want none", n)
	}
	opens := uint64(42)
	s.latest, s.hasScrap = report.Report{Pods: []report.Pod{
		{Namespace: "shop", Name: "web-1", UID: "u1", Time: time.Now(), Inbound: 7, InboundByPort: map[uint16]int{8080: 5, 9090: 2},
			Outbound: 3, PassiveOpens: &opens},
		{Namespace: "shop", Name: "sandboxed", UID: "u2", Time: time.Now(), Unsupported: "runtime class gvisor"},
	}}, true
	want := `
# HELP connection_agent_pod_accepted_connections_total Connections accepted in the pod's network namespace since it was made (its TCP PassiveOpens counter).
# TYPE connection_agent_pod_accepted_connections_total counter
connection_agent_pod_accepted_connections_total{namespace="shop",pod="web-1"} 42
# HELP connection_agent_pod_inbound_connections ESTABLISHED inbound connections of the pod, per listening port, at the last scrape.
# TYPE connection_agent_pod_inbound_connections gauge
connection_agent_pod_inbound_connections{namespace="shop",pod="web-1",port="8080"} 5
connection_agent_pod_inbound_connections{namespace="shop",pod="web-1",port="9090"} 2
# HELP connection_agent_pod_outbound_connections ESTABLISHED outbound connections of the pod at the last scrape.
# TYPE connection_agent_pod_outbound_connections gauge
connection_agent_pod_outbound_connections{namespace="shop",pod="web-1"} 3
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
