// Command demo shows the local world at work and leaves a timeline chart in _output/.
//
// The scenario plays what the product automates: servers of a node group are booted in Nova and
// become nodes; a web Deployment whose pods have real network namespaces takes real TCP
// connections from a load generator; replicas change and the connections spread; the load ends
// and the servers go. A live table shows servers, nodes, pending pods, connections per pod and
// replicas every two seconds.
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
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
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
}

func run(out string) error {
	w, err := framework.Open()
	if err != nil {
		return err
	}
	d := &demo{w: w, ctx: context.Background(), load: &loadgen.Holder{Source: w.Env["OSA_WORLD_HOST_IP"]},
		rec: timeline.New("servers", "nodes ready", "pending pods", "connections/pod", "replicas")}
	defer d.load.CloseAll()
	groups := fmt.Sprintf("clusterName: %s\nnodeGroups:\n- name: %s\n  labels: {demo: \"true\"}\n", w.Cluster, group)
	if err := os.WriteFile(w.Env["OSA_WORLD_NODE_GROUPS"], []byte(groups), 0o644); err != nil {
		return err
	}
	fmt.Println("What to type in another shell to watch:")
	fmt.Printf("  . %s; kubectl get nodes,pods -o wide -w\n", framework.EnvFile())
	fmt.Printf("  . %s; openstack --os-cloud world server list   (needs python3-openstackclient)\n\n", framework.EnvFile())
	fmt.Println(d.rec.Header())

	step := func(text string) {
		if d.rec.Len() > 0 {
			d.hold(10 * time.Second) // each state stays a while, so the chart shows it
		}
		d.rec.Event(text)
		fmt.Printf("-- %s\n", text)
	}
	step("boot 2 servers of group demo")
	var ids []string
	for i := 0; i < 2; i++ {
		s, err := servers.Create(d.ctx, w.Project.Compute, servers.CreateOpts{
			Name: fmt.Sprintf("%s-%s-%d", w.Cluster, group, i), ImageRef: w.Seed.ImageID, FlavorRef: w.Seed.Flavors["m1.small"],
			Networks: "none", Metadata: membership.Metadata(w.Cluster, group),
		}, nil).Extract()
		if err != nil {
			return fmt.Errorf("booting a server: %w", err)
		}
		ids = append(ids, s.ID)
	}
	defer func() {
		for _, id := range ids {
			_ = servers.Delete(context.Background(), w.Project.Compute, id).ExtractErr()
		}
	}()
	if err := d.until(90*time.Second, func() bool { return d.readyNodes() == 2 }); err != nil {
		return fmt.Errorf("servers did not become nodes: %w", err)
	}

	step("deploy web (2 replicas, real sockets)")
	if err := d.deploy(2); err != nil {
		return err
	}
	defer func() {
		_ = w.Kube.AppsV1().Deployments(namespace).Delete(context.Background(), app, metav1.DeleteOptions{})
	}()
	if err := d.until(60*time.Second, func() bool { return len(d.webPods(true)) == 2 }); err != nil {
		return err
	}
	step("load: 40 connections")
	d.target = 40
	_ = d.until(20*time.Second, func() bool { return d.connectionsPerPod() >= 19 })
	step("scale web to 4 replicas")
	if err := d.scale(4); err != nil {
		return err
	}
	_ = d.until(60*time.Second, func() bool { c := d.connectionsPerPod(); return len(d.webPods(true)) == 4 && c > 9 && c < 11 })
	step("load ends")
	d.target = 0
	_ = d.until(20*time.Second, func() bool { return d.connectionsPerPod() == 0 })
	step("delete web and the servers")
	_ = w.Kube.AppsV1().Deployments(namespace).Delete(d.ctx, app, metav1.DeleteOptions{})
	for _, id := range ids {
		if err := servers.Delete(d.ctx, w.Project.Compute, id).ExtractErr(); err != nil {
			return err
		}
	}
	ids = nil
	if err := d.until(90*time.Second, func() bool { return d.servers() == 0 && d.readyNodes() == 0 }); err != nil {
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
	if err := d.rec.SVG(f, "openstack-autoscaler demo: the local world"); err != nil {
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
	pages, err := servers.List(d.w.Project.Compute, servers.ListOpts{}).AllPages(d.ctx)
	if err != nil {
		return -1
	}
	all, _ := servers.ExtractServers(pages)
	n := 0
	for _, s := range all {
		if g, ok := membership.Of(s.Metadata, d.w.Cluster); ok && g == group {
			n++
		}
	}
	return n
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
					Containers:   []corev1.Container{{Name: "web", Image: "registry.invalid/web:1", Ports: []corev1.ContainerPort{{ContainerPort: port}}}},
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

func (d *demo) scale(replicas int32) error {
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	_, err := d.w.Kube.AppsV1().Deployments(namespace).Patch(d.ctx, app, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}
