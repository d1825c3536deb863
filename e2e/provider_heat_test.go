//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/orchestration/v1/stacks"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/autoscaler"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

// createNodeGroupStack creates examples/heat-node-group.yaml as a stack tagged for discovery and
// deletes it when the test ends. The operator creates it (with a password: Heat makes a trust per
// stack, which Keystone refuses to application credentials); the provider only updates it.
func createNodeGroupStack(t *testing.T, w *framework.World, name string, count int, tags []string) {
	t.Helper()
	createStack(t, w, "../examples/heat-node-group.yaml", name, count, tags)
}

// createStack creates a node group stack from a template of examples/ (same parameters).
func createStack(t *testing.T, w *framework.World, template, name string, count int, tags []string) {
	t.Helper()
	ctx := context.Background()
	tmpl, err := os.ReadFile(template)
	if err != nil {
		t.Fatal(err)
	}
	// A run that was killed may have left the stack behind.
	if old, err := stacks.Find(ctx, w.Operator.Orchestration, name).Extract(); err == nil {
		_ = stacks.Delete(ctx, w.Operator.Orchestration, old.Name, old.ID).ExtractErr()
		framework.Eventually(t, 120*time.Second, 2*time.Second, "leftover stack "+name+" deleted", func() (bool, error) {
			_, err := stacks.Find(ctx, w.Operator.Orchestration, name).Extract()
			return err != nil, nil
		})
	}
	created, err := stacks.Create(ctx, w.Operator.Orchestration, stacks.CreateOpts{
		Name: name, TemplateOpts: &stacks.Template{TE: stacks.TE{Bin: tmpl}}, Tags: tags, Timeout: 10,
		Parameters: map[string]any{"count": count, "cluster": w.Cluster, "node_group": name,
			"image": w.Seed.ImageID, "flavor": "m1.small"},
	}).Extract()
	if err != nil {
		t.Fatalf("creating stack %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := stacks.Delete(ctx, w.Operator.Orchestration, name, created.ID).ExtractErr(); err != nil {
			t.Errorf("deleting stack %s: %v", name, err)
			return
		}
		framework.Eventually(t, 120*time.Second, 2*time.Second, "stack "+name+" deleted", func() (bool, error) {
			s, err := stacks.Get(ctx, w.Operator.Orchestration, name, created.ID).Extract()
			if err != nil {
				return true, nil // 404
			}
			return s.Status == "DELETE_COMPLETE", fmt.Errorf("status %s", s.Status)
		})
	})
	framework.Eventually(t, 120*time.Second, 2*time.Second, "stack "+name+" created", func() (bool, error) {
		s, err := stacks.Get(ctx, w.Operator.Orchestration, name, created.ID).Extract()
		if err != nil {
			return false, err
		}
		if s.Status == "CREATE_FAILED" {
			t.Fatalf("stack %s: %s", name, s.StatusReason)
		}
		return s.Status == "CREATE_COMPLETE", fmt.Errorf("status %s", s.Status)
	})
}

// heatConfig is a provider config with one heat group: the stack of the same name.
func heatConfig(w *framework.World, group string, minSize, maxSize int) string {
	return fmt.Sprintf(`cloud: {cloudsFile: %s, name: world}
clusterName: %s
refreshInterval: 2s
nodeGroups:
- {name: %s, backend: heat, minSize: %d, maxSize: %d, heat: {stack: %s}}
`, w.Env["OS_CLIENT_CONFIG_FILE"], w.Cluster, group, minSize, maxSize, group)
}

// discoveryConfig is a provider config with no groups of its own: they are the stacks tagged for
// the world's cluster.
func discoveryConfig(w *framework.World) string {
	return fmt.Sprintf(`cloud: {cloudsFile: %s, name: world}
clusterName: %s
refreshInterval: 2s
autoDiscovery: {heatStacks: true}
nodeGroups: []
`, w.Env["OS_CLIENT_CONFIG_FILE"], w.Cluster)
}

// A Heat stack tagged for the cluster is discovered as a node group; it grows 0 → 3 with two
// requests merged into the stack's updates, and shrinks by removing exactly two named members.
func TestHeatGroupDiscoveredGrowsAndRemovesExactMembers(t *testing.T) {
	w := framework.Connect(t)
	ctx := context.Background()
	const group = "heat-e2e"
	w.SetNodeGroups(t, fmt.Sprintf("clusterName: %s\nnodeGroups:\n- name: %s\n  labels: {e2e-group: %s}\n", w.Cluster, group, group))
	createNodeGroupStack(t, w, group, 0, []string{"k8s.io/cluster-autoscaler/enabled", "k8s.io/cluster-autoscaler/" + w.Cluster,
		"k8s.io/cluster-autoscaler/min=0", "k8s.io/cluster-autoscaler/max=4"})
	p := framework.StartProvider(t, discoveryConfig(w))
	d := &autoscaler.Driver{Client: p.Client, Kube: w.Kube}

	var loop *autoscaler.Loop
	framework.Eventually(t, 30*time.Second, time.Second, "the stack discovered as a group", func() (bool, error) {
		var err error
		loop, err = d.RunLoop(ctx)
		return err == nil && loop.Groups[group] != nil, err
	})
	if g := loop.Groups[group]; g.MinSize != 0 || g.MaxSize != 4 {
		t.Errorf("discovered bounds = %d..%d, want 0..4 from the tags", g.MinSize, g.MaxSize)
	}
	template, err := d.Template(ctx, group)
	if err != nil {
		t.Fatalf("template of a discovered stack (flavor from its parameters): %v", err)
	}
	if template.Labels["node.kubernetes.io/instance-type"] != "m1.small" {
		t.Errorf("template instance type = %q", template.Labels["node.kubernetes.io/instance-type"])
	}

	// Two requests in a row: the second arrives while the first update runs and is merged.
	if err := d.IncreaseSize(ctx, group, 2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := d.IncreaseSize(ctx, group, 1); err != nil {
		t.Fatalf("a second IncreaseSize during the stack update was refused: %v", err)
	}
	if size, _ := d.TargetSize(ctx, group); size != 3 {
		t.Errorf("target = %d, want 3", size)
	}
	if err := d.IncreaseSize(ctx, group, 2); err == nil {
		t.Error("IncreaseSize beyond the max tag was accepted")
	}
	took := framework.Eventually(t, 180*time.Second, 2*time.Second, "3 ready nodes", func() (bool, error) {
		n := len(groupNodes(t, w, group))
		return n == 3, fmt.Errorf("%d nodes", n)
	})
	t.Logf("heat group 0 → 3 ready nodes in %s", took.Round(time.Second))
	nodes := groupNodes(t, w, group)
	framework.Eventually(t, 30*time.Second, time.Second, "3 running instances matching the nodes", func() (bool, error) {
		instances, err := d.Instances(ctx, group)
		if err != nil {
			return false, err
		}
		running := map[string]bool{}
		for _, inst := range instances {
			if inst.GetStatus().GetInstanceState() == pb.InstanceStatus_instanceRunning {
				running[inst.GetId()] = true
			}
		}
		for _, n := range nodes {
			if !running[n.Spec.ProviderID] {
				return false, fmt.Errorf("instances %v lack %s", instances, n.Spec.ProviderID)
			}
		}
		return len(instances) == 3, nil
	})
	loop, err = d.RunLoop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if loop.NodeToGroup[n.Name] != group {
			t.Errorf("NodeGroupForNode(%s) = %q, want %s", n.Name, loop.NodeToGroup[n.Name], group)
		}
	}

	// Remove the first and the last node by name: exactly their members go.
	victims := []int{0, 2}
	keep := nodes[1]
	if err := d.DeleteNodes(ctx, group, nodes[victims[0]], nodes[victims[1]]); err != nil {
		t.Fatal(err)
	}
	if size, _ := d.TargetSize(ctx, group); size != 1 {
		t.Errorf("target after removing two = %d, want 1", size)
	}
	framework.Eventually(t, 180*time.Second, 2*time.Second, "one server left", func() (bool, error) {
		left := groupServers(t, w, group)
		return len(left) == 1, fmt.Errorf("%d servers", len(left))
	})
	left := groupServers(t, w, group)
	if membership.ProviderID(left[0].ID) != keep.Spec.ProviderID {
		t.Errorf("server left = %s (%s), want the kept node %s", left[0].ID, left[0].Name, keep.Name)
	}
	framework.Eventually(t, 60*time.Second, time.Second, "nodes of removed members gone", func() (bool, error) {
		n := groupNodes(t, w, group)
		return len(n) == 1 && n[0].Name == keep.Name, fmt.Errorf("%d nodes", len(n))
	})
	nodeList, _ := w.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	for _, n := range nodeList.Items {
		if strings.HasPrefix(n.Name, w.Cluster+"-"+group) && n.Name != keep.Name {
			t.Errorf("node %s still registered", n.Name)
		}
	}
}

// A member Heat cannot create (the project's instance quota is used up) is reported with an
// out-of-resources error; deleting it, as the autoscaler does, removes exactly that member.
func TestHeatFailedMemberIsOutOfResources(t *testing.T) {
	w := framework.Connect(t)
	ctx := context.Background()
	const group = "heat-quota"
	createNodeGroupStack(t, w, group, 0, []string{"k8s.io/cluster-autoscaler/enabled", "k8s.io/cluster-autoscaler/" + w.Cluster,
		"k8s.io/cluster-autoscaler/min=0", "k8s.io/cluster-autoscaler/max=2"})
	restore := useUpInstanceQuota(t, w)
	defer restore()
	p := framework.StartProvider(t, heatConfig(w, group, 0, 2))
	d := &autoscaler.Driver{Client: p.Client, Kube: w.Kube}
	if err := d.IncreaseSize(ctx, group, 1); err != nil {
		t.Fatal(err)
	}
	failed := waitForFailedInstance(t, d, group, 120*time.Second)
	info := failed.GetStatus().GetErrorInfo()
	t.Logf("failed member %s: %s %q", failed.GetId(), info.GetErrorCode(), info.GetErrorMessage())
	if info.GetInstanceErrorClass() != 1 || failed.GetStatus().GetInstanceState() != pb.InstanceStatus_instanceCreating {
		t.Errorf("failed member = %v, want creating with class 1 (out of resources)", failed)
	}
	restore()
	if err := d.DeleteNodes(ctx, group, corev1.Node{Spec: corev1.NodeSpec{ProviderID: failed.GetId()}}); err != nil {
		t.Fatal(err)
	}
	if size, _ := d.TargetSize(ctx, group); size != 0 {
		t.Errorf("target after deleting the failed member = %d, want 0", size)
	}
	framework.Eventually(t, 120*time.Second, 2*time.Second, "the failed member removed from the stack", func() (bool, error) {
		instances, err := d.Instances(ctx, group)
		return err == nil && len(instances) == 0, fmt.Errorf("instances %v", instances)
	})
}

// A stack holding an OS::Heat::AutoScalingGroup is a node group too: it grows by its count, and
// deleting the newest node removes exactly that member (not the oldest, which an
// AutoScalingGroup would otherwise pick).
func TestHeatAutoScalingGroupRemovesExactMembers(t *testing.T) {
	w := framework.Connect(t)
	ctx := context.Background()
	const group = "heat-asg"
	w.SetNodeGroups(t, fmt.Sprintf("clusterName: %s\nnodeGroups:\n- name: %s\n", w.Cluster, group))
	createStack(t, w, "../examples/heat-asg-node-group.yaml", group, 2, nil)
	p := framework.StartProvider(t, heatConfig(w, group, 1, 4))
	d := &autoscaler.Driver{Client: p.Client, Kube: w.Kube}
	framework.Eventually(t, 120*time.Second, 2*time.Second, "2 ready nodes", func() (bool, error) {
		return len(groupNodes(t, w, group)) == 2, nil
	})
	time.Sleep(1100 * time.Millisecond) // Heat orders members by creation time, to the second
	if err := d.IncreaseSize(ctx, group, 1); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 120*time.Second, 2*time.Second, "3 ready nodes", func() (bool, error) {
		return len(groupNodes(t, w, group)) == 3, nil
	})
	var newest corev1.Node
	for _, n := range groupNodes(t, w, group) {
		if newest.Name == "" || n.CreationTimestamp.After(newest.CreationTimestamp.Time) {
			newest = n
		}
	}
	framework.Eventually(t, 30*time.Second, time.Second, "the provider maps the newest node to the group", func() (bool, error) {
		loop, err := d.RunLoop(ctx)
		return err == nil && loop.NodeToGroup[newest.Name] == group, err
	})
	if err := d.DeleteNodes(ctx, group, newest); err != nil {
		t.Fatal(err)
	}
	took := framework.Eventually(t, 120*time.Second, 2*time.Second, "exactly the newest node's server gone", func() (bool, error) {
		left := groupServers(t, w, group)
		for _, s := range left {
			if membership.ProviderID(s.ID) == newest.Spec.ProviderID {
				if len(left) < 3 {
					t.Fatalf("another member was removed instead of %s", newest.Name)
				}
				return false, fmt.Errorf("%s still there", newest.Name)
			}
		}
		return len(left) == 2, fmt.Errorf("%d servers", len(left))
	})
	t.Logf("AutoScalingGroup: the newest of 3 members removed exactly in %s", took.Round(time.Second))
	if size, _ := d.TargetSize(ctx, group); size != 2 {
		t.Errorf("target size = %d, want 2", size)
	}
	framework.Eventually(t, 60*time.Second, 2*time.Second, "the provider sees 2 running members", func() (bool, error) {
		instances, err := d.Instances(ctx, group)
		if err != nil {
			return false, err
		}
		running := 0
		for _, inst := range instances {
			if inst.GetStatus().GetInstanceState() == pb.InstanceStatus_instanceRunning {
				running++
			}
		}
		return running == 2 && len(instances) == 2, fmt.Errorf("%d instances, %d running", len(instances), running)
	})
}
