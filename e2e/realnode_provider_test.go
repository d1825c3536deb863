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

	corev1 "k8s.io/api/core/v1"

	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/autoscaler"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

// The chart's openstack-provider runs alone (nodeAutoscaling.providerOnly: the stock
// cluster-autoscaler image cannot be had here) in a real container on the real node: with the
// chart's ServiceAccount, certificates and probes, and its credentials from an existing
// openstack-cloud-controller-manager Secret (cloud.conf, no clouds.yaml), it becomes Ready (it
// reached OpenStack through the catalog's internal endpoints), answers over mutual TLS at its pod IP
// only a client holding the chart's client certificate, and grows and shrinks a Nova group for
// that client: the server it creates becomes a node, and the node it is told to delete goes.
func TestProviderRunsOnTheRealNode(t *testing.T) {
	w := framework.Connect(t)
	node := framework.RealNode(t, w)
	helm := framework.HelmBinary(t)
	ctx := context.Background()
	const rel, ns, group = "osa-prov", "osa-provider-e2e", "real-pod-nova"
	testNamespace(t, w, ns)
	cleanupGroupServers(t, w, group)
	w.SetNodeGroups(t, fmt.Sprintf("clusterName: %s\nnodeGroups:\n- name: %s\n", w.Cluster, group))
	t.Cleanup(func() { _, _ = helmRun(w, helm, "uninstall", rel, "-n", ns, "--wait", "--timeout", "2m") })
	logNamespaceOnFailure(t, w, ns, "cluster-autoscaler")
	start := time.Now()
	p, err := framework.InstallProviderPod(w, helm, rel, ns, []any{map[string]any{
		"name": group, "backend": "nova", "minSize": 0, "maxSize": 2,
		"labels": map[string]any{"e2e-group": group},
		"nova":   map[string]any{"flavor": "m1.small", "image": "world-node-image"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("helm install --wait of the provider alone on the real node: %s", time.Since(start).Round(time.Second))

	pod := p.Pod
	if pod.Spec.NodeName != node.Name || !podReady(pod) || pod.Spec.ServiceAccountName != p.Name {
		t.Fatalf("provider pod %s: node %s, ready %v, service account %s; want the real node, Ready, %s",
			pod.Name, pod.Spec.NodeName, podReady(pod), pod.Spec.ServiceAccountName, p.Name)
	}
	if len(pod.Status.ContainerStatuses) != 1 {
		t.Fatalf("provider pod containers %+v, want openstack-provider alone", pod.Status.ContainerStatuses)
	}
	if c := pod.Status.ContainerStatuses[0]; c.Name != "openstack-provider" || !strings.HasPrefix(c.ContainerID, "containerd://") ||
		!strings.HasPrefix(c.Image, "ghcr.io/openstack-autoscaler/openstack-provider") {
		t.Fatalf("container %s: id %q image %q, want a containerd container of the product's openstack-provider image", c.Name, c.ContainerID, c.Image)
	}
	httpGet(t, "http://"+net.JoinHostPort(pod.Status.PodIP, "8087")+"/readyz") // 200, or the test fails

	stranger, err := p.Dial(false)
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = pb.NewCloudProviderClient(stranger).NodeGroups(callCtx, &pb.NodeGroupsRequest{})
	cancel()
	if err == nil {
		t.Fatal("a client without the chart's client certificate got an answer from the provider pod")
	}
	client, conn, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d := &autoscaler.Driver{Client: client, Kube: w.Kube, Timeout: 10 * time.Second}
	framework.Eventually(t, 30*time.Second, time.Second, "the pod serves its node group over mutual TLS", func() (bool, error) {
		loop, err := d.RunLoop(ctx)
		if err != nil {
			return false, err
		}
		_, ok := loop.Groups[group]
		return ok, fmt.Errorf("groups %v", loop.Groups)
	})

	// The group grows by one for this client: the pod creates the server through the internal
	// endpoints, and it becomes a node.
	if err := d.IncreaseSize(ctx, group, 1); err != nil {
		t.Fatal(err)
	}
	var joined corev1.Node
	took := framework.Eventually(t, 120*time.Second, 2*time.Second, "the new server's node Ready", func() (bool, error) {
		nodes := groupNodes(t, w, group)
		if len(nodes) == 1 {
			joined = nodes[0]
		}
		return len(nodes) == 1, fmt.Errorf("%d nodes", len(nodes))
	})
	t.Logf("IncreaseSize through the pod → node %s Ready in %s", joined.Name, took.Round(time.Second))
	framework.Eventually(t, 30*time.Second, time.Second, "the pod maps the node to its group", func() (bool, error) {
		loop, err := d.RunLoop(ctx)
		return err == nil && loop.NodeToGroup[joined.Name] == group, err
	})
	if err := d.DeleteNodes(ctx, group, joined); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 120*time.Second, 2*time.Second, "the deleted node's server gone", func() (bool, error) {
		left := groupServers(t, w, group)
		return len(left) == 0, fmt.Errorf("%d servers", len(left))
	})
	if size, err := d.TargetSize(ctx, group); err != nil || size != 0 {
		t.Errorf("target size %d (%v), want 0", size, err)
	}
	// What the pod served, on its /metrics: its build, and the calls by method and code.
	metrics := httpGet(t, "http://"+net.JoinHostPort(pod.Status.PodIP, "8087")+"/metrics")
	for _, want := range []string{"openstack_autoscaler_build_info{", `grpc_server_handled_total{grpc_code="OK",grpc_method="NodeGroupIncreaseSize"`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="NodeGroupDeleteNodes"`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("the provider pod's /metrics lacks %s", want)
		}
	}
}

// With OSA_CLUSTER_AUTOSCALER_IMAGE naming an image tarball of the stock cluster-autoscaler
// (docker save or an OCI archive; no registry can be reached here), the chart's whole node
// autoscaling pod runs on the real node as installed: cluster-autoscaler beside the provider's
// native sidecar, over the chart's mutual TLS on 127.0.0.1. Pending pods grow a Nova group and,
// once they go, the empty nodes are removed with exactly their servers. The image reference is
// the chart's default unless OSA_CLUSTER_AUTOSCALER_IMAGE_REF says otherwise. Without the
// tarball (as in CI) the test is skipped: TestProviderRunsOnTheRealNode runs the provider's pod.
func TestChartAutoscalerPodScalesANovaGroup(t *testing.T) {
	tarball := os.Getenv("OSA_CLUSTER_AUTOSCALER_IMAGE")
	if tarball == "" {
		t.Skip("OSA_CLUSTER_AUTOSCALER_IMAGE is not set: no stock cluster-autoscaler image to run")
	}
	ref := os.Getenv("OSA_CLUSTER_AUTOSCALER_IMAGE_REF")
	if ref == "" {
		ref = "registry.k8s.io/autoscaling/cluster-autoscaler:v1.36.1"
	}
	repo, tag, ok := strings.Cut(ref, ":")
	if !ok || strings.Contains(tag, "/") {
		t.Fatalf("OSA_CLUSTER_AUTOSCALER_IMAGE_REF %q: want repository:tag", ref)
	}
	w := framework.Connect(t)
	framework.RealNode(t, w)
	if out, err := exec.Command(filepath.Join("..", "e2e", "world", "realnode.sh"), "import", tarball).CombinedOutput(); err != nil {
		t.Fatalf("importing %s: %v\n%s", tarball, err, out)
	}
	helm := framework.HelmBinary(t)
	const rel, ns, group = "osa-ca", "osa-ca-e2e", "ca-pod"
	testNamespace(t, w, ns)
	cleanupGroupServers(t, w, group)
	w.SetNodeGroups(t, novaConfig(w, group, 0, 4))
	t.Cleanup(func() { _, _ = helmRun(w, helm, "uninstall", rel, "-n", ns, "--wait", "--timeout", "2m") })
	logNamespaceOnFailure(t, w, ns, "cluster-autoscaler")
	values, err := framework.NodeAutoscalingValues(w, []any{map[string]any{
		"name": group, "backend": "nova", "minSize": 0, "maxSize": 4, "labels": map[string]any{"e2e-group": group},
		"nova": map[string]any{"flavor": "m1.small", "image": "world-node-image"},
	}}, false)
	if err != nil {
		t.Fatal(err)
	}
	na := values["nodeAutoscaling"].(map[string]any)
	na["image"] = map[string]any{"repository": repo, "tag": tag, "pullPolicy": "Never"}
	na["scaleDownUnneededTime"], na["scaleDownDelayAfterAdd"] = "20s", "20s"
	na["extraArgs"] = map[string]any{"scan-interval": "5s", "scale-down-delay-after-delete": "5s", "skip-nodes-with-system-pods": "false"}
	start := time.Now()
	if err := framework.InstallChart(w, helm, rel, ns, values); err != nil {
		t.Fatal(err)
	}
	t.Logf("helm install --wait of the whole node autoscaling pod on the real node: %s", time.Since(start).Round(time.Second))

	podsComeAndGo(t, w, group, "the chart's cluster-autoscaler pod")
	said := kubectl(t, w, "logs", "-n", ns, "--all-containers", "--prefix", "--tail=-1", "-l", "app.kubernetes.io/component=cluster-autoscaler")
	for _, want := range []string{"Scale-up: setting group " + group + " size to 2", `Scale-down: removing empty node "`} {
		if !strings.Contains(said, want) {
			t.Errorf("cluster-autoscaler's log does not say %q", want)
		}
	}
}
