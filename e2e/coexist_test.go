//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

// objectHPA runs a Deployment of app (pods on node) and a real HPA scaling it (1 to 6) on the
// Object metric metric of Service svc at averageValue per replica.
func objectHPA(t *testing.T, w *framework.World, app, node, svc, metric, averageValue string) (replicas func() int32) {
	t.Helper()
	return scaledDeployment(t, w, app, node, nil, autoscalingv2.MetricSpec{Type: autoscalingv2.ObjectMetricSourceType, Object: &autoscalingv2.ObjectMetricSource{
		DescribedObject: autoscalingv2.CrossVersionObjectReference{APIVersion: "v1", Kind: "Service", Name: svc},
		Metric:          autoscalingv2.MetricIdentifier{Name: metric},
		Target:          autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(resource.MustParse(averageValue))}}})
}

// Installed where another metrics server already serves custom.metrics.k8s.io and
// external.metrics.k8s.io (custom-metrics-apiserver's test adapter, standing for
// prometheus-adapter and KEDA): the adapter takes the APIServices over, serves tcp_connections to
// one HPA and hands everything else to the other server, whose metric keeps driving another HPA
// (its new values too); discovery lists both; callers are still authorized.
func TestAdapterServesBesideAnotherMetricsServer(t *testing.T) {
	w := framework.Connect(t)
	other := framework.RunOtherMetrics(t, w)
	kwokNode(t, w, "coexist-node", "32")

	// Before: the other server alone drives its HPA (30 queued for 10 per replica → 3).
	other.Write(t, "namespaces/default/services/jobs/queue_items", "30")
	theirs := objectHPA(t, w, "coexist-worker", "coexist-node", "jobs", "queue_items", "10")
	framework.Eventually(t, 90*time.Second, 2*time.Second, "the other server's HPA at 3", func() (bool, error) {
		return theirs() == 3, fmt.Errorf("replicas %d", theirs())
	})

	// Ours takes the APIServices over, handing on to the other server.
	framework.RunConnectionMetrics(t, w, "6s", framework.WithDelegate(other))
	const app = "coexist-web"
	ours := connectionsHPA(t, w, app, "coexist-node", "8080")
	var mu sync.Mutex
	total := 30
	spreadLoad(t, w, app, 8080, &total, &mu)
	raw := func() metricValueList {
		var list metricValueList
		_ = json.Unmarshal([]byte(kubectl(t, w, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/tcp_connections?labelSelector=app%3D"+app)), &list)
		return list
	}
	waitEachHolds(t, ours, raw, 3, "10", 120*time.Second)

	// Their metric, through ours, still drives their HPA: a new value moves it (50 → 5).
	other.Write(t, "namespaces/default/services/jobs/queue_items", "50")
	framework.Eventually(t, 90*time.Second, 2*time.Second, "the other server's HPA at 5 through the adapter", func() (bool, error) {
		return theirs() == 5, fmt.Errorf("replicas %d", theirs())
	})
	framework.Eventually(t, 30*time.Second, 2*time.Second, "kubectl describe hpa showing their value", func() (bool, error) {
		d := kubectl(t, w, "describe", "hpa", "coexist-worker")
		// 50 over 5 replicas: 10 each, at the target.
		return strings.Contains(d, `"queue_items" on Service/jobs (target average value):  10 / 10`), fmt.Errorf("describe:\n%s", d)
	})
	if got := ours(); got != 3 {
		t.Errorf("our HPA moved to %d replicas while theirs scaled", got)
	}
	direct := kubectl(t, w, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/services/jobs/queue_items")
	if !strings.Contains(direct, `"metricName":"queue_items"`) || !strings.Contains(direct, `"value":"50"`) {
		t.Errorf("their metric read through v1beta1: %s", direct)
	}

	// External metrics are theirs entirely (ours serves no queues here).
	ext := kubectl(t, w, "get", "--raw", "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/other-external-metric")
	if !strings.Contains(ext, `"value":"44"`) {
		t.Errorf("their external metric: %s, want 44", ext)
	}

	// Discovery lists ours and theirs (the test adapter lists one resource, "/custommetrics").
	disco := kubectl(t, w, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2")
	if !strings.Contains(disco, `"pods/tcp_connections"`) || !strings.Contains(disco, `"/custommetrics"`) {
		t.Errorf("discovery: %s; want pods/tcp_connections and the other server's /custommetrics", disco)
	}
	if ext := kubectl(t, w, "get", "--raw", "/apis/external.metrics.k8s.io/v1beta1"); !strings.Contains(ext, `"externalmetrics"`) {
		t.Errorf("external discovery: %s; want the other server's externalmetrics", ext)
	}

	// A caller without RBAC is refused their metric as it would be by them.
	denied := kubectl(t, w, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/services/jobs/queue_items", "--as", "nobody")
	if !strings.Contains(denied, "Forbidden") {
		t.Errorf("a user without RBAC read their metric: %s", denied)
	}
}
