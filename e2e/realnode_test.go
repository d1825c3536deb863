//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

const hostEhashPath = "/proc/sys/net/ipv4/tcp_child_ehash_entries"

// The chart's connection metrics run in real containers on the world's real node, from the
// images `make images` built: the agent DaemonSet pod (privileged, hostPID, its sysctl init
// container) and the adapter's two pods are Running and Ready, and the APIServices become
// Available through the adapter's Service. Then a real HPA scales a Deployment of real containers
// on the connections the load generator holds to its pods, counted by the agent pod in
// containerd's cgroups and network namespaces; with the agent gone, the pods' values are
// withdrawn and the HPA holds; when the load ends it scales back down.
func TestChartRunsOnTheRealNode(t *testing.T) {
	w := framework.Connect(t)
	node := framework.RealNode(t, w)
	helm := framework.HelmBinary(t)
	ctx := context.Background()
	const rel, ns = "osa-real", "osa-real-e2e"
	waitMetricsAPIsFree(t, w)
	testNamespace(t, w, ns)
	// The host's sysctl is put back last, once the release (whose agent pods' init container
	// sets it whenever one starts) is gone.
	if before, err := os.ReadFile(hostEhashPath); err == nil {
		t.Cleanup(func() { _ = os.WriteFile(hostEhashPath, before, 0) })
	}
	t.Cleanup(func() { _, _ = helmRun(w, helm, "uninstall", rel, "-n", ns, "--wait", "--timeout", "2m") })
	logNamespaceOnFailure(t, w, ns, "connection-agent", "connection-metrics-adapter") // before the uninstall

	// Queue metrics too: the adapter's pods read the world's RabbitMQ over TLS, at the world's
	// own address (world-forward), with the credentials and CA of Secrets, as an operator's would.
	rmq := framework.NewRabbitMQ(t, "osa-real-queue")
	const queue, queued = "real-jobs", 7
	publish(t, rmq, queue, queued)
	caPEM, err := os.ReadFile(w.Env["OSA_WORLD_RABBITMQ_CA"])
	if err != nil {
		t.Fatalf("the world's RabbitMQ CA: %v (run e2e/world/world.sh down, then up)", err)
	}
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "rabbitmq-monitoring"}, StringData: map[string]string{"username": rmq.User, "password": rmq.Password}},
		{ObjectMeta: metav1.ObjectMeta{Name: "rabbitmq-ca"}, Data: map[string][]byte{"ca.crt": caPEM}},
	} {
		if _, err := w.Kube.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	selector, tolerations := framework.OnRealNode()
	values := map[string]any{
		"serviceMonitors": map[string]any{"enabled": false},
		"queueMetrics": map[string]any{"enabled": true, "brokers": []any{map[string]any{
			"name": "world", "url": "https://" + net.JoinHostPort(w.Env["OSA_WORLD_HOST_IP"], "15671"),
			"credentialsSecret": "rabbitmq-monitoring", "caSecret": "rabbitmq-ca", "pollInterval": "2s", "timeout": "2s",
			"queues": []any{map[string]any{"vhost": rmq.Vhost, "name": queue}},
		}}},
		"connectionMetrics": map[string]any{
			// Only the real node: other tests' kwok nodes come and go.
			"agent": map[string]any{"nodeSelector": selector, "tcpChildEhashEntries": 65536, "interval": "2s"},
			"adapter": map[string]any{"nodeSelector": selector, "tolerations": tolerations,
				"window": "6s", "ttl": "10s", "pullInterval": "2s"},
		},
	}
	raw, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	valuesFile := filepath.Join(t.TempDir(), "real-node.yaml")
	if err := os.WriteFile(valuesFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, err := helmRun(w, helm, "install", rel, framework.ChartDir(), "-n", ns, "-f", valuesFile, "--wait", "--timeout", "3m"); err != nil {
		t.Logf("pods:\n%s", kubectl(t, w, "get", "pods", "-n", ns, "-o", "wide"))
		t.Logf("events:\n%s", framework.Tail(kubectl(t, w, "get", "events", "-n", ns), 3000))
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	t.Logf("helm install --wait on the real node: %s", time.Since(start).Round(time.Second))
	// helm --wait does not wait for a DaemonSet of one node (its maxUnavailable is 1): the
	// agent pod becomes Ready after its first count.
	var pods *corev1.PodList
	framework.Eventually(t, 90*time.Second, time.Second, "every pod of the release Ready", func() (bool, error) {
		var err error
		if pods, err = w.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if !podReady(p) {
				return false, fmt.Errorf("%s not Ready", p.Name)
			}
		}
		return len(pods.Items) == 3, fmt.Errorf("%d pods", len(pods.Items))
	})
	t.Logf("every pod Ready: %s", time.Since(start).Round(time.Second))
	byComponent := map[string][]corev1.Pod{}
	for _, p := range pods.Items {
		byComponent[p.Labels["app.kubernetes.io/component"]] = append(byComponent[p.Labels["app.kubernetes.io/component"]], p)
	}
	if n := len(byComponent["connection-agent"]); n != 1 {
		t.Fatalf("%d agent pods, want 1 (the real node's)", n)
	}
	if n := len(byComponent["connection-metrics-adapter"]); n != 2 {
		t.Fatalf("%d adapter pods, want 2", n)
	}
	for component, list := range byComponent {
		for _, p := range list {
			if p.Spec.NodeName != node.Name {
				t.Errorf("%s pod %s on %s, want the real node", component, p.Name, p.Spec.NodeName)
			}
			if !podReady(p) {
				t.Errorf("%s pod %s is not Ready: %+v", component, p.Name, p.Status.Conditions)
			}
			for _, c := range p.Status.ContainerStatuses {
				// A real container: containerd ran it from the image make images built.
				if !strings.HasPrefix(c.ContainerID, "containerd://") || !strings.HasPrefix(c.Image, "ghcr.io/openstack-autoscaler/") {
					t.Errorf("%s container %s: id %q image %q, want a containerd container of the product's image", p.Name, c.Name, c.ContainerID, c.Image)
				}
			}
		}
	}
	// Each binary says what it is on /metrics, from its pod.
	for component, port := range map[string]string{"connection-agent": "10261", "connection-metrics-adapter": "10262"} {
		p := byComponent[component][0]
		if body := httpGet(t, "http://"+net.JoinHostPort(p.Status.PodIP, port)+"/metrics"); !strings.Contains(body, "openstack_autoscaler_build_info{") {
			t.Errorf("%s /metrics has no openstack_autoscaler_build_info:\n%s", component, framework.Tail(body, 500))
		}
	}
	agent := byComponent["connection-agent"][0]
	// Not privileged, the agent's container still loaded its BPF program (CAP_BPF, CAP_PERFMON).
	if body := httpGet(t, "http://"+net.JoinHostPort(agent.Status.PodIP, "10261")+"/metrics"); !strings.Contains(body, `connection_agent_counter_info{mode="ebpf",reason=""} 1`) {
		t.Errorf("the agent's container does not count from kernel events:\n%s", framework.Tail(body, 800))
	}
	if len(agent.Status.InitContainerStatuses) != 1 || agent.Status.InitContainerStatuses[0].State.Terminated == nil ||
		agent.Status.InitContainerStatuses[0].State.Terminated.ExitCode != 0 {
		t.Errorf("the agent's sysctl init container did not end well: %+v", agent.Status.InitContainerStatuses)
	}
	if got, err := os.ReadFile(hostEhashPath); err == nil && strings.TrimSpace(string(got)) != "65536" {
		t.Errorf("the host's net.ipv4.tcp_child_ehash_entries is %s after the init container, want 65536", strings.TrimSpace(string(got)))
	}

	agg := aggregator.NewForConfigOrDie(w.RestConfig)
	for _, name := range []string{"v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io"} {
		framework.Eventually(t, 60*time.Second, time.Second, "APIService "+name+" Available", func() (bool, error) {
			api, err := agg.ApiregistrationV1().APIServices().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, c := range api.Status.Conditions {
				if c.Type == apiregv1.Available {
					return c.Status == apiregv1.ConditionTrue, fmt.Errorf("%s: %s", c.Reason, c.Message)
				}
			}
			return false, fmt.Errorf("no Available condition")
		})
	}
	body, err := w.Kube.Discovery().RESTClient().Get().AbsPath("/apis/custom.metrics.k8s.io/v1beta2").DoRaw(ctx)
	if err != nil || !strings.Contains(string(body), "tcp_connections") {
		t.Errorf("discovery of custom.metrics.k8s.io/v1beta2 through the adapter's pods: %v\n%s", err, framework.Tail(string(body), 500))
	}

	// The queue's depth, read by the adapter's pods from the broker through the pod network.
	framework.Eventually(t, 60*time.Second, 2*time.Second, "the queue's depth served by the adapter's pods", func() (bool, error) {
		out := kubectl(t, w, "get", "--raw", "/apis/external.metrics.k8s.io/v1beta1/namespaces/"+ns+"/rabbitmq_queue_messages_ready?labelSelector=queue%3D"+queue)
		var list externalValueList
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return false, fmt.Errorf("%s", out)
		}
		return len(list.Items) == 1 && list.Items[0].Value.Value() == queued, fmt.Errorf("%+v", list.Items)
	})

	realPodsScaleOnConnections(t, w, ns, rel)
}

// publish declares a durable queue in the test's vhost and puts n messages in it.
func publish(t *testing.T, rmq *framework.RabbitMQ, queue string, n int) {
	t.Helper()
	conn, err := amqp.Dial(rmq.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := ch.PublishWithContext(context.Background(), "", queue, false, false, amqp.Publishing{Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
}

// realPodsScaleOnConnections runs the workload image on the real node behind a Service, with a
// real HPA on tcp_connections (10 per pod), and drives it with connections to the pods' IPs.
func realPodsScaleOnConnections(t *testing.T, w *framework.World, ns, rel string) {
	ctx := context.Background()
	const app = "real-web"
	realWorkload(t, w, ns, app)
	labels := map[string]string{"app": app}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(8080)}}}}
	if _, err := w.Kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: app},
			MinReplicas:    ptr.To(int32(1)), MaxReplicas: 4,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
				Metric: autoscalingv2.MetricIdentifier{Name: "tcp_connections"},
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(resource.MustParse("10"))}}}},
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{
				ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To(int32(10))}},
		},
	}
	if _, err := w.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	replicas := func() int32 {
		d, err := w.Kube.AppsV1().Deployments(ns).Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			return -1
		}
		return *d.Spec.Replicas
	}
	raw := func() metricValueList {
		out := kubectl(t, w, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/"+ns+"/pods/*/tcp_connections?labelSelector=app%3D"+app)
		var list metricValueList
		_ = json.Unmarshal([]byte(out), &list)
		return list
	}
	framework.Eventually(t, 90*time.Second, time.Second, "tcp_connections served for the idle real pod", func() (bool, error) {
		list := raw()
		return len(list.Items) == 1 && list.Items[0].Value.IsZero(), fmt.Errorf("%+v", list)
	})

	// 30 connections held to the pods' IPs (through the real node's bridge): 3 pods of 10.
	_, stopLoad := holdSpread(t, w, func() []string {
		var targets []string
		pods, _ := w.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		for _, p := range pods.Items {
			if podReady(p) && p.DeletionTimestamp == nil {
				targets = append(targets, net.JoinHostPort(p.Status.PodIP, "8080"))
			}
		}
		return targets
	}, func() int { return 30 })
	took := waitEachHolds(t, replicas, raw, 3, "10", 120*time.Second)
	t.Logf("30 connections → 3 real pods of 10 in %s", took.Round(time.Second))
	// The agent pod's /metrics has the same counts per pod and port, for Prometheus.
	agents, err := w.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=connection-agent"})
	if err != nil || len(agents.Items) != 1 {
		t.Fatalf("agent pods: %v (%d)", err, len(agents.Items))
	}
	framework.Eventually(t, 30*time.Second, 2*time.Second, "each pod's 10 connections on port 8080 in the agent's /metrics", func() (bool, error) {
		body := httpGet(t, "http://"+net.JoinHostPort(agents.Items[0].Status.PodIP, "10261")+"/metrics")
		n := 0
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, `connection_agent_pod_inbound_connections{namespace="`+ns+`",pod="`+app+`-`) && strings.Contains(line, `port="8080"} 10`) {
				n++
			}
		}
		return n == 3, fmt.Errorf("%d pods with 10 on port 8080", n)
	})
	// kubectl describe hpa shows the value (the HPA's status follows its next sync).
	var describe string
	framework.Eventually(t, 30*time.Second, time.Second, "kubectl describe hpa showing 10 / 10", func() (bool, error) {
		describe = kubectl(t, w, "describe", "hpa", "-n", ns, app)
		return strings.Contains(describe, `"tcp_connections" on pods:`) && strings.Contains(describe, "10 / 10"), nil
	})
	t.Logf("kubectl describe hpa: %s", strings.TrimSpace(describe[strings.Index(describe, `"tcp_connections" on pods:`):][:60]))

	// The agent goes (its DaemonSet no longer matches the node): within the TTL the pods'
	// values are withdrawn, and the HPA does not scale down on the missing data.
	agentDS := rel + "-openstack-autoscaler-connection-agent"
	patch := `{"spec":{"template":{"spec":{"nodeSelector":{"openstack-autoscaler.io/world-node":"none"}}}}}`
	if _, err := w.Kube.AppsV1().DaemonSets(ns).Patch(ctx, agentDS, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	gone := framework.Eventually(t, 60*time.Second, time.Second, "the pods' values withdrawn without their agent", func() (bool, error) {
		list := raw()
		return len(list.Items) == 0, fmt.Errorf("%d values still served", len(list.Items))
	})
	t.Logf("agent gone → values withdrawn in %s", gone.Round(time.Second))
	holdUntil := time.Now().Add(20 * time.Second)
	for time.Now().Before(holdUntil) {
		if r := replicas(); r != 3 {
			t.Fatalf("replicas %d while the agent was gone: the HPA scaled on missing data", r)
		}
		time.Sleep(time.Second)
	}
	restore := `{"spec":{"template":{"spec":{"nodeSelector":{"openstack-autoscaler.io/world-node":"real"}}}}}`
	if _, err := w.Kube.AppsV1().DaemonSets(ns).Patch(ctx, agentDS, types.StrategicMergePatchType, []byte(restore), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 90*time.Second, time.Second, "values served again by the new agent pod", func() (bool, error) {
		return len(raw().Items) == 3, nil
	})

	// The load ends: back to one replica.
	stopLoad()
	down := framework.Eventually(t, 120*time.Second, 2*time.Second, "back to 1 replica after the load", func() (bool, error) {
		return replicas() == 1, fmt.Errorf("replicas %d", replicas())
	})
	t.Logf("load ended → 1 replica in %s", down.Round(time.Second))
}

// realWorkload runs a one-replica Deployment of the world's workload image on the real node
// (real containers, a 50m CPU request, Ready once it serves HTTP on 8080).
func realWorkload(t *testing.T, w *framework.World, ns, app string) {
	t.Helper()
	selector, tolerations := framework.OnRealNode()
	labels := map[string]string{"app": app}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{NodeSelector: selector, Tolerations: tolerations, TerminationGracePeriodSeconds: ptr.To(int64(2)),
					Containers: []corev1.Container{{Name: "app", Image: w.Env["OSA_WORLD_WORKLOAD_IMAGE"], ImagePullPolicy: corev1.PullNever,
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt(8080)}},
							PeriodSeconds: 1},
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")}}}}},
			}},
	}
	if _, err := w.Kube.AppsV1().Deployments(ns).Create(context.Background(), dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// The seed's "HPA on CPU for a service with a remote database": examples/hpa-cpu.yaml and the
// CPU half of examples/hpa-cpu-and-connections.yaml scale real containers on real CPU, read by
// metrics-server from the real node's kubelet; kubectl describe hpa shows a real number against
// the 65% target.
func TestCPUExamplesScaleOnRealCPU(t *testing.T) {
	w := framework.Connect(t)
	framework.RealNode(t, w)
	ctx := context.Background()
	const ns = "osa-cpu"
	testNamespace(t, w, ns)
	for _, file := range []string{"hpa-cpu.yaml", "hpa-cpu-and-connections.yaml"} {
		for _, hpa := range readHPAs(t, file) {
			realWorkload(t, w, ns, hpa.Spec.ScaleTargetRef.Name)
		}
		out := kubectl(t, w, "apply", "-n", ns, "-f", filepath.Join("..", "examples", file))
		if !strings.Contains(out, "created") {
			t.Fatalf("kubectl apply -f examples/%s: %s", file, out)
		}
	}
	logNamespaceOnFailure(t, w, ns)

	// web gets work: every 250 ms, 50 ms of CPU on each pod (about 200m per pod against a 50m
	// request).
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		client := &http.Client{Timeout: 5 * time.Second}
		for {
			pods, _ := w.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			for _, p := range pods.Items {
				if podReady(p) {
					if resp, err := client.Get("http://" + net.JoinHostPort(p.Status.PodIP, "8080") + "/burn?ms=50"); err == nil {
						resp.Body.Close()
					}
				}
			}
			select {
			case <-done:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()

	cpuOf := func(name string) (utilization int32, ok bool) {
		hpa, err := w.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return 0, false
		}
		for _, m := range hpa.Status.CurrentMetrics {
			if m.Resource != nil && m.Resource.Name == corev1.ResourceCPU && m.Resource.Current.AverageUtilization != nil {
				return *m.Resource.Current.AverageUtilization, true
			}
		}
		return 0, false
	}
	took := framework.Eventually(t, 150*time.Second, 2*time.Second, "web scaled up on its CPU", func() (bool, error) {
		u, ok := cpuOf("web")
		d, err := w.Kube.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return ok && u > 65 && *d.Spec.Replicas > 1, fmt.Errorf("cpu %d%% (read: %v), replicas %d", u, ok, *d.Spec.Replicas)
	})
	u, _ := cpuOf("web")
	t.Logf("web: CPU at %d%% of its request, scaled up %s after the work began", u, took.Round(time.Second))
	framework.Eventually(t, 90*time.Second, 2*time.Second, "chat's CPU read (idle)", func() (bool, error) {
		_, ok := cpuOf("chat")
		return ok, nil
	})
	for _, name := range []string{"web", "chat"} {
		describe := kubectl(t, w, "describe", "hpa", "-n", ns, name)
		line := ""
		for _, l := range strings.Split(describe, "\n") {
			if strings.Contains(l, "cpu") && strings.Contains(l, "/ 65%") {
				line = strings.TrimSpace(l)
			}
		}
		if line == "" || strings.Contains(line, "<unknown>") {
			t.Errorf("kubectl describe hpa %s shows no real CPU value against 65%%:\n%s", name, describe)
		}
		t.Logf("kubectl describe hpa %s: %s", name, line)
	}
}

// httpGet returns a URL's body, failing the test on any error or a status other than 200.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(body)
}

// logNamespaceOnFailure logs, when the test has failed, what the namespace's pods, HPAs and
// events showed and the logs of the chart's components named (registered as a cleanup: it runs
// before the cleanups registered earlier, such as an uninstall).
func logNamespaceOnFailure(t *testing.T, w *framework.World, ns string, components ...string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("pods:\n%s", kubectl(t, w, "get", "pods", "-n", ns, "-o", "wide"))
		t.Logf("kubectl describe hpa:\n%s", framework.Tail(kubectl(t, w, "describe", "hpa", "-n", ns), 3000))
		t.Logf("events:\n%s", framework.Tail(kubectl(t, w, "get", "events", "-n", ns, "--sort-by=.lastTimestamp"), 4000))
		for _, component := range components {
			t.Logf("%s logs:\n%s", component, framework.Tail(kubectl(t, w, "logs", "-n", ns, "--all-containers", "--prefix",
				"--tail=60", "-l", "app.kubernetes.io/component="+component), 6000))
		}
	})
}
