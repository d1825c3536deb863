package metricsapi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The connection HPA examples are valid autoscaling/v2 objects that ask for metrics this
// adapter serves, with selectors it accepts.
func TestHPAExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/hpa-*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("examples/hpa-*.yaml: %v %v", files, err)
	}
	served := map[string]bool{}
	for _, n := range MetricNames() {
		served[n] = true
	}
	checked := 0
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(raw), "\n---\n") {
			var meta metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil || meta.Kind != "HorizontalPodAutoscaler" {
				continue // the queue example also holds the adapter's ConfigMap
			}
			var hpa autoscalingv2.HorizontalPodAutoscaler
			if err := yaml.UnmarshalStrict([]byte(doc), &hpa); err != nil {
				t.Fatalf("%s document %d: %v", file, i, err)
			}
			for _, m := range hpa.Spec.Metrics {
				var id *autoscalingv2.MetricIdentifier
				switch {
				case m.Pods != nil:
					id = &m.Pods.Metric
				case m.Object != nil:
					id = &m.Object.Metric
				default:
					continue // resource (CPU) and external (queue) metrics are served elsewhere
				}
				checked++
				if !served[id.Name] {
					t.Errorf("%s: %s asks for %q, which is not served", file, hpa.Name, id.Name)
				}
				if id.Selector != nil {
					for k := range id.Selector.MatchLabels {
						if k != PortLabel {
							t.Errorf("%s: %s selects on %q; only %q is supported", file, hpa.Name, k, PortLabel)
						}
					}
				}
			}
		}
	}
	if checked < 4 {
		t.Errorf("only %d connection metrics found in the examples", checked)
	}
}
