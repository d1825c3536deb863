//go:build e2e

// Smoke tests of the local world itself: the pieces every other end-to-end test stands on.
package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/netns"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/podns"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/sockdiag"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/loadgen"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/sandbox"
)

// A Nova server booted with a managed group's metadata becomes a Ready Node with the right
// providerID, capacity, labels and taints within 30 s; deleted, its Node is gone.
func TestWorldServerBecomesNodeAndGoesAway(t *testing.T) {
	w := framework.Connect(t)
	ctx := context.Background()
	w.SetNodeGroups(t, fmt.Sprintf(`clusterName: %s
nodeGroups:
- name: smoke
  labels: {workload: smoke}
  taints: [{key: dedicated, value: smoke, effect: NoSchedule}]
  reserved: {cpu: 100m, memory: 256Mi}
`, w.Cluster))

	name := fmt.Sprintf("world-smoke-%d", time.Now().UnixNano()%100000)
	server := bootMemberServer(t, w, name, "smoke")

	var node *corev1.Node
	took := framework.Eventually(t, 60*time.Second, 250*time.Millisecond, "a Ready node for server "+server.ID, func() (bool, error) {
		var err error
		node, err = w.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, fmt.Errorf("node %s not Ready yet", name)
	})
	t.Logf("server %s created → node Ready in %s", server.ID, took.Round(100*time.Millisecond))
	if took > 30*time.Second {
		t.Errorf("server → Ready node took %s, want ≤ 30s", took)
	}
	if want := membership.ProviderID(server.ID); node.Spec.ProviderID != want {
		t.Errorf("providerID = %q, want %q", node.Spec.ProviderID, want)
	}
	for k, v := range map[string]string{
		membership.NodeGroupLabel: "smoke", "workload": "smoke",
		"node.kubernetes.io/instance-type": "m1.small", "topology.kubernetes.io/region": w.Project.Region,
	} {
		if node.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, node.Labels[k], v)
		}
	}
	// The node lifecycle controller adds and removes node.kubernetes.io/* taints of its own.
	if !hasTaint(node, corev1.Taint{Key: "dedicated", Value: "smoke", Effect: corev1.TaintEffectNoSchedule}) {
		t.Errorf("taints = %v, want dedicated=smoke:NoSchedule among them", node.Spec.Taints)
	}
	wantCPU, wantMem := resource.MustParse("2"), resource.MustParse("4Gi")
	if c := node.Status.Capacity[corev1.ResourceCPU]; c.Cmp(wantCPU) != 0 {
		t.Errorf("cpu capacity = %s, want %s (m1.small)", c.String(), wantCPU.String())
	}
	if m := node.Status.Capacity[corev1.ResourceMemory]; m.Cmp(wantMem) != 0 {
		t.Errorf("memory capacity = %s, want %s", m.String(), wantMem.String())
	}
	if a := node.Status.Allocatable[corev1.ResourceCPU]; a.Cmp(resource.MustParse("1900m")) != 0 {
		t.Errorf("cpu allocatable = %s, want 1900m (2 cores - 100m reserved)", a.String())
	}

	// A stopped server's node turns NotReady and comes back when it starts; a server in ERROR
	// (reset by an admin, as a failed host would leave it) turns its node NotReady too.
	readyIs := func(want corev1.ConditionStatus) func() (bool, error) {
		return func() (bool, error) {
			n, err := w.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady {
					return c.Status == want, fmt.Errorf("Ready is %s (%s)", c.Status, c.Reason)
				}
			}
			return false, fmt.Errorf("no Ready condition")
		}
	}
	if err := servers.Stop(ctx, w.Project.Compute, server.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	took = framework.Eventually(t, 60*time.Second, 250*time.Millisecond, "node NotReady while the server is SHUTOFF", readyIs(corev1.ConditionFalse))
	t.Logf("server stopped → node NotReady in %s", took.Round(100*time.Millisecond))
	if err := servers.Start(ctx, w.Project.Compute, server.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	took = framework.Eventually(t, 60*time.Second, 250*time.Millisecond, "node Ready again after a start", readyIs(corev1.ConditionTrue))
	t.Logf("server started → node Ready in %s", took.Round(100*time.Millisecond))
	if err := servers.ResetState(ctx, w.Admin.Compute, server.ID, servers.StateError).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 60*time.Second, 250*time.Millisecond, "node NotReady while the server is in ERROR", readyIs(corev1.ConditionFalse))

	if err := servers.Delete(ctx, w.Project.Compute, server.ID).ExtractErr(); err != nil {
		t.Fatalf("deleting server: %v", err)
	}
	took = framework.Eventually(t, 60*time.Second, 250*time.Millisecond, "node "+name+" to be deleted", func() (bool, error) {
		_, err := w.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})
	t.Logf("server deleted → node gone in %s", took.Round(100*time.Millisecond))
}

// A kwok pod with a sandbox has its own network namespace, found from /proc/<pid>/cgroup the way
// the node agent finds it, and real ESTABLISHED sockets in it.
func TestWorldSandboxHoldsRealConnections(t *testing.T) {
	w := framework.Connect(t)
	ctx := context.Background()
	nodeName := "world-smoke-sandbox-node"
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName, Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels: map[string]string{"type": "kwok", "kubernetes.io/hostname": nodeName}},
		Status: corev1.NodeStatus{Capacity: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"),
			corev1.ResourcePods: resource.MustParse("110")}},
	}
	node.Status.Allocatable = node.Status.Capacity
	if _, err := w.Kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Kube.CoreV1().Nodes().Delete(context.Background(), nodeName, metav1.DeleteOptions{}) })
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "world-smoke-", Namespace: "default",
			Annotations: map[string]string{sandbox.PortsAnnotation: "8080,9090"}},
		Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}},
	}
	pod, err := w.Kube.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		_ = w.Kube.CoreV1().Pods("default").Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	framework.Eventually(t, 60*time.Second, 250*time.Millisecond, "pod running with an IP", func() (bool, error) {
		pod, err = w.Kube.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		return err == nil && pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "", err
	})
	var pids []int
	framework.Eventually(t, 30*time.Second, 250*time.Millisecond, "sandbox processes in the pod's cgroup", func() (bool, error) {
		pids = framework.PodPIDs(string(pod.UID))
		return len(pids) >= 2, fmt.Errorf("found pids %v", pids)
	})
	hostNS, _ := os.Readlink("/proc/self/ns/net")
	podNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pids[0]))
	if err != nil || podNS == hostNS {
		t.Fatalf("pod process %d netns %q (host %q): want its own namespace (%v)", pids[0], podNS, hostNS, err)
	}
	for _, pid := range pids[1:] {
		if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); ns != podNS {
			t.Errorf("pod process %d is in %s, want the sandbox namespace %s", pid, ns, podNS)
		}
	}

	holder := &loadgen.Holder{Source: w.Env["OSA_WORLD_HOST_IP"]}
	t.Cleanup(holder.CloseAll)
	if err := holder.Set(ctx, net.JoinHostPort(pod.Status.PodIP, "8080"), 5); err != nil {
		t.Fatal(err)
	}
	if err := holder.Set(ctx, net.JoinHostPort(pod.Status.PodIP, "9090"), 2); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 10*time.Second, 100*time.Millisecond, "5+2 established sockets inside the pod netns", func() (bool, error) {
		got, err := framework.EstablishedByLocalPort(pids[0])
		return err == nil && got[8080] == 5 && got[9090] == 2, fmt.Errorf("established by local port: %v", got)
	})
	// The product's own pieces see the same: /proc discovery maps the pod to its namespace, and
	// sock_diag counts its connections by listening port.
	scan, err := podns.ScanProc("/proc")
	if err != nil {
		t.Fatal(err)
	}
	ns := scan.Pods[string(pod.UID)]
	if ns == nil {
		t.Fatalf("podns.ScanProc did not find pod %s", pod.UID)
	}
	fd, err := netns.DiagSocket(netns.ProcPath(ns.PIDs[0]), ns.Inode)
	if err != nil {
		t.Fatal(err)
	}
	counts, err := sockdiag.NewCounter(sockdiag.Options{}).Count(fd)
	unix.Close(fd)
	if err != nil || counts.Inbound != 7 || counts.InboundByPort[8080] != 5 || counts.InboundByPort[9090] != 2 || counts.Outbound != 0 {
		t.Errorf("sock_diag in the pod's namespace: %+v, %v; want 7 inbound (8080: 5, 9090: 2), 0 outbound", counts, err)
	}
	holder.CloseAll()
	framework.Eventually(t, 10*time.Second, 100*time.Millisecond, "sockets closed inside the pod netns", func() (bool, error) {
		got, err := framework.EstablishedByLocalPort(pids[0])
		return err == nil && got[8080] == 0 && got[9090] == 0, fmt.Errorf("established by local port: %v", got)
	})
}

func hasTaint(node *corev1.Node, want corev1.Taint) bool {
	for _, t := range node.Spec.Taints {
		if t.Key == want.Key && t.Value == want.Value && t.Effect == want.Effect {
			return true
		}
	}
	return false
}
