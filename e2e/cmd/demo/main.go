// Command demo shows the local world at work and leaves a timeline chart in _output/.
//
// The scenario, both levels of the product at once: openstack-provider, installed by the chart
// in a real container on the world's real node, serves a Nova node group that starts empty, and the connection metrics (agent + adapter, registered for
// custom.metrics.k8s.io) feed a real autoscaling/v2 HPA on tcp_connections. A web Deployment
// whose pods have real network namespaces stays Pending until the autoscaler loop (a stand-in for
// cluster-autoscaler's core, calling the provider's pod over gRPC with mutual TLS) grows the group; a load generator
// holds real TCP connections; the HPA adds replicas for them, their pods are Pending, and the
// group grows again; when the load ends the HPA scales back and empty nodes are drained and
// exactly their servers deleted. A live table shows servers, nodes, pending pods, connections per
// pod and replicas every two seconds.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/autoscaler"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/loadgen"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/sandbox"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/timeline"
)

const (
	group     = "demo"
	namespace = "default"
	app       = "web"
	port      = 8080
)

func main() {
	out := flag.String("out", "_output/demo-timeline.svg", "where the timeline chart is written")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type demo struct {
	w      *framework.World
	ctx    context.Context
	rec    *timeline.Recorder
	load   *loadgen.Holder
	target int // total connections the load generator holds
	scaler *autoscaler.Scaler
}

func run(out string) error {
	w, err := framework.Open()
	if err != nil {
		return err
	}
	d := &demo{w: w, ctx: context.Background(), load: &loadgen.Holder{Source: w.Env["OSA_WORLD_HOST_IP"]},
		rec: timeline.New("servers", "nodes ready", "pending pods", "connections/pod", "replicas")}
	// Connections (0–30) and counts (0–6) on axes of their own; the HPA's target as a line.
	d.rec.Panels = []timeline.Panel{
		{Title: "tcp_connections per pod", Series: []int{3}, Lines: []timeline.Line{{Value: 10, Label: "HPA target"}}},
		{Title: "replicas, pending pods, servers and nodes", Series: []int{4, 2, 0, 1}},
	}
	defer d.load.CloseAll()
	cfg := fmt.Sprintf("clusterName: %s\nnodeGroups:\n- {name: %s, labels: {demo: \"true\"}}\n", w.Cluster, group)
	// The registrar (standing in for cloud-init and the kubelet) learns the group's labels.
	if err := os.WriteFile(w.Env["OSA_WORLD_NODE_GROUPS"], []byte(cfg), 0o644); err != nil {
		return err
	}
	stopProvider, client, providerMetrics, err := startProvider(w)
	if err != nil {
		return err
	}
	defer stopProvider()
	d.scaler = &autoscaler.Scaler{Driver: &autoscaler.Driver{Client: client, Kube: w.Kube}, Group: group, UnneededTime: 10 * time.Second}
	defer d.cleanup()
	if err := os.MkdirAll("_output/demo-metrics", 0o755); err != nil {
		return err
	}
	metrics, err := framework.StartConnectionMetrics(w, "_output/bin", "_output/demo-metrics", "10s")
	if err != nil {
		return fmt.Errorf("starting the connection metrics: %w", err)
	}
	defer metrics.Stop()
	fmt.Println("connection-agent and connection-metrics-adapter running (logs in _output/demo-metrics/)")

	fmt.Println("What to type in another shell to watch:")
	fmt.Printf("  . %s; kubectl get nodes,pods -o wide -w\n", framework.EnvFile())
	fmt.Printf("  . %s; kubectl describe hpa web      # \"tcp_connections\" on pods: <current> / 10\n", framework.EnvFile())
	fmt.Printf("  curl -s %s | grep openstack_autoscaler_group   # the provider's view, from its pod\n\n", providerMetrics)
	fmt.Println(d.rec.Header())

	step := func(text string) {
		if d.rec.Len() > 0 {
			d.hold(10 * time.Second) // each state stays a while, so the chart shows it
		}
		d.rec.Event(text)
		fmt.Printf("-- %s\n", text)
	}
	step("deploy web (2 replicas of 1 CPU) with an HPA on tcp_connections: 10 per pod")
	if err := d.deploy(2); err != nil {
		return err
	}
	if err := d.hpa(); err != nil {
		return err
	}
	if err := d.until(120*time.Second, func() bool { return len(d.webPods(true)) == 2 }); err != nil {
		return fmt.Errorf("the group did not grow for the pending pods: %w", err)
	}
	step("load: 60 connections")
	d.target = 60
	if err := d.until(240*time.Second, func() bool {
		c := d.connectionsPerPod()
		return d.replicas() == 6 && len(d.webPods(true)) == 6 && c > 9 && c < 11
	}); err != nil {
		return fmt.Errorf("the HPA and the node group did not follow the load: %w", err)
	}
	step("load ends")
	d.target = 0
	// Back to 2 replicas; the nodes left empty go (this stand-in removes empty nodes only; the
	// real cluster-autoscaler also moves pods to empty under-used nodes).
	if err := d.until(240*time.Second, func() bool {
		return d.replicas() == 2 && len(d.webPods(true)) == 2 && d.servers() == d.nodesWithWeb()
	}); err != nil {
		return fmt.Errorf("replicas and nodes did not come back down: %w", err)
	}
	step("delete web")
	_ = w.Kube.AutoscalingV2().HorizontalPodAutoscalers(namespace).Delete(d.ctx, app, metav1.DeleteOptions{})
	_ = w.Kube.AppsV1().Deployments(namespace).Delete(d.ctx, app, metav1.DeleteOptions{})
	if err := d.until(120*time.Second, func() bool { return d.servers() == 0 && d.readyNodes() == 0 }); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := d.rec.SVG(f, "openstack-autoscaler demo: an HPA on TCP connections, and the Nova node group under it"); err != nil {
		return err
	}
	fmt.Printf("\ntimeline chart: %s\n", out)
	return nil
}

// until samples every 2 s (printing a table row, keeping the load generator in step) until cond
// holds or timeout passes.
func (d *demo) until(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		pods := d.webPods(true)
		var targets []string
		for _, p := range pods {
			targets = append(targets, fmt.Sprintf("%s:%d", p.Status.PodIP, port))
		}
		if len(targets) > 0 {
			_ = d.load.Spread(d.ctx, targets, d.target)
		}
		if did, err := d.scaler.Step(d.ctx); err != nil {
			fmt.Printf("   autoscaler loop: %v\n", err)
		} else if did != "" {
			d.rec.Event(did)
			fmt.Printf("   autoscaler: %s\n", did)
		}
		d.rec.Add(float64(d.servers()), float64(d.readyNodes()), float64(d.pending()), d.connectionsPerPod(), float64(d.replicas()))
		fmt.Println(d.rec.Row())
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not reached within %s", timeout)
		}
		time.Sleep(2 * time.Second)
	}
}

// hold keeps sampling for a while.
func (d *demo) hold(duration time.Duration) {
	end := time.Now().Add(duration)
	_ = d.until(duration+time.Second, func() bool { return time.Now().After(end) })
}

func (d *demo) servers() int {
	list, err := d.w.GroupServers(d.ctx, group)
	if err != nil {
		return -1
	}
	return len(list)
}

func (d *demo) readyNodes() int {
	nodes, err := d.w.Kube.CoreV1().Nodes().List(d.ctx, metav1.ListOptions{LabelSelector: membership.NodeGroupLabel + "=" + group})
	if err != nil {
		return -1
	}
	n := 0
	for _, node := range nodes.Items {
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n
}

func (d *demo) webPods(runningOnly bool) []corev1.Pod {
	pods, err := d.w.Kube.CoreV1().Pods(namespace).List(d.ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if !runningOnly || (p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.DeletionTimestamp == nil) {
			out = append(out, p)
		}
	}
	return out
}

// nodesWithWeb counts the nodes running web pods.
func (d *demo) nodesWithWeb() int {
	nodes := map[string]bool{}
	for _, p := range d.webPods(true) {
		nodes[p.Spec.NodeName] = true
	}
	return len(nodes)
}

func (d *demo) pending() int {
	n := 0
	for _, p := range d.webPods(false) {
		if p.Status.Phase == corev1.PodPending {
			n++
		}
	}
	return n
}

// connectionsPerPod is the average of ESTABLISHED sockets on the app port read inside each pod's
// own network namespace.
func (d *demo) connectionsPerPod() float64 {
	pods := d.webPods(true)
	total, counted := 0, 0
	for _, p := range pods {
		pids := framework.PodPIDs(string(p.UID))
		if len(pids) == 0 {
			continue
		}
		byPort, err := framework.EstablishedByLocalPort(pids[0])
		if err != nil {
			continue
		}
		total += byPort[port]
		counted++
	}
	if counted == 0 {
		return math.NaN()
	}
	return float64(total) / float64(counted)
}

func (d *demo) replicas() int {
	dep, err := d.w.Kube.AppsV1().Deployments(namespace).Get(d.ctx, app, metav1.GetOptions{})
	if err != nil {
		return 0
	}
	return int(dep.Status.Replicas)
}

func (d *demo) deploy(replicas int32) error {
	labels := map[string]string{"app": app}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: namespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{sandbox.PortsAnnotation: strconv.Itoa(port)}},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{membership.NodeGroupLabel: group},
					Containers: []corev1.Container{{Name: "web", Image: "registry.invalid/web:1",
						Ports: []corev1.ContainerPort{{ContainerPort: port}},
						// One core each: an m1.small node (2 cores) holds two.
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("512Mi")}}}},
				},
			},
		},
	}
	_, err := d.w.Kube.AppsV1().Deployments(namespace).Create(d.ctx, dep, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return d.scale(replicas)
	}
	return err
}

// hpa scales web between 2 and 8 replicas to hold 10 connections per pod.
func (d *demo) hpa() error {
	minReplicas, target, scaleDownWindow := int32(2), resource.MustParse("10"), int32(15)
	h := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: namespace},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: app},
			MinReplicas:    &minReplicas, MaxReplicas: 8,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
				Metric: autoscalingv2.MetricIdentifier{Name: "tcp_connections"},
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: &target}}}},
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: &scaleDownWindow}},
		},
	}
	_, err := d.w.Kube.AutoscalingV2().HorizontalPodAutoscalers(namespace).Create(d.ctx, h, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func (d *demo) scale(replicas int32) error {
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	_, err := d.w.Kube.AppsV1().Deployments(namespace).Patch(d.ctx, app, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// cleanup removes what the demo made if it stopped half way: the Deployment, then the group's
// servers (only those tagged as the demo group's members).
func (d *demo) cleanup() {
	ctx := context.Background()
	_ = d.w.Kube.AutoscalingV2().HorizontalPodAutoscalers(namespace).Delete(ctx, app, metav1.DeleteOptions{})
	_ = d.w.Kube.AppsV1().Deployments(namespace).Delete(ctx, app, metav1.DeleteOptions{})
	list, _ := d.w.GroupServers(ctx, group)
	for _, s := range list {
		_ = servers.Delete(ctx, d.w.Project.Compute, s.ID).ExtractErr()
	}
}

// The chart's release of openstack-provider for the demo, alone on the real node.
const providerRelease, providerNamespace = "osa-demo", "osa-demo"

// startProvider installs the chart with openstack-provider alone on the world's real node (a
// real container, reaching OpenStack through the catalog's internal endpoints), serving the
// demo's node group, and connects to it at its pod IP with the chart's client certificate, as a
// cluster-autoscaler installed elsewhere would. stop uninstalls it.
func startProvider(w *framework.World) (stop func(), client pb.CloudProviderClient, metricsURL string, err error) {
	helm, err := framework.HelmPath()
	if err != nil {
		return nil, nil, "", err
	}
	_, _ = w.Helm(helm, "uninstall", providerRelease, "-n", providerNamespace, "--wait") // what an interrupted demo left
	p, err := framework.InstallProviderPod(w, helm, providerRelease, providerNamespace, []any{map[string]any{
		"name": group, "backend": "nova", "minSize": 0, "maxSize": 5,
		"labels": map[string]any{"demo": "true"},
		"nova":   map[string]any{"flavor": "m1.small", "image": "world-node-image"},
	}})
	if err != nil {
		return nil, nil, "", fmt.Errorf("installing openstack-provider on the real node: %w", err)
	}
	uninstall := func() {
		if err := p.Uninstall(w, helm); err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
		}
	}
	client, conn, err := p.Client()
	if err != nil {
		uninstall()
		return nil, nil, "", err
	}
	fmt.Printf("openstack-provider running in pod %s/%s on the real node %s (gRPC with mutual TLS at %s:8086; logs: kubectl -n %s logs %s)\n",
		providerNamespace, p.Pod.Name, p.Pod.Spec.NodeName, p.Pod.Status.PodIP, providerNamespace, p.Pod.Name)
	return func() { conn.Close(); uninstall() }, client, "http://" + p.Pod.Status.PodIP + ":8087/metrics", nil
}
