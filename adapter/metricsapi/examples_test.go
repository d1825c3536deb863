package metricsapi

import (
	"os"
	"strings"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"sigs.k8s.io/yaml"
)

// The HPA examples are valid autoscaling/v2 objects that ask for metrics this adapter serves,
// with selectors it accepts.
func TestHPAExamples(t *testing.T) {
	raw, err := os.ReadFile("../../examples/hpa-tcp-connections.yaml")
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, n := range MetricNames() {
		served[n] = true
	}
	for i, doc := range strings.Split(string(raw), "\n---\n") {
		var hpa autoscalingv2.HorizontalPodAutoscaler
		if err := yaml.UnmarshalStrict([]byte(doc), &hpa); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		for _, m := range hpa.Spec.Metrics {
			if m.Type != autoscalingv2.PodsMetricSourceType {
				continue
			}
			if !served[m.Pods.Metric.Name] {
				t.Errorf("%s asks for %q, which is not served", hpa.Name, m.Pods.Metric.Name)
			}
			if sel := m.Pods.Metric.Selector; sel != nil {
				for k := range sel.MatchLabels {
					if k != PortLabel {
						t.Errorf("%s selects on %q; only %q is supported", hpa.Name, k, PortLabel)
					}
				}
			}
		}
	}
}
