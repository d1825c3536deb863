//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/loadgen"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/sandbox"
)

// kubectl runs the world's kubectl.
func kubectl(t *testing.T, w *framework.World, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(w.Env["OSA_WORLD_K8S_BIN"], "kubectl"), args...)
	cmd.Env = append(cmd.Environ(), "KUBECONFIG="+w.Env["KUBECONFIG"])
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Logf("kubectl %s: %v: %s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func kwokNode(t *testing.T, w *framework.World, name, cpu string) {
	t.Helper()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels: map[string]string{"type": "kwok", "kubernetes.io/hostname": name}},
		Status: corev1.NodeStatus{Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu),
			corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("110")}},
	}
	node.Status.Allocatable = node.Status.Capacity
	if _, err := w.Kube.CoreV1().Nodes().Create(context.Background(), node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Kube.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
}

// spreadLoad keeps total connections spread over the app's ready pods until stop is called.
func spreadLoad(t *testing.T, w *framework.World, app string, port int, total *int, mu *sync.Mutex) (holder *loadgen.Holder, stop func()) {
	return holdSpread(t, w, func() []string {
		var targets []string
		for _, p := range podsOf(t, w, app) {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && len(framework.PodPIDs(string(p.UID))) > 0 {
				targets = append(targets, net.JoinHostPort(p.Status.PodIP, strconv.Itoa(port)))
			}
		}
		return targets
	}, func() int {
		mu.Lock()
		defer mu.Unlock()
		return *total
	})
}

// holdSpread keeps total() connections from the world's address spread over targets(), read
// again every second, until stop (or the test's end).
func holdSpread(t *testing.T, w *framework.World, targets func() []string, total func() int) (holder *loadgen.Holder, stop func()) {
	holder = &loadgen.Holder{Source: w.Env["OSA_WORLD_HOST_IP"]}
	done := make(chan struct{})
	go func() {
		for {
			if list := targets(); len(list) > 0 {
				_ = holder.Spread(context.Background(), list, total())
			}
			select {
			case <-done:
				holder.CloseAll()
				return
			case <-time.After(time.Second):
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(done) }) }
	t.Cleanup(stop)
	return holder, stop
}

// waitEachHolds waits until the Deployment has n replicas and the metric serves each of them
// the value each.
func waitEachHolds(t *testing.T, replicas func() int32, raw func() metricValueList, n int32, each string, timeout time.Duration) time.Duration {
	t.Helper()
	return framework.Eventually(t, timeout, 2*time.Second, fmt.Sprintf("%d replicas holding %s connections each", n, each), func() (bool, error) {
		list := raw()
		if replicas() != n || len(list.Items) != int(n) {
			return false, fmt.Errorf("replicas %d, values %d", replicas(), len(list.Items))
		}
		for _, it := range list.Items {
			if it.Value.Cmp(resource.MustParse(each)) != 0 {
				return false, fmt.Errorf("%s = %s", it.DescribedObject.Name, it.Value.String())
			}
		}
		return true, nil
	})
}

// connectionsHPA runs a one-replica Deployment of sandbox pods listening on ports on node, and a
// real HPA scaling it (1 to 6 replicas) on 10 tcp_connections per pod, with a 10 s scale-down
// stabilization; both go when the test ends. It returns the Deployment's replicas.
func connectionsHPA(t *testing.T, w *framework.World, app, node, ports string) (replicas func() int32) {
	t.Helper()
	return scaledDeployment(t, w, app, node, map[string]string{sandbox.PortsAnnotation: ports},
		autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "tcp_connections"},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(resource.MustParse("10"))}}})
}

// scaledDeployment runs a one-replica Deployment app of pods on node (with annotations) and a real
// HPA scaling it (1 to 6 replicas) on metric, with a 10 s scale-down stabilization; both go when
// the test ends. It returns the Deployment's replicas.
func scaledDeployment(t *testing.T, w *framework.World, app, node string, annotations map[string]string, metric autoscalingv2.MetricSpec) (replicas func() int32) {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": app}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: "default"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/hostname": node},
					Containers: []corev1.Container{{Name: "web", Image: "registry.invalid/web:1"}}},
			}},
	}
	if _, err := w.Kube.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Kube.AppsV1().Deployments("default").Delete(context.Background(), app, metav1.DeleteOptions{})
	})
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: "default"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: app},
			MinReplicas:    ptr.To(int32(1)), MaxReplicas: 6,
			Metrics: []autoscalingv2.MetricSpec{metric},
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{
				ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To(int32(10))}},
		},
	}
	if _, err := w.Kube.AutoscalingV2().HorizontalPodAutoscalers("default").Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Kube.AutoscalingV2().HorizontalPodAutoscalers("default").Delete(context.Background(), app, metav1.DeleteOptions{})
	})
	return func() int32 {
		d, err := w.Kube.AppsV1().Deployments("default").Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			return -1
		}
		return *d.Spec.Replicas
	}
}

type metricValueList struct {
	Items []struct {
		DescribedObject struct{ Name string } `json:"describedObject"`
		Value           resource.Quantity     `json:"value"`
		WindowSeconds   *int64                `json:"windowSeconds"`
		Timestamp       time.Time             `json:"timestamp"`
	} `json:"items"`
}

// A real autoscaling/v2 HPA scales a Deployment on the inbound TCP connections its pods hold,
// counted inside each pod's own network namespace: up within 30 s of a surge, down when the load
// ends; `kubectl describe hpa` and `kubectl get --raw` show the values.
func TestHPAScalesOnConnectionsPerPod(t *testing.T) {
	w := framework.Connect(t)
	m := framework.RunConnectionMetrics(t, w, "6s")
	kwokNode(t, w, "conn-node", "32")

	const app = "conn-web"
	replicas := connectionsHPA(t, w, app, "conn-node", "8080,9090")
	raw := func() metricValueList {
		out := kubectl(t, w, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/tcp_connections?labelSelector=app%3D"+app)
		var list metricValueList
		_ = json.Unmarshal([]byte(out), &list)
		return list
	}

	// Idle: the metric is served (0 per pod) and the HPA holds at 1.
	framework.Eventually(t, 60*time.Second, time.Second, "tcp_connections served for the idle pod", func() (bool, error) {
		list := raw()
		return len(list.Items) == 1 && list.Items[0].Value.IsZero(), fmt.Errorf("%+v", list)
	})

	// Surge: 40 connections over the pods; at a target of 10 per pod the HPA wants 4.
	var mu sync.Mutex
	total := 40
	holder, stopLoad := spreadLoad(t, w, app, 8080, &total, &mu)
	surge := time.Now()
	took := framework.Eventually(t, 30*time.Second, time.Second, "a scale-up within 30 s of the surge", func() (bool, error) {
		return replicas() > 1, fmt.Errorf("replicas %d", replicas())
	})
	t.Logf("surge → HPA scaled up in %s", took.Round(time.Second))
	waitEachHolds(t, replicas, raw, 4, "10", 120*time.Second)
	held := 0
	for _, n := range holder.Counts() {
		held += n
	}
	if held != 40 {
		t.Errorf("the load generator holds %d connections, want 40", held)
	}
	list := raw()
	for _, it := range list.Items {
		if it.WindowSeconds == nil || *it.WindowSeconds <= 0 || time.Since(it.Timestamp) > 15*time.Second {
			t.Errorf("value of %s: window %v, timestamp %s: want a window and a fresh timestamp", it.DescribedObject.Name, it.WindowSeconds, it.Timestamp)
		}
	}
	// One listening port through the metric selector: all load is on 8080, none on 9090.
	port9090 := kubectl(t, w, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/tcp_connections?labelSelector=app%3D"+app+"&metricLabelSelector=port%3D9090")
	if !strings.Contains(port9090, `"value":"0"`) || strings.Contains(port9090, `"value":"10"`) {
		t.Errorf("tcp_connections{port=9090} = %s, want 0 for every pod", port9090)
	}
	// The older v1beta1 API (still used by some clients) serves the same values.
	var v1beta1 metricValueList
	_ = json.Unmarshal([]byte(kubectl(t, w, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/pods/*/tcp_connections?labelSelector=app%3D"+app)), &v1beta1)
	if len(v1beta1.Items) != 4 {
		t.Errorf("v1beta1: %d values, want 4", len(v1beta1.Items))
	}
	for _, it := range v1beta1.Items {
		if it.Value.Cmp(resource.MustParse("10")) != 0 {
			t.Errorf("v1beta1: %s = %s, want 10", it.DescribedObject.Name, it.Value.String())
		}
	}
	// The HPA's status (what describe shows) follows the values at its next sync.
	var describe string
	framework.Eventually(t, 30*time.Second, 2*time.Second, "kubectl describe hpa showing the current value", func() (bool, error) {
		describe = kubectl(t, w, "describe", "hpa", app)
		return strings.Contains(describe, `"tcp_connections" on pods:`) && strings.Contains(describe, "10 / 10"),
			fmt.Errorf("describe:\n%s", describe)
	})
	t.Logf("surge to steady state in %s; kubectl describe hpa:\n%s", time.Since(surge).Round(time.Second), describe)

	// The agent counted from kernel events (this kernel allows it), and its periodic sock_diag
	// checks of every pod's namespace, at rest, found the same counts.
	agentMetric := func(name string) float64 {
		for _, line := range strings.Split(httpGet(t, m.AgentMetrics), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		return -1
	}
	if body := httpGet(t, m.AgentMetrics); !strings.Contains(body, `connection_agent_counter_info{mode="ebpf",reason=""} 1`) {
		t.Errorf("the agent does not count from kernel events:\n%s", framework.Tail(body, 1500))
	}
	checks := agentMetric("connection_agent_event_checks_total")
	framework.Eventually(t, 60*time.Second, 2*time.Second, "sock_diag checks of the 4 pods at rest", func() (bool, error) {
		now := agentMetric("connection_agent_event_checks_total")
		return now >= checks+4, fmt.Errorf("checks %v, were %v", now, checks)
	})
	if d := agentMetric("connection_agent_event_drift_connections_total"); d != 0 {
		t.Errorf("kernel-event counts drifted from sock_diag's by %v connections", d)
	}

	// The load ends: back to the minimum.
	stopLoad()
	took = framework.Eventually(t, 120*time.Second, 2*time.Second, "scale down to 1", func() (bool, error) {
		return replicas() == 1, fmt.Errorf("replicas %d", replicas())
	})
	t.Logf("load ended → 1 replica in %s", took.Round(time.Second))

	// Reading custom metrics needs RBAC: a user without it is refused.
	denied := kubectl(t, w, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/tcp_connections", "--as", "nobody")
	if !strings.Contains(denied, "Forbidden") {
		t.Errorf("a user without RBAC read custom metrics: %s", denied)
	}
	// Unknown metrics and bad selectors get clear errors.
	notFound := kubectl(t, w, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/http_requests")
	if !strings.Contains(notFound, "tcp_connections") || !strings.Contains(notFound, "NotFound") {
		t.Errorf("unknown metric: %s; want NotFound naming the served metrics", notFound)
	}
	// Counted from kernel events, half-open handshakes are not: tcp_syn_backlog is withheld
	// (not served as 0) and the error says how to get it.
	syn := kubectl(t, w, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/tcp_syn_backlog?labelSelector=app%3D"+app)
	if strings.Contains(syn, `"value"`) {
		t.Errorf("tcp_syn_backlog served by an agent counting from events: %s", syn)
	}
	badSelector := kubectl(t, w, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/tcp_connections?metricLabelSelector=colour%3Dblue")
	if !strings.Contains(badSelector, "BadRequest") || !strings.Contains(badSelector, "port=<number>") {
		t.Errorf("bad metric selector: %s; want BadRequest saying port=<number>", badSelector)
	}
}

// The agent stops reporting (killed) while the HPA holds three replicas busy: within the TTL its
// pods' series are withdrawn (not served stale), and the HPA, without values, keeps the three
// replicas instead of scaling down on the missing data.
func TestHPAHoldsWhenTheAgentStopsReporting(t *testing.T) {
	w := framework.Connect(t)
	metrics := framework.RunConnectionMetrics(t, w, "6s")
	kwokNode(t, w, "conn-hold-node", "32")
	const app = "conn-hold"
	replicas := connectionsHPA(t, w, app, "conn-hold-node", "8080")
	raw := func() metricValueList {
		var list metricValueList
		_ = json.Unmarshal([]byte(kubectl(t, w, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/tcp_connections?labelSelector=app%3D"+app)), &list)
		return list
	}
	values := func() int { return len(raw().Items) }
	var mu sync.Mutex
	total := 30
	_, _ = spreadLoad(t, w, app, 8080, &total, &mu)
	// At rest before the agent goes: each pod's window holds 10 only. (Values frozen while the
	// load was being spread, 30 on the first pod's window and 10 on the new ones', would make the
	// HPA scale up on numbers that were true when the agent last reported.)
	waitEachHolds(t, replicas, raw, 3, "10", 120*time.Second)

	metrics.KillAgent()
	killed := time.Now()
	took := framework.Eventually(t, 30*time.Second, time.Second, "the pods' series withdrawn within the TTL (15 s)", func() (bool, error) {
		n := values()
		return n == 0, fmt.Errorf("%d values still served", n)
	})
	t.Logf("agent killed → series withdrawn in %s", took.Round(time.Second))
	if took > 15*time.Second+5*time.Second {
		t.Errorf("withdrawn after %s: the TTL is 15 s (plus a pull and a sync)", took)
	}
	// Long past the HPA's sync period and its 10 s scale-down stabilization: it holds.
	for time.Since(killed) < 45*time.Second {
		if r := replicas(); r != 3 {
			t.Fatalf("the HPA went to %d replicas on missing data, %s after the agent stopped", r, time.Since(killed).Round(time.Second))
		}
		time.Sleep(2 * time.Second)
	}
	describe := kubectl(t, w, "describe", "hpa", app)
	t.Logf("45 s after the agent stopped the HPA still holds 3 replicas; kubectl describe hpa:\n%s", describe)
}

// On a node where the BPF program cannot be loaded (here: a kernel without BTF, as the agent sees
// it), the agent counts with sock_diag and says so (log, connection_agent_counter_info,
// /healthz); the HPA still scales on its counts, and tcp_syn_backlog is served.
func TestAgentFallsBackToSockDiagWithoutBPF(t *testing.T) {
	w := framework.Connect(t)
	m := framework.RunConnectionMetrics(t, w, "6s", framework.WithoutKernelBTF())
	kwokNode(t, w, "fallback-node", "32")
	body := httpGet(t, m.AgentMetrics)
	if !strings.Contains(body, `connection_agent_counter_info{mode="sock_diag",reason="eBPF unavailable: `) {
		t.Fatalf("the agent does not say it fell back to sock_diag:\n%s", framework.Tail(body, 1500))
	}
	health := httpGet(t, strings.TrimSuffix(m.AgentMetrics, "/metrics")+"/healthz")
	if !strings.Contains(health, "counter: sock_diag eBPF unavailable: ") {
		t.Errorf("/healthz: %q, want the counter and why not ebpf", health)
	}
	t.Logf("/healthz: %s", strings.TrimSpace(health))

	const app = "fallback-web"
	replicas := connectionsHPA(t, w, app, "fallback-node", "8080")
	var mu sync.Mutex
	total := 20
	spreadLoad(t, w, app, 8080, &total, &mu)
	raw := func(metric string) metricValueList {
		var list metricValueList
		_ = json.Unmarshal([]byte(kubectl(t, w, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/"+metric+"?labelSelector=app%3D"+app)), &list)
		return list
	}
	waitEachHolds(t, replicas, func() metricValueList { return raw("tcp_connections") }, 2, "10", 120*time.Second)
	if syn := raw("tcp_syn_backlog"); len(syn.Items) != 2 || !syn.Items[0].Value.IsZero() {
		t.Errorf("tcp_syn_backlog with sock_diag: %+v, want 0 for both pods", syn.Items)
	}
}
