package externalapi

import (
	"os"
	"strings"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/rabbitmq"
)

// examples/hpa-queue-depth.yaml: its adapter configuration is valid, and its HPAs ask for served
// metrics with selectors that pick configured queues.
func TestQueueDepthExample(t *testing.T) {
	raw, err := os.ReadFile("../../examples/hpa-queue-depth.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(raw), "\n---\n")
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict([]byte(docs[0]), &cm); err != nil {
		t.Fatal(err)
	}
	cfg, err := rabbitmq.Parse([]byte(cm.Data["rabbitmq.yaml"]))
	if err != nil {
		t.Fatalf("the example's adapter configuration: %v", err)
	}
	var configured []labels.Set
	for _, b := range cfg.Brokers {
		for _, q := range b.Queues {
			configured = append(configured, labels.Set{BrokerLabel: b.Name, VhostLabel: q.VhostLabel(), QueueLabel: q.Name})
		}
	}
	hpas := 0
	for i, doc := range docs[1:] {
		var hpa autoscalingv2.HorizontalPodAutoscaler
		if err := yaml.UnmarshalStrict([]byte(doc), &hpa); err != nil {
			t.Fatalf("document %d: %v", i+1, err)
		}
		hpas++
		for _, m := range hpa.Spec.Metrics {
			if _, ok := Metrics[m.External.Metric.Name]; !ok {
				t.Errorf("%s asks for %q, which is not served", hpa.Name, m.External.Metric.Name)
			}
			sel := labels.SelectorFromSet(m.External.Metric.Selector.MatchLabels)
			matched := 0
			for _, set := range configured {
				if sel.Matches(set) {
					matched++
				}
			}
			if matched != 1 {
				t.Errorf("%s: selector %s matches %d configured queues, want 1", hpa.Name, sel, matched)
			}
		}
	}
	if hpas != 2 {
		t.Errorf("%d HPAs in the example", hpas)
	}
}
