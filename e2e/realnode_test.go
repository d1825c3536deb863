//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"sigs.k8s.io/yaml"

	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

const hostEhashPath = "/proc/sys/net/ipv4/tcp_child_ehash_entries"

// The chart's connection metrics run in real containers on the world's real node, from the
// images `make images` built: the agent DaemonSet pod (privileged, hostPID, its sysctl init
// container) and the adapter's two pods are Running and Ready, and the APIServices become
// Available through the adapter's Service.
func TestChartRunsOnTheRealNode(t *testing.T) {
	w := framework.Connect(t)
	node := framework.RealNode(t, w)
	helm := framework.HelmBinary(t)
	ctx := context.Background()
	const rel, ns = "osa-real", "osa-real-e2e"
	waitMetricsAPIsFree(t, w)
	testNamespace(t, w, ns)
	t.Cleanup(func() { _, _ = helmRun(w, helm, "uninstall", rel, "-n", ns, "--wait", "--timeout", "2m") })
	if before, err := os.ReadFile(hostEhashPath); err == nil {
		t.Cleanup(func() { _ = os.WriteFile(hostEhashPath, before, 0) })
	}

	selector, tolerations := framework.OnRealNode()
	values := map[string]any{
		"serviceMonitors": map[string]any{"enabled": false},
		"connectionMetrics": map[string]any{
			// Only the real node: other tests' kwok nodes come and go.
			"agent":   map[string]any{"nodeSelector": selector, "tcpChildEhashEntries": 65536},
			"adapter": map[string]any{"nodeSelector": selector, "tolerations": tolerations},
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

	pods, err := w.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
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
	agent := byComponent["connection-agent"][0]
	if len(agent.Status.InitContainerStatuses) != 1 || agent.Status.InitContainerStatuses[0].State.Terminated == nil ||
		agent.Status.InitContainerStatuses[0].State.Terminated.ExitCode != 0 {
		t.Errorf("the agent's sysctl init container did not end well: %+v", agent.Status.InitContainerStatuses)
	}
	if got, err := os.ReadFile(hostEhashPath); err == nil && strings.TrimSpace(string(got)) != "65536" {
		t.Errorf("the host's net.ipv4.tcp_child_ehash_entries is %s after the init container, want 65536", strings.TrimSpace(string(got)))
	}

	agg := aggregator.NewForConfigOrDie(w.RestConfig)
	for _, name := range []string{"v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io"} {
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
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
