//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/quotasets"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/autoscaler"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

// novaConfig is a provider config with one nova group in the world.
func novaConfig(w *framework.World, group string, minSize, maxSize int) string {
	return fmt.Sprintf(`cloud: {cloudsFile: %s, name: world}
clusterName: %s
refreshInterval: 2s
nodeGroups:
- name: %s
  backend: nova
  minSize: %d
  maxSize: %d
  labels: {e2e-group: %s}
  nova:
    flavor: m1.small
    image: world-node-image
    userData: |
      #cloud-config
      # node of {{ .ClusterName }}/{{ .NodeGroup }}: {{ .ServerName }}
`, w.Env["OS_CLIENT_CONFIG_FILE"], w.Cluster, group, minSize, maxSize, group)
}

// novaGroupUnderTest starts a provider with one nova group that the registrar knows, and removes
// the group's servers when the test ends.
func novaGroupUnderTest(t *testing.T, group string, minSize, maxSize int) (*framework.World, *framework.Provider, *autoscaler.Driver) {
	t.Helper()
	w := framework.Connect(t)
	cfg := novaConfig(w, group, minSize, maxSize)
	w.SetNodeGroups(t, cfg)
	cleanupGroupServers(t, w, group)
	p := framework.StartProvider(t, cfg)
	return w, p, &autoscaler.Driver{Client: p.Client, Kube: w.Kube}
}

// groupServers lists the group's servers in the project, straight from Nova.
func groupServers(t *testing.T, w *framework.World, group string) []servers.Server {
	t.Helper()
	list, err := w.GroupServers(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// cleanupGroupServers deletes the group's servers now (a run that was killed may have left some)
// and again when the test ends, and waits for them to go.
func cleanupGroupServers(t *testing.T, w *framework.World, group string) {
	removeGroupServers(t, w, group)
	t.Cleanup(func() { removeGroupServers(t, w, group) })
}

// bootMemberServer creates an m1.small server carrying the group's membership metadata (the
// world's registrar makes it a Node named after it) and deletes it when the test ends.
func bootMemberServer(t *testing.T, w *framework.World, name, group string) *servers.Server {
	t.Helper()
	server, err := servers.Create(context.Background(), w.Project.Compute, servers.CreateOpts{
		Name: name, ImageRef: w.Seed.ImageID, FlavorRef: w.Seed.Flavors["m1.small"],
		Networks: "none", Metadata: membership.Metadata(w.Cluster, group),
	}, nil).Extract()
	if err != nil {
		t.Fatalf("creating server %s: %v", name, err)
	}
	t.Cleanup(func() { _ = servers.Delete(context.Background(), w.Project.Compute, server.ID).ExtractErr() })
	return server
}

// removeGroupServers deletes the group's servers and waits for them to go.
func removeGroupServers(t *testing.T, w *framework.World, group string) {
	for _, s := range groupServers(t, w, group) {
		_ = servers.Delete(context.Background(), w.Project.Compute, s.ID).ExtractErr()
	}
	framework.Eventually(t, 90*time.Second, time.Second, "servers of "+group+" gone", func() (bool, error) {
		left := groupServers(t, w, group)
		return len(left) == 0, fmt.Errorf("%d left", len(left))
	})
}

func groupNodes(t *testing.T, w *framework.World, group string) []corev1.Node {
	t.Helper()
	nodes, err := w.Kube.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: membership.NodeGroupLabel + "=" + group})
	if err != nil {
		t.Fatal(err)
	}
	var ready []corev1.Node
	for _, n := range nodes.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = append(ready, n)
			}
		}
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].Name < ready[j].Name })
	return ready
}

func cpuDeployment(name, group string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{membership.NodeGroupLabel: group},
					Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1",
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}}}},
				},
			},
		},
	}
}

func podsOf(t *testing.T, w *framework.World, app string) []corev1.Pod {
	t.Helper()
	pods, err := w.Kube.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	var live []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	return live
}

// Pending pods grow a Nova group from 0 to 3; removing two named nodes deletes exactly their
// servers and leaves the third.
func TestNovaGroupGrowsForPendingPodsAndRemovesNamedNodes(t *testing.T) {
	const group = "nova-e2e"
	w, p, d := novaGroupUnderTest(t, group, 0, 5)
	ctx := context.Background()

	loop, err := d.RunLoop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g := loop.Groups[group]; g == nil || g.MinSize != 0 || g.MaxSize != 5 {
		t.Fatalf("NodeGroups = %v, want %s with min 0 max 5", loop.Groups, group)
	}
	for node, g := range loop.NodeToGroup {
		if g != "" {
			t.Errorf("node %s reported in group %q before the group has members", node, g)
		}
	}

	// Six pods of 1 CPU each; an m1.small node (2 cores) takes two: three nodes are needed.
	dep := cpuDeployment("nova-e2e-app", group, 6)
	if _, err := w.Kube.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Kube.AppsV1().Deployments("default").Delete(context.Background(), dep.Name, metav1.DeleteOptions{})
	})
	framework.Eventually(t, 30*time.Second, 500*time.Millisecond, "6 pending pods", func() (bool, error) {
		return len(podsOf(t, w, dep.Name)) == 6, nil
	})
	template, err := d.Template(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if cpu := template.Status.Allocatable.Cpu(); cpu.Cmp(resource.MustParse("2")) != 0 {
		t.Errorf("template allocatable cpu = %s, want 2 (m1.small)", cpu)
	}
	if template.Labels["e2e-group"] != group || template.Labels[membership.NodeGroupLabel] != group {
		t.Errorf("template labels = %v", template.Labels)
	}
	need := autoscaler.NodesFor(template, podsOf(t, w, dep.Name))
	if need != 3 {
		t.Fatalf("scale-up simulation: %d nodes for 6 one-core pods, want 3", need)
	}
	start := time.Now()
	if err := d.IncreaseSize(ctx, group, need); err != nil {
		t.Fatal(err)
	}
	// IncreaseSize answers once Nova accepted the servers (so a restart cannot lose them),
	// within the autoscaler's 5 s gRPC timeout (or answers an error and makes nothing).
	answered := time.Since(start)
	if answered > 4*time.Second {
		t.Errorf("IncreaseSize took %s: it must answer within the autoscaler's gRPC timeout", answered)
	}
	t.Logf("IncreaseSize(3) answered in %s, with %d of the servers accepted by Nova", answered.Round(time.Millisecond), len(groupServers(t, w, group)))
	if size, _ := d.TargetSize(ctx, group); size != 3 {
		t.Errorf("target size right after IncreaseSize(3) = %d, want 3", size)
	}
	if err := d.IncreaseSize(ctx, group, 3); err == nil {
		t.Error("IncreaseSize beyond maxSize 5 was accepted")
	}
	took := framework.Eventually(t, 120*time.Second, time.Second, "3 ready nodes and 6 running pods", func() (bool, error) {
		running := 0
		for _, p := range podsOf(t, w, dep.Name) {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		nodes := groupNodes(t, w, group)
		return len(nodes) == 3 && running == 6, fmt.Errorf("%d nodes, %d running", len(nodes), running)
	})
	t.Logf("0 → 3 nodes with all pods running in %s", took.Round(time.Second))

	// The provider knows every node as its member, with ids equal to providerIDs.
	nodes := groupNodes(t, w, group)
	framework.Eventually(t, 15*time.Second, time.Second, "NodeGroupForNode maps all 3 nodes", func() (bool, error) {
		loop, err = d.RunLoop(ctx)
		if err != nil {
			return false, err
		}
		for _, n := range nodes {
			if loop.NodeToGroup[n.Name] != group {
				return false, fmt.Errorf("node %s -> %q", n.Name, loop.NodeToGroup[n.Name])
			}
		}
		return true, nil
	})
	// A server that became ACTIVE after the provider's last refresh is still reported as
	// creating; the next refresh (2 s here) reports it running.
	framework.Eventually(t, 15*time.Second, time.Second, "Instances reports the 3 nodes running", func() (bool, error) {
		instances, err := d.Instances(ctx, group)
		if err != nil {
			return false, err
		}
		ids := map[string]pb.InstanceStatus_InstanceState{}
		for _, inst := range instances {
			ids[inst.GetId()] = inst.GetStatus().GetInstanceState()
		}
		for _, n := range nodes {
			if ids[n.Spec.ProviderID] != pb.InstanceStatus_instanceRunning {
				return false, fmt.Errorf("instances %v lack running %s (node %s)", ids, n.Spec.ProviderID, n.Name)
			}
		}
		return true, nil
	})

	// Load drops to 2 pods; the autoscaler drains two chosen nodes and deletes them.
	victims, keep := nodes[:2], nodes[2]
	for _, n := range victims {
		patch := []byte(`{"spec":{"unschedulable":true}}`)
		if _, err := w.Kube.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	scale := []byte(`{"spec":{"replicas":2}}`)
	if _, err := w.Kube.AppsV1().Deployments("default").Patch(ctx, dep.Name, types.MergePatchType, scale, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range podsOf(t, w, dep.Name) {
		if p.Spec.NodeName != keep.Name {
			_ = w.Kube.CoreV1().Pods("default").Delete(ctx, p.Name, metav1.DeleteOptions{})
		}
	}
	if err := d.DeleteNodes(ctx, group, victims...); err != nil {
		t.Fatal(err)
	}
	if size, _ := d.TargetSize(ctx, group); size != 1 {
		t.Errorf("target size right after deleting 2 of 3 = %d, want 1", size)
	}
	framework.Eventually(t, 90*time.Second, time.Second, "exactly the two victims' servers gone", func() (bool, error) {
		left := groupServers(t, w, group)
		return len(left) == 1, fmt.Errorf("%d servers left", len(left))
	})
	left := groupServers(t, w, group)
	if membership.ProviderID(left[0].ID) != keep.Spec.ProviderID {
		t.Errorf("the server left is %s, want the kept node's %s", left[0].ID, keep.Spec.ProviderID)
	}
	framework.Eventually(t, 60*time.Second, time.Second, "two running pods on the kept node", func() (bool, error) {
		running := 0
		for _, p := range podsOf(t, w, dep.Name) {
			if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName == keep.Name {
				running++
			}
		}
		return running == 2 && len(groupNodes(t, w, group)) == 1, fmt.Errorf("%d running on %s", running, keep.Name)
	})
	wantMetrics(t, p,
		`openstack_autoscaler_server_operations_total{group="nova-e2e",operation="create",result="ok"} 3`,
		`openstack_autoscaler_server_operations_total{group="nova-e2e",operation="delete",result="ok"} 2`,
		`openstack_autoscaler_group_target_size{group="nova-e2e"} 1`,
		`openstack_autoscaler_openstack_requests_total{operation="POST /servers",result="2xx",service="compute"} 3`,
	)
}

// With the project's instance quota used up, a scale-up ends in an instance with an
// out-of-resources error, which the autoscaler deletes; nothing is left behind.
func TestNovaQuotaExhaustedIsOutOfResources(t *testing.T) {
	const group = "nova-quota"
	w, _, d := novaGroupUnderTest(t, group, 0, 3)
	ctx := context.Background()

	restore := useUpInstanceQuota(t, w)
	defer restore()
	if err := d.IncreaseSize(ctx, group, 1); err != nil {
		t.Fatal(err)
	}
	failed := waitForFailedInstance(t, d, group, 30*time.Second)
	info := failed.GetStatus().GetErrorInfo()
	if failed.GetStatus().GetInstanceState() != pb.InstanceStatus_instanceCreating || info.GetInstanceErrorClass() != 1 {
		t.Errorf("failed instance = %v, want state creating with errorInfo class 1 (out of resources)", failed)
	}
	if !strings.Contains(strings.ToLower(info.GetErrorMessage()), "quota") {
		t.Errorf("error message %q does not mention the quota", info.GetErrorMessage())
	}
	t.Logf("failed instance %s: %s %q", failed.GetId(), info.GetErrorCode(), info.GetErrorMessage())
	// The autoscaler deletes the failed instance; the target drops back to 0.
	if err := d.DeleteNodes(ctx, group, corev1.Node{Spec: corev1.NodeSpec{ProviderID: failed.GetId()}}); err != nil {
		t.Fatal(err)
	}
	if size, _ := d.TargetSize(ctx, group); size != 0 {
		t.Errorf("target after deleting the failed instance = %d, want 0", size)
	}
	if left := groupServers(t, w, group); len(left) != 0 {
		t.Errorf("servers created despite the quota: %v", left)
	}
}

// providerMatchesNova compares the group's servers in Nova with the provider's instances: it
// fails the test on more servers than asked (duplicates), and returns the number of servers
// and the provider's target, or an error while the two lists differ.
func providerMatchesNova(t *testing.T, w *framework.World, d *autoscaler.Driver, group string, asked int) (servers, target int, err error) {
	t.Helper()
	ctx := context.Background()
	list := groupServers(t, w, group)
	if len(list) > asked {
		t.Fatalf("%d servers after asking for %d: duplicates", len(list), asked)
	}
	instances, err := d.Instances(ctx, group)
	if err != nil {
		return 0, 0, err
	}
	want := map[string]bool{}
	for _, s := range list {
		want[membership.ProviderID(s.ID)] = true
	}
	got := map[string]bool{}
	for _, inst := range instances {
		got[inst.GetId()] = true
	}
	target, _ = d.TargetSize(ctx, group)
	if len(got) != len(want) || !subset(want, got) {
		return len(list), target, fmt.Errorf("nova %v, provider %v, target %d", want, got, target)
	}
	return len(list), target, nil
}

func subset(a, b map[string]bool) bool {
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// DeleteNodes naming a server that is not a member is refused, and the server is untouched.
func TestNovaDeleteNodesRefusesServersThatAreNotMembers(t *testing.T) {
	w := framework.Connect(t)
	ctx := context.Background()
	const group = "nova-guard"
	cfg := novaConfig(w, group, 0, 3)
	p := framework.StartProvider(t, cfg)
	d := &autoscaler.Driver{Client: p.Client, Kube: w.Kube}
	for name, meta := range map[string]map[string]string{
		"not-ours":      nil,
		"other-group":   membership.Metadata(w.Cluster, "another-group"),
		"other-cluster": membership.Metadata("another-cluster", group),
	} {
		s, err := servers.Create(ctx, w.Project.Compute, servers.CreateOpts{Name: "guard-" + name, ImageRef: w.Seed.ImageID,
			FlavorRef: w.Seed.Flavors["m1.small"], Networks: "none", Metadata: meta}, nil).Extract()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = servers.Delete(context.Background(), w.Project.Compute, s.ID).ExtractErr() })
		err = d.DeleteNodes(ctx, group, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "guard-" + name},
			Spec: corev1.NodeSpec{ProviderID: membership.ProviderID(s.ID)}})
		if err == nil || !strings.Contains(err.Error(), "not a member") {
			t.Errorf("%s: DeleteNodes err = %v, want a refusal saying it is not a member", name, err)
		}
		time.Sleep(3 * time.Second)
		got, err := servers.Get(ctx, w.Project.Compute, s.ID).Extract()
		if err != nil || got.Status == "DELETED" || got.TaskState == "deleting" {
			t.Errorf("%s: server after the refused delete: %+v, %v", name, got, err)
		}
	}
}

// useUpInstanceQuota lowers the project's instance quota to what is in use; the returned
// function (also run when the test ends) puts it back.
func useUpInstanceQuota(t *testing.T, w *framework.World) (restore func()) {
	t.Helper()
	ctx := context.Background()
	pages, err := servers.List(w.Project.Compute, servers.ListOpts{}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inUse, _ := servers.ExtractServers(pages)
	before, err := quotasets.Get(ctx, w.Admin.Compute, w.Seed.ProjectID).Extract()
	if err != nil {
		t.Fatal(err)
	}
	limit := len(inUse)
	if _, err := quotasets.Update(ctx, w.Admin.Compute, w.Seed.ProjectID, quotasets.UpdateOpts{Instances: &limit}).Extract(); err != nil {
		t.Fatal(err)
	}
	restore = func() {
		_, _ = quotasets.Update(context.Background(), w.Admin.Compute, w.Seed.ProjectID, quotasets.UpdateOpts{Instances: &before.Instances}).Extract()
	}
	t.Cleanup(restore)
	return restore
}

// waitForFailedInstance waits for the group to report an instance with errorInfo.
func waitForFailedInstance(t *testing.T, d *autoscaler.Driver, group string, timeout time.Duration) *pb.Instance {
	t.Helper()
	var failed *pb.Instance
	framework.Eventually(t, timeout, time.Second, "an instance with errorInfo in "+group, func() (bool, error) {
		instances, err := d.Instances(context.Background(), group)
		if err != nil {
			return false, err
		}
		for _, inst := range instances {
			if inst.GetStatus().GetErrorInfo().GetErrorCode() != "" {
				failed = inst
				return true, nil
			}
		}
		return false, fmt.Errorf("instances %v", instances)
	})
	return failed
}

// wantMetrics reads the provider's /metrics and fails the test for each line it lacks.
func wantMetrics(t *testing.T, p *framework.Provider, lines ...string) {
	t.Helper()
	metrics, err := p.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range lines {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
