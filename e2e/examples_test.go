//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/loadgen"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/sandbox"
)

// testNamespace creates a namespace for the test (after a previous run's copy has finished
// terminating) and deletes it when the test ends.
func testNamespace(t *testing.T, w *framework.World, name string) {
	t.Helper()
	ctx := context.Background()
	framework.Eventually(t, 3*time.Minute, 2*time.Second, "namespace "+name+" created", func() (bool, error) {
		_, err := w.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		return err == nil, err
	})
	t.Cleanup(func() { _ = w.Kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
}

// hpaExamples are the HPA manifests applied as written (their targets are created by the test).
var hpaExamples = []string{"hpa-tcp-connections.yaml", "hpa-service-connections.yaml", "hpa-one-port.yaml", "hpa-cpu-and-connections.yaml"}

func readHPAs(t *testing.T, file string) []autoscalingv2.HorizontalPodAutoscaler {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "examples", file))
	if err != nil {
		t.Fatal(err)
	}
	var out []autoscalingv2.HorizontalPodAutoscaler
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var hpa autoscalingv2.HorizontalPodAutoscaler
		if err := yaml.UnmarshalStrict([]byte(doc), &hpa); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, hpa)
	}
	return out
}

// currentValue is what `kubectl describe hpa` shows as the current value of one metric.
func currentValue(s autoscalingv2.MetricStatus) (name, value string, ok bool) {
	switch {
	case s.Pods != nil && s.Pods.Current.AverageValue != nil:
		return s.Pods.Metric.Name, s.Pods.Current.AverageValue.String(), true
	case s.Object != nil && s.Object.Current.AverageValue != nil:
		return s.Object.Metric.Name + " on " + s.Object.DescribedObject.Kind + "/" + s.Object.DescribedObject.Name, s.Object.Current.AverageValue.String(), true
	case s.Object != nil && s.Object.Current.Value != nil:
		return s.Object.Metric.Name + " on " + s.Object.DescribedObject.Kind + "/" + s.Object.DescribedObject.Name, s.Object.Current.Value.String(), true
	}
	return "", "", false
}

// Every HPA example, applied with kubectl as written, gets values for its connection metrics
// from the running agent and adapter: the real HPA controller reports a current value for each
// tcp_* metric (a Pods metric, one port through the metric selector, a Service object metric,
// and connections next to CPU).
func TestExampleHPAs(t *testing.T) {
	w := framework.Connect(t)
	ctx := context.Background()
	waitMetricsAPIsFree(t, w)
	framework.RunConnectionMetrics(t, w, "6s")
	kwokNode(t, w, "examples-node", "64")
	const ns = "osa-examples"
	testNamespace(t, w, ns)

	// Targets: one Deployment per HPA whose pods listen on 8080 and 8443 in real network
	// namespaces (the world's sandboxes), and a Service for each Object metric.
	type want struct{ hpa, metric string }
	var wants []want
	for _, file := range hpaExamples {
		for _, hpa := range readHPAs(t, file) {
			app := hpa.Spec.ScaleTargetRef.Name
			labels := map[string]string{"app": app}
			dep := &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
				Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{sandbox.PortsAnnotation: "8080,8443"}},
						Spec: corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/hostname": "examples-node"},
							Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/" + app + ":1",
								Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}},
					}},
			}
			if _, err := w.Kube.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			for _, m := range hpa.Spec.Metrics {
				switch {
				case m.Pods != nil:
					wants = append(wants, want{hpa.Name, m.Pods.Metric.Name})
				case m.Object != nil:
					ref := m.Object.DescribedObject
					wants = append(wants, want{hpa.Name, m.Object.Metric.Name + " on " + ref.Kind + "/" + ref.Name})
					if ref.Kind != "Service" {
						t.Fatalf("%s: object metric on %s: this test knows how to make Services only", file, ref.Kind)
					}
					svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: ref.Name, Namespace: ns},
						Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt(8080)}}}}
					if _, err := w.Kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		out := kubectl(t, w, "apply", "-n", ns, "-f", filepath.Join("..", "examples", file))
		if !strings.Contains(out, "created") {
			t.Fatalf("kubectl apply -f examples/%s: %s", file, out)
		}
		t.Logf("kubectl apply -f examples/%s: %s", file, strings.TrimSpace(out))
	}

	// The HPA controller (real, syncing every 5 s) reports a current value for every connection
	// metric of every example.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kubectl describe hpa:\n%s", framework.Tail(kubectl(t, w, "describe", "hpa", "-n", ns), 6000))
		}
	})
	seen := map[want]string{}
	framework.Eventually(t, 2*time.Minute, 3*time.Second, "a current value for every connection metric of the examples", func() (bool, error) {
		hpas, err := w.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, h := range hpas.Items {
			for _, s := range h.Status.CurrentMetrics {
				if name, value, ok := currentValue(s); ok {
					seen[want{h.Name, name}] = value
				}
			}
		}
		var missing []string
		for _, wnt := range wants {
			if _, ok := seen[wnt]; !ok {
				missing = append(missing, wnt.hpa+": "+wnt.metric)
			}
		}
		return len(missing) == 0, fmt.Errorf("no value yet for %s", strings.Join(missing, ", "))
	})
	for _, wnt := range wants {
		t.Logf("hpa/%s: %q current value %s", wnt.hpa, wnt.metric, seen[wnt])
	}
	// podAddrs waits for the app's 2 pods to run in their sandboxes and returns ip:port of each.
	podAddrs := func(app, port string) []string {
		var targets []string
		framework.Eventually(t, time.Minute, time.Second, app+"'s pods running in their sandboxes", func() (bool, error) {
			pods, err := w.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
			if err != nil {
				return false, err
			}
			targets = nil
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && len(framework.PodPIDs(string(p.UID))) > 0 {
					targets = append(targets, net.JoinHostPort(p.Status.PodIP, port))
				}
			}
			return len(targets) == 2, fmt.Errorf("%d of 2 pods ready", len(targets))
		})
		return targets
	}
	holder := &loadgen.Holder{Source: w.Env["OSA_WORLD_HOST_IP"]}
	t.Cleanup(holder.CloseAll)
	hpaValue := func(name, metric string) string {
		h, err := w.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		for _, s := range h.Status.CurrentMetrics {
			if m, v, ok := currentValue(s); ok && m == metric {
				return v
			}
		}
		return ""
	}

	// Load through the Service example: 6 connections spread over frontend's pods; the adapter
	// serves their sum for the Service, and the HPA's per-pod average follows.
	if err := holder.Spread(ctx, podAddrs("frontend", "8080"), 6); err != nil {
		t.Fatal(err)
	}
	// The one-port example: 4 connections on 8443 and 6 on 8080 to gateway's pods; its HPA
	// counts the 8443 ones only (2 per pod, not 5).
	gateway := append(podAddrs("gateway", "8443"), podAddrs("gateway", "8080")...)
	for i, n := range []int{2, 2, 3, 3} {
		if err := holder.Set(ctx, gateway[i], n); err != nil {
			t.Fatal(err)
		}
	}
	framework.Eventually(t, 90*time.Second, 3*time.Second, "the HPAs following the load", func() (bool, error) {
		raw := kubectl(t, w, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/"+ns+"/services/frontend/tcp_connections")
		frontend, gw := hpaValue("frontend", "tcp_connections on Service/frontend"), hpaValue("gateway", "tcp_connections")
		return strings.Contains(raw, `"value":"6"`) && frontend == "3" && gw == "2",
			fmt.Errorf("Service/frontend from the API: %s; frontend HPA average %q (want 3); gateway HPA tcp_connections{port=8443} %q (want 2)", raw, frontend, gw)
	})
	t.Logf("6 connections through Service/frontend: the adapter serves 6, the HPA averages 3 per pod; " +
		"gateway with 4 connections on 8443 and 6 on 8080: its HPA sees 2 per pod on 8443")
}

// The node-group configuration examples pass `openstack-provider validate` against the world's
// cloud once pointed at it (its clouds.yaml and cloud, its image); the Heat template is the one
// the Heat tests create stacks from, and the spare-capacity example is applied by its own test.
func TestExampleNodeGroupConfigs(t *testing.T) {
	w := framework.Connect(t)
	bin := framework.ProviderBinary(t)
	for _, name := range []string{"provider-nova.yaml", "provider-heat.yaml"} {
		raw, err := os.ReadFile(filepath.Join("..", "examples", name))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.NewReplacer(
			"/etc/openstack/clouds.yaml", w.Env["OS_CLIENT_CONFIG_FILE"],
			"name: prod", "name: world",
			"image: ubuntu-24.04-k8s-1.36-cuda", "image: world-node-image",
			"image: ubuntu-24.04-k8s-1.36", "image: world-node-image",
		).Replace(string(raw))
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "validate", "--config", path).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "valid") {
			t.Errorf("openstack-provider validate examples/%s (pointed at the world): %v\n%s", name, err, out)
			continue
		}
		t.Logf("examples/%s: %s", name, strings.TrimSpace(string(out)))
	}
	for example, test := range map[string]string{
		"heat-node-group.yaml": "provider_heat_test.go",
		"spare-capacity.yaml":  "capacity_test.go",
	} {
		src, err := os.ReadFile(test)
		if err != nil {
			t.Errorf("examples/%s is exercised by %s: %v", example, test, err)
			continue
		}
		if !strings.Contains(string(src), "examples/"+example) {
			t.Errorf("examples/%s is not used by %s", example, test)
		}
	}
}
