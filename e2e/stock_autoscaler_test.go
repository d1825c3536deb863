//go:build e2e

package e2e

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

// With CLUSTER_AUTOSCALER_BIN naming a stock cluster-autoscaler binary, the real autoscaler
// drives the provider over mutual TLS: pending pods become servers and nodes, and when the pods
// go, the empty nodes are drained and exactly their servers deleted. Getting the binary is the
// operator's business; without it the test is skipped (e2e/autoscaler's driver covers the calls).
func TestStockClusterAutoscalerScalesANovaGroup(t *testing.T) {
	bin := stockAutoscaler(t)
	const group = "ca-stock"
	w := framework.Connect(t)
	cfg := novaConfig(w, group, 0, 4)
	w.SetNodeGroups(t, cfg)
	cleanupGroupServers(t, w, group)
	runStockAutoscaler(t, w, bin, group, cfg)
}

// The same with a Heat ResourceGroup stack: the count grows, and the removed members are named.
func TestStockClusterAutoscalerScalesAHeatGroup(t *testing.T) {
	bin := stockAutoscaler(t)
	const group = "ca-stock-heat"
	w := framework.Connect(t)
	w.SetNodeGroups(t, fmt.Sprintf("clusterName: %s\nnodeGroups:\n- name: %s\n", w.Cluster, group))
	createNodeGroupStack(t, w, group, 0, nil)
	runStockAutoscaler(t, w, bin, group, heatConfig(w, group, 0, 4))
}

// stockAutoscalerBin is the stock cluster-autoscaler binary named by CLUSTER_AUTOSCALER_BIN, or "".
func stockAutoscalerBin() string { return os.Getenv("CLUSTER_AUTOSCALER_BIN") }

// stockAutoscaler skips the test when there is no stock cluster-autoscaler binary.
func stockAutoscaler(t *testing.T) string {
	bin := stockAutoscalerBin()
	if bin == "" {
		t.Skip("CLUSTER_AUTOSCALER_BIN is not set: no stock cluster-autoscaler binary to run")
	}
	return bin
}

// runStockAutoscaler runs the provider with cfg and the autoscaler bin against it, and has 4
// one-core pods come and go on group (empty, of 2-core servers).
func runStockAutoscaler(t *testing.T, w *framework.World, bin, group, cfg string) {
	serverPKI, clientPKI := framework.NewPKI(t, "provider-ca"), framework.NewPKI(t, "autoscaler-ca")
	serverCert, serverKey := serverPKI.Issue(t, "openstack-provider", x509.ExtKeyUsageServerAuth, nil)
	clientCert, clientKey := clientPKI.Issue(t, "cluster-autoscaler", x509.ExtKeyUsageClientAuth, nil)
	p := framework.StartProvider(t, cfg, "--tls-cert", serverCert, "--tls-key", serverKey, "--tls-client-ca", clientPKI.CAFile)

	cloudConfig := filepath.Join(t.TempDir(), "cloud-config.yaml")
	text := fmt.Sprintf("address: %s\ncert: %s\nkey: %s\ncacert: %s\ngrpc_timeout: 5s\n", p.Addr, clientCert, clientKey, serverPKI.CAFile)
	if err := os.WriteFile(cloudConfig, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	_, caLog := framework.StartLogged(t, "cluster-autoscaler", bin, "--cloud-provider=externalgrpc", "--cloud-config="+cloudConfig,
		"--kubeconfig="+w.Env["KUBECONFIG"], "--leader-elect=false", "--scan-interval=5s", "--expander=least-waste",
		"--scale-down-unneeded-time=20s", "--scale-down-delay-after-add=20s", "--scale-down-delay-after-delete=5s",
		"--max-node-provision-time=5m", "--skip-nodes-with-local-storage=false", "--skip-nodes-with-system-pods=false",
		"--max-node-startup-time=15m", "--v=5")

	podsComeAndGo(t, w, group, "cluster-autoscaler")

	// What the autoscaler itself says: one scale-up of the group by 2, both empty nodes removed,
	// and every instance it saw before its node registered attributed to the group (it asks
	// NodeGroupForNode with the instance id as providerID; without an answer it neither counts
	// them nor removes those that never register).
	b, err := os.ReadFile(caLog)
	if err != nil {
		t.Fatal(err)
	}
	said := string(b)
	for _, want := range []string{"Scale-up: setting group " + group + " size to 2", `Scale-down: removing empty node "`} {
		if !strings.Contains(said, want) {
			t.Errorf("cluster-autoscaler's log does not say %q", want)
		}
	}
	// The group sets no options, so the provider answers none and the autoscaler keeps its own
	// --max-node-startup-time for the group's nodes (with any answer, 1.36's client would use 0:
	// its nodes would count as unready until Ready).
	if !strings.Contains(said, "using maxNodeStartupTime = 15m0s") || strings.Contains(said, "using maxNodeStartupTime = 0s") {
		t.Errorf("cluster-autoscaler does not keep --max-node-startup-time (15m) for the group's nodes: its log says %q",
			lineWith(said, "using maxNodeStartupTime"))
	}
	// A server deleted a moment ago may still be in the autoscaler's instance cache, and is then
	// rightly no longer any group's; an instance that has no server yet must always be found.
	for _, line := range strings.Split(said, "\n") {
		unattributed := strings.Contains(line, "No node group for node") || strings.Contains(line, "Nodegroup is nil for")
		if unattributed && !strings.Contains(line, membership.ProviderIDPrefix) ||
			strings.Contains(line, "Failed to get node group") || strings.Contains(line, "rpc error") {
			t.Errorf("cluster-autoscaler's log: %s", line)
		}
	}
}

// lineWith is the first line of text holding substr ("" if none).
func lineWith(text, substr string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, substr) {
			return line
		}
	}
	return ""
}

// podsComeAndGo has 4 one-core pods come (pending until nodes of group, 2-core m1.small, join:
// 2 nodes) and go (the empty nodes and exactly their servers removed), as an autoscaler driving
// the group must make it happen; who names the autoscaler in the log.
func podsComeAndGo(t *testing.T, w *framework.World, group, who string) {
	t.Helper()
	ctx := context.Background()
	dep := cpuDeployment(group+"-app", group, 4)
	if _, err := w.Kube.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Kube.AppsV1().Deployments("default").Delete(context.Background(), dep.Name, metav1.DeleteOptions{})
	})
	took := framework.Eventually(t, 5*time.Minute, 2*time.Second, "4 pending pods running on new nodes", func() (bool, error) {
		running := 0
		for _, pod := range podsOf(t, w, dep.Name) {
			if pod.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == 4, fmt.Errorf("%d running, %d nodes", running, len(groupNodes(t, w, group)))
	})
	nodes := groupNodes(t, w, group)
	t.Logf("%s: 4 pending pods → %d nodes, all running, in %s", who, len(nodes), took.Round(time.Second))
	if len(nodes) != 2 {
		t.Errorf("%d nodes for 4 one-core pods on 2-core m1.small, want 2", len(nodes))
	}
	if _, err := w.Kube.AppsV1().Deployments("default").Patch(ctx, dep.Name, types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	took = framework.Eventually(t, 5*time.Minute, 2*time.Second, "the group's servers deleted", func() (bool, error) {
		left := groupServers(t, w, group)
		return len(left) == 0, fmt.Errorf("%d servers left", len(left))
	})
	t.Logf("%s: empty nodes removed, servers deleted in %s", who, took.Round(time.Second))
}
