//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"

	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

type externalValueList struct {
	Items []struct {
		MetricName   string            `json:"metricName"`
		MetricLabels map[string]string `json:"metricLabels"`
		Value        resource.Quantity `json:"value"`
		Timestamp    time.Time         `json:"timestamp"`
	} `json:"items"`
}

// A real autoscaling/v2 HPA scales a consumer Deployment on the depth of a real RabbitMQ queue
// (external metric rabbitmq_queue_messages_ready, target average value per consumer): up when a
// producer fills the queue, down when the consumers have drained it; `kubectl describe hpa`
// shows the value. A deleted queue makes the metric unavailable with the reason.
func TestHPAScalesConsumersOnQueueDepth(t *testing.T) {
	w := framework.Connect(t)
	ctx := context.Background()
	const (
		ns, app, queue = "queue-e2e", "consumer", "jobs"
		perReplica     = 3  // messages per second each running consumer replica takes
		target         = 20 // messages ready per consumer
		produced       = 200
	)
	rmq := framework.NewRabbitMQ(t, "osa-e2e-queue")
	conn, err := amqp.Dial(rmq.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	producer, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := producer.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	user, pass, err := rmq.WriteCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The world's broker is read over TLS, checked against the world's CA.
	if ca := w.Env["OSA_WORLD_RABBITMQ_CA"]; ca == "" {
		t.Fatal("world.env has no OSA_WORLD_RABBITMQ_CA: the world was started by an older world.sh; run e2e/world/world.sh down, then up")
	} else if _, err := os.Stat(ca); err != nil {
		t.Fatalf("the world's RabbitMQ CA: %v (run e2e/world/world.sh down, then up)", err)
	}
	config := filepath.Join(dir, "rabbitmq.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`brokers:
- name: world
  url: %s
  usernameFile: %s
  passwordFile: %s
  caFile: %s
  pollInterval: 2s
  timeout: 2s
  queues:
  - {vhost: %s, name: %s, namespaces: [%s]}   # only this namespace's HPAs see it
- name: gone   # nothing listens there: its queue is unavailable, the other broker's are not
  url: http://127.0.0.1:9
  usernameFile: %[2]s
  passwordFile: %[3]s
  pollInterval: 2s
  timeout: 2s
  queues:
  - {vhost: %[5]s, name: elsewhere}
`, framework.RabbitMQManagementTLSURL, user, pass, w.Env["OSA_WORLD_RABBITMQ_CA"], rmq.Vhost, queue, ns)), 0o600); err != nil {
		t.Fatal(err)
	}
	framework.RunConnectionMetrics(t, w, "6s", framework.WithRabbitMQConfig(config))

	raw := func(metric string) (externalValueList, string) {
		out := kubectl(t, w, "get", "--raw", "/apis/external.metrics.k8s.io/v1beta1/namespaces/"+ns+"/"+metric+"?labelSelector=queue%3D"+queue)
		var list externalValueList
		_ = json.Unmarshal([]byte(out), &list)
		return list, out
	}
	framework.Eventually(t, 30*time.Second, time.Second, "rabbitmq_queue_messages_ready served (0) for the empty queue", func() (bool, error) {
		list, out := raw("rabbitmq_queue_messages_ready")
		return len(list.Items) == 1 && list.Items[0].Value.IsZero(), fmt.Errorf("%s", out)
	})
	list, _ := raw("rabbitmq_queue_messages_ready")
	if l := list.Items[0].MetricLabels; l["broker"] != "world" || l["vhost"] != rmq.Vhost || l["queue"] != queue {
		t.Errorf("labels %v", l)
	}
	other := kubectl(t, w, "get", "--raw", "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/rabbitmq_queue_messages_ready?labelSelector=queue%3D"+queue)
	if !strings.Contains(other, "NotFound") {
		t.Errorf("the queue, asked from namespace default (not in its namespaces): %s; want NotFound", other)
	}
	gone := kubectl(t, w, "get", "--raw", "/apis/external.metrics.k8s.io/v1beta1/namespaces/"+ns+"/rabbitmq_queue_messages_ready?labelSelector=broker%3Dgone")
	if !strings.Contains(gone, "ServiceUnavailable") || !strings.Contains(gone, "broker gone unreachable") || !strings.Contains(gone, "connection refused") {
		t.Errorf("queue of an unreachable broker: %s; want ServiceUnavailable with the reason", gone)
	}

	w.Namespace(t, ns)
	kwokNode(t, w, "queue-node", "32")
	labels := map[string]string{"app": app}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/hostname": "queue-node"},
					Containers: []corev1.Container{{Name: "consumer", Image: "registry.invalid/consumer:1"}}}}},
	}
	if _, err := w.Kube.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The HPA of examples/hpa-queue-depth.yaml, as shipped, pointed at the test's Deployment and
	// queue, with a short scale-down window and a smaller maximum.
	hpa := exampleQueueHPA(t, "jobs-consumer")
	hpa.Name, hpa.Namespace, hpa.Spec.ScaleTargetRef.Name, hpa.Spec.MaxReplicas = app, ns, app, 5
	ext := hpa.Spec.Metrics[0].External
	if ext == nil || ext.Metric.Name != "rabbitmq_queue_messages_ready" || ext.Target.Type != autoscalingv2.AverageValueMetricType {
		t.Fatalf("examples/hpa-queue-depth.yaml: jobs-consumer should scale on rabbitmq_queue_messages_ready per replica: %+v", hpa.Spec.Metrics)
	}
	ext.Metric.Selector.MatchLabels = map[string]string{"queue": queue, "vhost": rmq.Vhost}
	ext.Target.AverageValue = ptr.To(resource.MustParse(fmt.Sprint(target)))
	hpa.Spec.Behavior.ScaleDown.StabilizationWindowSeconds = ptr.To(int32(10))
	if _, err := w.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	replicas := func() (spec, ready int32) {
		d, err := w.Kube.AppsV1().Deployments(ns).Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			return -1, 0
		}
		return *d.Spec.Replicas, d.Status.ReadyReplicas
	}
	framework.Eventually(t, 60*time.Second, time.Second, "the HPA reading the idle queue at 1 replica", func() (bool, error) {
		h, err := w.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		spec, ready := replicas()
		return len(h.Status.CurrentMetrics) == 1 && spec == 1 && ready == 1, fmt.Errorf("status %+v, replicas %d/%d", h.Status, ready, spec)
	})

	// The consumers: kwok pods run no code, so the test takes perReplica messages per second
	// from the queue for every ready replica of the consumer Deployment, as they would.
	consumer, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	consumed := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			_, ready := replicas()
			for i := 0; i < int(ready)*perReplica; i++ {
				if _, ok, err := consumer.Get(queue, true); err != nil || !ok {
					break
				}
				mu.Lock()
				consumed++
				mu.Unlock()
			}
		}
	}()
	stopConsumers := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopConsumers)

	// The producer fills the queue: 40 messages a second for 5 s.
	start := time.Now()
	published := make(chan error, 1)
	go func() {
		for i := 0; i < produced; i++ {
			if err := producer.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{Body: []byte(fmt.Sprintf("job %d", i))}); err != nil {
				published <- err
				return
			}
			time.Sleep(25 * time.Millisecond)
		}
		published <- nil
	}()
	var maxSpec int32
	var describe string
	var deliverSeen, publishSeen float64
	rates := func() {
		for metric, seen := range map[string]*float64{"rabbitmq_queue_deliver_rate": &deliverSeen, "rabbitmq_queue_publish_rate": &publishSeen} {
			if list, _ := raw(metric); len(list.Items) == 1 {
				*seen = max(*seen, list.Items[0].Value.AsApproximateFloat64())
			}
		}
	}
	took := framework.Eventually(t, 60*time.Second, time.Second, "a scale-up to at least 4 consumers", func() (bool, error) {
		rates()
		spec, ready := replicas()
		maxSpec = max(maxSpec, spec)
		if spec >= 4 && describe == "" {
			describe = kubectl(t, w, "describe", "hpa", "-n", ns, app)
		}
		return spec >= 4, fmt.Errorf("replicas %d/%d", ready, spec)
	})
	t.Logf("%d messages published → HPA at %d consumers in %s; kubectl describe hpa:\n%s", produced, maxSpec, took.Round(time.Second), describe)
	if !strings.Contains(describe, `"rabbitmq_queue_messages_ready"`) || !strings.Contains(describe, "(target average value)") ||
		strings.Contains(describe, "<unknown> / 20") {
		t.Errorf("kubectl describe hpa does not show the queue depth per consumer:\n%s", describe)
	}

	// While messages are still queued, the broker's reads fail for 20 s (it refuses the credentials):
	// the HPA gets no value and keeps its consumers, rather than scaling down on a depth of 0.
	good, err := os.ReadFile(pass)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pass, []byte("not-the-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 15*time.Second, time.Second, "the queue's reads failing", func() (bool, error) {
		_, out := raw("rabbitmq_queue_messages_ready")
		return strings.Contains(out, "refused the credentials"), fmt.Errorf("%s", out)
	})
	held, _ := replicas()
	for broken := time.Now(); time.Since(broken) < 20*time.Second; time.Sleep(2 * time.Second) {
		if spec, _ := replicas(); spec < held {
			t.Fatalf("the HPA went from %d to %d consumers while the queue could not be read", held, spec)
		}
	}
	if depth, err := rmq.QueueDepth(queue); err == nil {
		t.Logf("reads failed for 20 s (%d messages left at the end): the HPA kept its %d consumers", depth, held)
	}
	if err := os.WriteFile(pass, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	// The consumers drain the queue; the rates are served meanwhile.
	took = framework.Eventually(t, 120*time.Second, 2*time.Second, "the queue drained", func() (bool, error) {
		rates()
		depth, err := rmq.QueueDepth(queue)
		served, out := raw("rabbitmq_queue_messages_ready")
		return err == nil && depth == 0 && len(served.Items) == 1 && served.Items[0].Value.IsZero(),
			fmt.Errorf("broker depth %d (%v), served %s", depth, err, out)
	})
	mu.Lock()
	t.Logf("queue drained in %s (%d messages consumed); highest deliver rate served %.1f/s, publish rate %.1f/s", took.Round(time.Second), consumed, deliverSeen, publishSeen)
	mu.Unlock()
	if deliverSeen <= 0 || publishSeen <= 0 {
		t.Errorf("rabbitmq_queue_deliver_rate (max %v) or rabbitmq_queue_publish_rate (max %v) never above 0 while messages flowed", deliverSeen, publishSeen)
	}

	took = framework.Eventually(t, 120*time.Second, 2*time.Second, "a scale-down to 1 consumer", func() (bool, error) {
		spec, ready := replicas()
		return spec == 1, fmt.Errorf("replicas %d/%d", ready, spec)
	})
	t.Logf("queue empty → 1 consumer in %s; from the first message %s", took.Round(time.Second), time.Since(start).Round(time.Second))
	stopConsumers()

	// The queue goes away: the metric is unavailable with the reason, not its last value.
	if _, err := producer.QueueDelete(queue, false, false, false); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 30*time.Second, time.Second, "the metric unavailable with the reason", func() (bool, error) {
		_, out := raw("rabbitmq_queue_messages_ready")
		return strings.Contains(out, `queue \"jobs\" not found in vhost \"osa-e2e-queue\" on broker world`) ||
			strings.Contains(out, `queue "jobs" not found in vhost "osa-e2e-queue" on broker world`), fmt.Errorf("%s", out)
	})
	framework.Eventually(t, 30*time.Second, 2*time.Second, "the HPA reporting it cannot read the metric", func() (bool, error) {
		describe = kubectl(t, w, "describe", "hpa", "-n", ns, app)
		return strings.Contains(describe, "FailedGetExternalMetric"), fmt.Errorf("describe:\n%s", describe)
	})
}

// exampleQueueHPA reads one HorizontalPodAutoscaler of examples/hpa-queue-depth.yaml.
func exampleQueueHPA(t *testing.T, name string) *autoscalingv2.HorizontalPodAutoscaler {
	t.Helper()
	raw, err := os.ReadFile("../examples/hpa-queue-depth.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("examples/hpa-queue-depth.yaml: %v", err)
		}
		if hpa, ok := obj.(*autoscalingv2.HorizontalPodAutoscaler); ok && hpa.Name == name {
			return hpa
		}
	}
	t.Fatalf("examples/hpa-queue-depth.yaml has no HorizontalPodAutoscaler %s", name)
	return nil
}
