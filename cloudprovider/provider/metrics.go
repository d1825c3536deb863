package provider

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodegroup"
)

// Metrics of the provider: server operations by group and outcome, refreshes, and each group's
// target against its actual members.
type Metrics struct {
	servers   *prometheus.CounterVec
	refreshes *prometheus.CounterVec
	refreshS  prometheus.Histogram
	mismatch  prometheus.Counter
	reg       prometheus.Registerer
}

// ProviderIDMismatches counts registered nodes of a group whose providerID is not written as
// providerIDRegion says (openstack_autoscaler_providerid_mismatch_total).
func (m *Metrics) ProviderIDMismatches() prometheus.Counter { return m.mismatch }

// NewMetrics registers the provider's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		servers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "openstack_autoscaler_server_operations_total",
			Help: "Server creations and deletions by node group, operation and result (ok, out_of_resources, error).",
		}, []string{"group", "operation", "result"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "openstack_autoscaler_refreshes_total",
			Help: "Refreshes of node group state from OpenStack by result.",
		}, []string{"result"}),
		refreshS: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "openstack_autoscaler_refresh_duration_seconds",
			Help:    "How long one refresh from OpenStack took.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 10),
		}),
		mismatch: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "openstack_autoscaler_providerid_mismatch_total",
			Help: "NodeGroupForNode calls refused because a member's node carries its providerID written another way than providerIDRegion says (the autoscaler would take every instance for unregistered and delete running nodes).",
		}),
	}
	reg.MustRegister(m.servers, m.refreshes, m.refreshS, m.mismatch)
	return m
}

// ServerCreated counts a created server.
func (m *Metrics) ServerCreated(group string) { m.servers.WithLabelValues(group, "create", "ok").Inc() }

// ServerCreateFailed counts a failed creation by class.
func (m *Metrics) ServerCreateFailed(group string, class nodegroup.ErrorClass) {
	result := "error"
	if class == nodegroup.OutOfResources {
		result = "out_of_resources"
	}
	m.servers.WithLabelValues(group, "create", result).Inc()
}

// ServerDeleted counts a deleted server.
func (m *Metrics) ServerDeleted(group string) { m.servers.WithLabelValues(group, "delete", "ok").Inc() }

// ServerDeleteFailed counts a failed deletion.
func (m *Metrics) ServerDeleteFailed(group string) {
	m.servers.WithLabelValues(group, "delete", "error").Inc()
}

func (m *Metrics) observeRefresh(took time.Duration, err error) {
	m.refreshS.Observe(took.Seconds())
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.refreshes.WithLabelValues(result).Inc()
}

// watch exports each group's target size and instance counts, read at scrape time.
func (m *Metrics) watch(manager *nodegroup.Manager) {
	m.reg.MustRegister(&groupCollector{manager: manager})
}

var (
	targetDesc = prometheus.NewDesc("openstack_autoscaler_group_target_size", "Target size of each node group.",
		[]string{"group"}, nil)
	instancesDesc = prometheus.NewDesc("openstack_autoscaler_group_instances",
		"Instances of each node group by state (running, creating, deleting, failed).", []string{"group", "state"}, nil)
	boundsDesc = prometheus.NewDesc("openstack_autoscaler_group_size_bound", "minSize and maxSize of each node group.",
		[]string{"group", "bound"}, nil)
	groupRefreshDesc = prometheus.NewDesc("openstack_autoscaler_group_refresh_ok",
		"1 when the node group's last refresh from OpenStack succeeded, 0 when it serves older state (its stack is missing, a listing failed).",
		[]string{"group"}, nil)
)

type groupCollector struct{ manager *nodegroup.Manager }

func (c *groupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- targetDesc
	ch <- instancesDesc
	ch <- boundsDesc
	ch <- groupRefreshDesc
}

func (c *groupCollector) Collect(ch chan<- prometheus.Metric) {
	for _, g := range c.manager.Groups() {
		cfg := g.Config()
		ch <- prometheus.MustNewConstMetric(targetDesc, prometheus.GaugeValue, float64(g.TargetSize()), g.ID())
		ch <- prometheus.MustNewConstMetric(boundsDesc, prometheus.GaugeValue, float64(cfg.MinSize), g.ID(), "min")
		ch <- prometheus.MustNewConstMetric(boundsDesc, prometheus.GaugeValue, float64(cfg.MaxSize), g.ID(), "max")
		refreshed := 1.0
		if c.manager.GroupError(g.ID()) != nil {
			refreshed = 0
		}
		ch <- prometheus.MustNewConstMetric(groupRefreshDesc, prometheus.GaugeValue, refreshed, g.ID())
		counts := map[string]int{"running": 0, "creating": 0, "deleting": 0, "failed": 0}
		for _, inst := range g.Instances() {
			switch {
			case inst.Error != nil:
				counts["failed"]++
			case inst.State == nodegroup.Running:
				counts["running"]++
			case inst.State == nodegroup.Creating:
				counts["creating"]++
			case inst.State == nodegroup.Deleting:
				counts["deleting"]++
			}
		}
		for state, n := range counts {
			ch <- prometheus.MustNewConstMetric(instancesDesc, prometheus.GaugeValue, float64(n), g.ID(), state)
		}
	}
}
