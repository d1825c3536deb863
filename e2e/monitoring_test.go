//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/agent"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/puller"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/rabbitmq"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/grpcserver"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack/openstacktest"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/provider"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/repair"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

// describer records the names of every metric the collectors registered with it describe.
type describer struct{ names map[string]bool }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *describer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d.names[m[1]] = true
		}
	}
	return nil
}

func (d *describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}

func (d *describer) Unregister(prometheus.Collector) bool { return true }

// productMetrics is every metric name the product's binaries export, as their collectors
// describe them.
func productMetrics(t *testing.T) map[string]bool {
	d := &describer{names: map[string]bool{}}
	cloud := openstacktest.NewCloud(t)
	cfg, err := config.Parse([]byte("cloud: {name: x}\nclusterName: c\nnodeGroups:\n- {name: g, backend: nova, minSize: 0, maxSize: 1, nova: {flavor: m1.small, image: world-node-image}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if _, err := provider.New(ctx, cfg, cloud.Clients(), provider.NewMetrics(d)); err != nil {
		t.Fatal(err)
	}
	openstack.NewMetrics(d)
	repair.NewMetrics(d)
	grpcserver.NewGRPC(&grpcserver.Server{}, d)
	agent.NewMetrics(d)
	d.MustRegister(agent.NewPodCollector(&agent.Scraper{}))
	puller.NewMetrics(d, func() float64 { return 0 })
	rabbitmq.NewMetrics(d)
	return d.names
}

// metricNames parses a PromQL expression and returns the metrics it selects.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Errorf("does not parse: %v\n%s", err, expr)
		return nil
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					names = append(names, m.Value)
				}
			}
		}
		return nil
	})
	return names
}

// The chart's PrometheusRule and Grafana dashboard: every expression parses as PromQL, and
// every metric it names is one the product exports (histograms by their _bucket, _sum, _count).
func TestChartAlertsAndDashboardNameRealMetrics(t *testing.T) {
	helm := framework.HelmBinary(t)
	r := helmTemplate(t, helm, "osa", "ops", "--set", "prometheusRule.enabled=true,grafanaDashboard.enabled=true")
	exported := productMetrics(t)
	exists := func(name string) bool {
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && exported[base] {
				return true
			}
		}
		return false
	}
	check := func(where, expr string) {
		names := metricNames(t, expr)
		if len(names) == 0 {
			t.Errorf("%s: names no metric: %s", where, expr)
		}
		for _, n := range names {
			if !exists(n) {
				t.Errorf("%s: metric %s is not exported by the product", where, n)
			}
		}
	}

	var rule struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
		Spec       struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Alert       string            `json:"alert"`
					Expr        string            `json:"expr"`
					For         string            `json:"for"`
					Labels      map[string]string `json:"labels"`
					Annotations map[string]string `json:"annotations"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	r.get(t, "PrometheusRule", "osa-openstack-autoscaler", &rule)
	alerts := 0
	for _, g := range rule.Spec.Groups {
		for _, a := range g.Rules {
			alerts++
			check("alert "+a.Alert, a.Expr)
			if a.Labels["severity"] == "" || a.Annotations["summary"] == "" || a.Annotations["description"] == "" || a.For == "" {
				t.Errorf("alert %s: want a severity, a summary, a description and a for", a.Alert)
			}
		}
	}
	if alerts < 8 {
		t.Errorf("%d alerts, want the eight the chart documents or more", alerts)
	}

	var cm corev1.ConfigMap
	r.get(t, "ConfigMap", "osa-openstack-autoscaler-dashboard", &cm)
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v: want grafana_dashboard=1 for Grafana's sidecar", cm.Labels)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(cm.Data["openstack-autoscaler.json"]), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var titles []string
	for _, p := range dash.Panels {
		titles = append(titles, p.Title)
		for _, tg := range p.Targets {
			check("panel "+p.Title, tg.Expr)
		}
	}
	if len(titles) < 8 || slices.Contains(titles, "") {
		t.Errorf("dashboard panels %q", titles)
	}
	t.Logf("%d alerts and %d panels name only metrics the product exports (%d exported)", alerts, len(dash.Panels), len(exported))
}
