//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/repair"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/autoscaler"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/faultproxy"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

// repairConfig is a nova group with node repair on, with short thresholds: the world's nodes are
// seconds old.
func repairConfig(w *framework.World, group string, maxSize int) string {
	return novaConfig(w, group, 0, maxSize) + `repair:
  enabled: true
  interval: 1s
  unhealthyAfter: 3s
  grace: 1s
  escalateAfter: 30s
  drainTimeout: 12s
`
}

// startRepairingProvider runs the provider with its Lease for node repair.
func startRepairingProvider(t *testing.T, w *framework.World, group, cfg string) *framework.Provider {
	return framework.StartProvider(t, cfg, "--kubeconfig", w.Env["KUBECONFIG"],
		"--leader-elect-namespace", "kube-system", "--leader-elect-lease", "repair-"+group)
}

// repairGroupUnderTest starts a provider (with node repair on if repairing) and grows its nova
// group to size ready nodes.
func repairGroupUnderTest(t *testing.T, group string, size int, repairing bool) (*framework.World, *framework.Provider, []corev1.Node) {
	t.Helper()
	w := framework.Connect(t)
	w.SetNodeGroups(t, novaConfig(w, group, 0, size+1))
	cleanupGroupServers(t, w, group)
	var p *framework.Provider
	if repairing {
		p = startRepairingProvider(t, w, group, repairConfig(w, group, size+1))
	} else {
		p = framework.StartProvider(t, novaConfig(w, group, 0, size+1))
	}
	d := &autoscaler.Driver{Client: p.Client, Kube: w.Kube}
	if err := d.IncreaseSize(context.Background(), group, size); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 120*time.Second, time.Second, fmt.Sprintf("%d ready nodes", size), func() (bool, error) {
		n := len(groupNodes(t, w, group))
		return n == size, fmt.Errorf("%d ready", n)
	})
	return w, p, groupNodes(t, w, group)
}

// nodeEvents lists the Events with a reason of this Node object (by UID: an earlier node of the
// same name has its own).
func nodeEvents(t *testing.T, w *framework.World, node corev1.Node, reason string) []corev1.Event {
	t.Helper()
	sel := fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.uid", string(node.UID)), fields.OneTermEqualSelector("reason", reason))
	list, err := w.Kube.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: sel.String()})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func waitForEvent(t *testing.T, w *framework.World, node corev1.Node, reason string, timeout time.Duration) corev1.Event {
	t.Helper()
	var found corev1.Event
	framework.Eventually(t, timeout, 500*time.Millisecond, "Event "+reason+" on node "+node.Name, func() (bool, error) {
		evs := nodeEvents(t, w, node, reason)
		if len(evs) > 0 {
			found = evs[0]
		}
		return len(evs) > 0, nil
	})
	return found
}

// waitReadyOnSameServer waits until the group's only node is Ready again on node's server, and
// that server ACTIVE.
func waitReadyOnSameServer(t *testing.T, w *framework.World, group string, node corev1.Node) time.Duration {
	t.Helper()
	serverID := serverOf(t, node)
	return framework.Eventually(t, 90*time.Second, time.Second, "node Ready again on the same server", func() (bool, error) {
		s, err := servers.Get(context.Background(), w.Project.Compute, serverID).Extract()
		if err != nil {
			return false, err
		}
		ready := groupNodes(t, w, group)
		return s.Status == "ACTIVE" && len(ready) == 1 && ready[0].Spec.ProviderID == node.Spec.ProviderID,
			fmt.Errorf("server %s, %d ready nodes", s.Status, len(ready))
	})
}

func serverOf(t *testing.T, n corev1.Node) string {
	t.Helper()
	id, ok := membership.ServerID(n.Spec.ProviderID)
	if !ok {
		t.Fatalf("node %s has providerID %q", n.Name, n.Spec.ProviderID)
	}
	return id
}

// A server someone stopped comes back: the provider starts it and the node is Ready again.
func TestRepairStartsAStoppedServer(t *testing.T) {
	const group = "repair-start"
	w, p, nodes := repairGroupUnderTest(t, group, 1, true)
	node, serverID := nodes[0], serverOf(t, nodes[0])
	ctx := context.Background()

	if err := servers.Stop(ctx, w.Project.Compute, serverID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	ev := waitForEvent(t, w, node, repair.ReasonStart, 60*time.Second)
	t.Logf("event: %s %s", ev.Reason, ev.Message)
	took := waitReadyOnSameServer(t, w, group, node)
	t.Logf("stopped server started again, node Ready in %s", took.Round(time.Second))
	waitForEvent(t, w, node, repair.ReasonRepaired, 30*time.Second)
	framework.Eventually(t, 15*time.Second, time.Second, "repair annotations cleared", func() (bool, error) {
		n, err := w.Kube.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		_, has := n.Annotations[repair.StepAnnotation]
		return !has, fmt.Errorf("annotations %v", n.Annotations)
	})
	wantMetrics(t, p,
		`openstack_autoscaler_repair_actions_total{action="start",group="repair-start",outcome="ok"} 1`,
		`openstack_autoscaler_repair_repaired_total{action="start",group="repair-start"} 1`,
	)
}

// A server in ERROR is replaced: its node is drained and comes back under the same name on a
// new server (new providerID); the old server is gone.
func TestRepairReplacesAServerInError(t *testing.T) {
	const group = "repair-error"
	w, _, nodes := repairGroupUnderTest(t, group, 1, true)
	node, serverID := nodes[0], serverOf(t, nodes[0])
	ctx := context.Background()

	if err := servers.ResetState(ctx, w.Admin.Compute, serverID, servers.StateError).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	ev := waitForEvent(t, w, node, repair.ReasonReplace, 60*time.Second)
	t.Logf("event: %s %s", ev.Reason, ev.Message)
	var replacement corev1.Node
	took := framework.Eventually(t, 180*time.Second, time.Second, "node Ready on a new server", func() (bool, error) {
		ready := groupNodes(t, w, group)
		if len(ready) != 1 {
			return false, fmt.Errorf("%d ready nodes", len(ready))
		}
		replacement = ready[0]
		return replacement.Spec.ProviderID != node.Spec.ProviderID, fmt.Errorf("node %s still on %s", replacement.Name, replacement.Spec.ProviderID)
	})
	t.Logf("server in ERROR replaced, node Ready again in %s: %s → %s", took.Round(time.Second), node.Spec.ProviderID, replacement.Spec.ProviderID)
	if replacement.Name != node.Name {
		t.Errorf("replacement node is %s, want the same name %s", replacement.Name, node.Name)
	}
	if replacement.Spec.Unschedulable {
		t.Errorf("replacement node is cordoned")
	}
	if _, err := servers.Get(ctx, w.Project.Compute, serverID).Extract(); err == nil {
		t.Errorf("old server %s still exists", serverID)
	}
	if left := groupServers(t, w, group); len(left) != 1 {
		t.Errorf("%d servers in the group, want 1 (no leak, no duplicate)", len(left))
	}
}

// No silent shrink: the successor of a replacement cannot be created (the project's instance
// quota is used up). The replacement is a failed step, said in a RepairFailed Event; the old
// server and its node stay, the group keeps its size and reports no failed instance for the
// autoscaler to remove. Once there is room again, the next step replaces the server.
func TestRepairFailedReplacementKeepsTheGroupsSizeAndTriesAgain(t *testing.T) {
	const group = "repair-fail"
	w, p, nodes := repairGroupUnderTest(t, group, 1, true)
	node, serverID := nodes[0], serverOf(t, nodes[0])
	ctx := context.Background()
	restore := useUpInstanceQuota(t, w)

	if err := servers.ResetState(ctx, w.Admin.Compute, serverID, servers.StateError).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitForEvent(t, w, node, repair.ReasonReplace, 60*time.Second)
	ev := waitForEvent(t, w, node, repair.ReasonFailed, 60*time.Second)
	t.Logf("event: %s %s", ev.Reason, ev.Message)
	if !strings.Contains(ev.Message, "given up") || !strings.Contains(strings.ToLower(ev.Message), "quota") {
		t.Errorf("RepairFailed says %q, want the replacement given up and the quota named", ev.Message)
	}
	if s, err := servers.Get(ctx, w.Project.Compute, serverID).Extract(); err != nil || s.Status != "ERROR" {
		t.Fatalf("old server after the failed replacement: %+v, %v (it must stay)", s, err)
	}
	if n, err := w.Kube.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{}); err != nil || n.UID != node.UID {
		t.Fatalf("node %s after the failed replacement: %v (it must stay)", node.Name, err)
	}
	d := &autoscaler.Driver{Client: p.Client, Kube: w.Kube}
	if size, err := d.TargetSize(ctx, group); err != nil || size != 1 {
		t.Errorf("target size %d (%v) after the failed replacement, want 1", size, err)
	}
	instances, err := d.Instances(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	for _, inst := range instances {
		if inst.GetStatus().GetErrorInfo().GetErrorCode() != "" {
			t.Errorf("instance %s reported failed (%s): the autoscaler would remove it and shrink the group", inst.GetId(), inst.GetStatus().GetErrorInfo().GetErrorMessage())
		}
	}

	restore()
	took := framework.Eventually(t, 180*time.Second, time.Second, "node Ready on a new server after the next step", func() (bool, error) {
		ready := groupNodes(t, w, group)
		if len(ready) != 1 {
			return false, fmt.Errorf("%d ready nodes", len(ready))
		}
		return ready[0].Spec.ProviderID != node.Spec.ProviderID, fmt.Errorf("node still on %s", ready[0].Spec.ProviderID)
	})
	t.Logf("replaced by the next step %s after the quota was restored", took.Round(time.Second))
	if _, err := servers.Get(ctx, w.Project.Compute, serverID).Extract(); err == nil {
		t.Errorf("old server %s still exists", serverID)
	}
	if left := groupServers(t, w, group); len(left) != 1 {
		t.Errorf("%d servers in the group, want 1", len(left))
	}
}

// The autoscaler deletes a node while repair is replacing its server (the server is already
// renamed <name>-replaced, its successor on its way): the group's target goes down by one and
// neither the old server nor a successor stays. The deletion used to be skipped as "already
// going", and the group kept its size.
func TestDeletingANodeUnderReplacementShrinksTheGroup(t *testing.T) {
	const group = "repair-cancel"
	w, p, nodes := repairGroupUnderTest(t, group, 2, true)
	node, serverID := nodes[0], serverOf(t, nodes[0])
	keep := serverOf(t, nodes[1])
	ctx := context.Background()
	if err := servers.ResetState(ctx, w.Admin.Compute, serverID, servers.StateError).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 60*time.Second, 100*time.Millisecond, "the replacement under way (server renamed)", func() (bool, error) {
		s, err := servers.Get(ctx, w.Project.Compute, serverID).Extract()
		return err == nil && strings.HasSuffix(s.Name, membership.ReplacedSuffix), err
	})
	d := &autoscaler.Driver{Client: p.Client, Kube: w.Kube}
	if err := d.DeleteNodes(ctx, group, node); err != nil {
		t.Fatal(err)
	}
	if size, err := d.TargetSize(ctx, group); err != nil || size != 1 {
		t.Errorf("target size %d (%v) right after deleting the node under replacement, want 1", size, err)
	}
	framework.Eventually(t, 120*time.Second, time.Second, "only the other node's server left", func() (bool, error) {
		left := groupServers(t, w, group)
		return len(left) == 1 && left[0].ID == keep, fmt.Errorf("%d servers", len(left))
	})
	time.Sleep(10 * time.Second) // no successor appears late
	if left := groupServers(t, w, group); len(left) != 1 {
		t.Errorf("%d servers 10 s later, want 1 (a successor was made after all)", len(left))
	}
	if size, err := d.TargetSize(ctx, group); err != nil || size != 1 {
		t.Errorf("target size %d (%v) at the end, want 1", size, err)
	}
}

// waitForEventSaying waits for an Event of the reason on the Node whose message contains text.
func waitForEventSaying(t *testing.T, w *framework.World, node corev1.Node, reason, text string, timeout time.Duration) corev1.Event {
	t.Helper()
	var found corev1.Event
	framework.Eventually(t, timeout, 500*time.Millisecond, fmt.Sprintf("Event %s saying %q on node %s", reason, text, node.Name), func() (bool, error) {
		for _, ev := range nodeEvents(t, w, node, reason) {
			if strings.Contains(ev.Message, text) {
				found = ev
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

// Repair holds for what it cannot see through, in the world: a node the autoscaler is removing
// (its ToBeDeletedByClusterAutoscaler taint), a fault across groups (three groups of one node,
// all broken: each group's own guard would repair its lone node), and a stale view of
// OpenStack (the provider's listings fail). Each hold is said on the node; once it lifts, the
// node is repaired.
func TestRepairHoldsForTheAutoscalerAWideFaultAndAStaleView(t *testing.T) {
	w := framework.Connect(t)
	ctx := context.Background()
	groups := []string{"hold-a", "hold-b", "hold-c"}
	cfg := novaConfig(w, groups[0], 0, 2)
	for _, g := range groups[1:] {
		more := novaConfig(w, g, 0, 2)
		cfg += more[strings.Index(more, "- name:"):]
	}
	w.SetNodeGroups(t, cfg)
	for _, g := range groups {
		cleanupGroupServers(t, w, g)
	}
	plain := framework.StartProvider(t, cfg)
	d := &autoscaler.Driver{Client: plain.Client, Kube: w.Kube}
	nodes := map[string]corev1.Node{}
	for _, g := range groups {
		if err := d.IncreaseSize(ctx, g, 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range groups {
		framework.Eventually(t, 120*time.Second, time.Second, "a ready node in "+g, func() (bool, error) {
			ready := groupNodes(t, w, g)
			if len(ready) == 1 {
				nodes[g] = ready[0]
			}
			return len(ready) == 1, fmt.Errorf("%d ready", len(ready))
		})
	}
	a, b, c := nodes["hold-a"], nodes["hold-b"], nodes["hold-c"]
	// The autoscaler is removing a's node; then all three servers stop, while no provider
	// repairs (as after a restart during an outage).
	patch := fmt.Sprintf(`{"spec":{"taints":[{"key":%q,"value":"%d","effect":"NoSchedule"}]}}`, repair.ToBeDeletedTaint, time.Now().Unix())
	if _, err := w.Kube.CoreV1().Nodes().Patch(ctx, a.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []corev1.Node{a, b, c} {
		if err := servers.Stop(ctx, w.Project.Compute, serverOf(t, n)).ExtractErr(); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range groups {
		framework.Eventually(t, 60*time.Second, time.Second, "node of "+g+" NotReady", func() (bool, error) {
			return len(groupNodes(t, w, g)) == 0, nil
		})
	}
	plain.Stop()
	proxy, clouds := proxiedClouds(t, w)
	repairCfg := strings.Replace(cfg, "nodeGroups:", `repair:
  enabled: true
  interval: 1s
  unhealthyAfter: 3s
  grace: 1s
  escalateAfter: 30s
nodeGroups:`, 1)
	p := framework.StartProvider(t, withClouds(repairCfg, w, clouds), "--kubeconfig", w.Env["KUBECONFIG"],
		"--leader-elect-namespace", "kube-system", "--leader-elect-lease", "repair-holds")

	ev := waitForEventSaying(t, w, a, repair.ReasonHeld, repair.ToBeDeletedTaint, 60*time.Second)
	t.Logf("%s: %s", a.Name, ev.Message)
	for _, n := range []corev1.Node{b, c} {
		ev := waitForEventSaying(t, w, n, repair.ReasonHeld, "of the cluster are unhealthy", 60*time.Second)
		t.Logf("%s: %s", n.Name, ev.Message)
	}
	stillStopped := func(ns ...corev1.Node) {
		t.Helper()
		time.Sleep(5 * time.Second) // five passes
		for _, n := range ns {
			s, err := servers.Get(ctx, w.Project.Compute, serverOf(t, n)).Extract()
			if err != nil {
				t.Fatal(err)
			}
			if s.Status != "SHUTOFF" {
				t.Errorf("server of %s is %s: it was repaired while held", n.Name, s.Status)
			}
			if evs := nodeEvents(t, w, n, repair.ReasonStart); len(evs) > 0 {
				t.Errorf("node %s got %s: %s", n.Name, repair.ReasonStart, evs[0].Message)
			}
		}
	}
	stillStopped(a, b, c)

	// The wide fault ends (b and c come back by other hands): a, alone now, stays held for
	// the autoscaler.
	for _, n := range []corev1.Node{b, c} {
		if err := servers.Start(ctx, w.Project.Compute, serverOf(t, n)).ExtractErr(); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []string{"hold-b", "hold-c"} {
		framework.Eventually(t, 60*time.Second, time.Second, "node of "+g+" Ready again", func() (bool, error) {
			return len(groupNodes(t, w, g)) == 1, nil
		})
	}
	stillStopped(a)

	// The provider loses OpenStack (its server listings fail), then the autoscaler gives the
	// node back: the view is stale, so a is still not repaired.
	proxy.Decide = func(r *http.Request) faultproxy.Fault {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/servers") {
			return faultproxy.Unavailable
		}
		return faultproxy.Pass
	}
	time.Sleep(8 * time.Second) // more than three refresh intervals (2 s) without a refresh
	if _, err := w.Kube.CoreV1().Nodes().Patch(ctx, a.Name, types.MergePatchType, []byte(`{"spec":{"taints":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	ev = waitForEventSaying(t, w, a, repair.ReasonHeld, "stale", 60*time.Second)
	t.Logf("%s: %s", a.Name, ev.Message)
	stillStopped(a)
	metrics, err := p.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, hold := range []repair.Hold{repair.HoldRemoving, repair.HoldWide, repair.HoldStale} {
		if !strings.Contains(metrics, fmt.Sprintf(`hold=%q`, hold)) {
			t.Errorf("metrics lack a count of %s holds", hold)
		}
	}

	// OpenStack is back: a is repaired.
	proxy.Decide = nil
	waitForEvent(t, w, a, repair.ReasonStart, 60*time.Second)
	framework.Eventually(t, 60*time.Second, time.Second, "node of hold-a Ready again", func() (bool, error) {
		return len(groupNodes(t, w, "hold-a")) == 1, nil
	})
}

// A PodDisruptionBudget that forbids eviction holds the replacement until the drain timeout; the
// timeout is reported on the node, and then the server is replaced.
func TestRepairDrainHonoursPodDisruptionBudgetUntilTimeout(t *testing.T) {
	const group = "repair-pdb"
	w, p, nodes := repairGroupUnderTest(t, group, 1, true)
	node, serverID := nodes[0], serverOf(t, nodes[0])
	ctx := context.Background()

	dep := cpuDeployment("repair-pdb-app", group, 1)
	if _, err := w.Kube.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	one := intstr.FromInt32(1)
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "repair-pdb-app", Namespace: "default"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: dep.Spec.Selector}}
	if _, err := w.Kube.PolicyV1().PodDisruptionBudgets("default").Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Kube.PolicyV1().PodDisruptionBudgets("default").Delete(context.Background(), pdb.Name, metav1.DeleteOptions{})
		_ = w.Kube.AppsV1().Deployments("default").Delete(context.Background(), dep.Name, metav1.DeleteOptions{})
	})
	framework.Eventually(t, 60*time.Second, time.Second, "the pod running on the node", func() (bool, error) {
		pods := podsOf(t, w, dep.Name)
		return len(pods) == 1 && pods[0].Status.Phase == corev1.PodRunning && pods[0].Spec.NodeName == node.Name, nil
	})

	if err := servers.ResetState(ctx, w.Admin.Compute, serverID, servers.StateError).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitForEvent(t, w, node, repair.ReasonReplace, 60*time.Second)
	// Until the drain times out, the server stays: watch it while waiting for the timeout Event.
	framework.Eventually(t, 60*time.Second, 500*time.Millisecond, "Event "+repair.ReasonDrainTimeout, func() (bool, error) {
		if len(nodeEvents(t, w, node, repair.ReasonDrainTimeout)) > 0 {
			return true, nil
		}
		s, err := servers.Get(ctx, w.Project.Compute, serverID).Extract()
		if err != nil || s.TaskState == "deleting" {
			t.Fatalf("server %s deleted while the PodDisruptionBudget still held its pod (err %v)", serverID, err)
		}
		return false, nil
	})
	ev := nodeEvents(t, w, node, repair.ReasonDrainTimeout)[0]
	t.Logf("event: %s %s", ev.Reason, ev.Message)
	if !strings.Contains(ev.Message, "default/") {
		t.Errorf("drain timeout event does not name the held pod: %s", ev.Message)
	}
	framework.Eventually(t, 180*time.Second, time.Second, "node Ready on a new server", func() (bool, error) {
		ready := groupNodes(t, w, group)
		return len(ready) == 1 && ready[0].Spec.ProviderID != node.Spec.ProviderID, fmt.Errorf("%d ready", len(ready))
	})
	wantMetrics(t, p, `openstack_autoscaler_repair_actions_total{action="replace",group="repair-pdb",outcome="drain-timeout"} 1`)
}

// Three of five nodes broken at once looks like a network or control-plane problem: nothing is
// repaired, and the nodes say why.
func TestRepairHoldsWhenTooManyNodesAreUnhealthy(t *testing.T) {
	const group = "repair-many"
	// Three servers stop while no provider repairs (stopping takes Nova a moment each, and a
	// looking provider would rightly start the first one alone); then a provider with repair on
	// starts, as one would after a restart during an outage, and finds 3 of 5 broken.
	w, first, nodes := repairGroupUnderTest(t, group, 5, false)
	ctx := context.Background()
	broken := nodes[:3]
	for _, n := range broken {
		if err := servers.Stop(ctx, w.Project.Compute, serverOf(t, n)).ExtractErr(); err != nil {
			t.Fatal(err)
		}
	}
	framework.Eventually(t, 60*time.Second, time.Second, "3 nodes NotReady", func() (bool, error) {
		n := len(groupNodes(t, w, group))
		return n == 2, fmt.Errorf("%d ready", n)
	})
	first.Stop()
	p := startRepairingProvider(t, w, group, repairConfig(w, group, 6))
	for _, n := range broken {
		ev := waitForEvent(t, w, n, repair.ReasonHeld, 60*time.Second)
		if !strings.Contains(ev.Message, "3 of 5 nodes") {
			t.Errorf("node %s: held event says %q, want it to say 3 of 5 nodes are unhealthy", n.Name, ev.Message)
		}
	}
	// Several passes later (interval 1s), still nothing was done.
	time.Sleep(5 * time.Second)
	for _, n := range broken {
		s, err := servers.Get(ctx, w.Project.Compute, serverOf(t, n)).Extract()
		if err != nil {
			t.Fatal(err)
		}
		if s.Status != "SHUTOFF" {
			t.Errorf("server of %s is %s: it was repaired although 3 of 5 nodes are unhealthy", n.Name, s.Status)
		}
		if evs := nodeEvents(t, w, n, repair.ReasonStart); len(evs) > 0 {
			t.Errorf("node %s got %s: %s", n.Name, repair.ReasonStart, evs[0].Message)
		}
	}
	metrics, err := p.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(metrics, `openstack_autoscaler_repair_actions_total{action="start",group="repair-many"`) {
		t.Errorf("a repair action was counted:\n%s", metrics)
	}
	if !strings.Contains(metrics, `openstack_autoscaler_repair_unhealthy_nodes{group="repair-many"} 3`) {
		t.Errorf("metrics lack 3 unhealthy nodes in repair-many")
	}
}

// A member of a Heat node group whose server is in ERROR is replaced by the stack: the provider
// names it in removal_policies with the count unchanged, Heat makes a new member, and the
// broken node is gone.
func TestRepairReplacesAHeatMember(t *testing.T) {
	w := framework.Connect(t)
	ctx := context.Background()
	const group = "repair-heat"
	w.SetNodeGroups(t, fmt.Sprintf("clusterName: %s\nnodeGroups:\n- name: %s\n", w.Cluster, group))
	createNodeGroupStack(t, w, group, 1, []string{"k8s.io/cluster-autoscaler/enabled", "k8s.io/cluster-autoscaler/" + w.Cluster,
		"k8s.io/cluster-autoscaler/min=1", "k8s.io/cluster-autoscaler/max=2"})
	framework.Eventually(t, 120*time.Second, time.Second, "the member's node Ready", func() (bool, error) {
		return len(groupNodes(t, w, group)) == 1, nil
	})
	node := groupNodes(t, w, group)[0]
	serverID := serverOf(t, node)
	p := startRepairingProvider(t, w, group, discoveryConfig(w)+
		"repair: {enabled: true, interval: 1s, unhealthyAfter: 3s, grace: 1s, escalateAfter: 60s, drainTimeout: 5s}\n")

	if err := servers.ResetState(ctx, w.Admin.Compute, serverID, servers.StateError).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	ev := waitForEvent(t, w, node, repair.ReasonReplace, 60*time.Second)
	t.Logf("event: %s %s", ev.Reason, ev.Message)
	var replacement corev1.Node
	took := framework.Eventually(t, 240*time.Second, 2*time.Second, "a new member's node Ready and the broken one gone", func() (bool, error) {
		ready := groupNodes(t, w, group)
		if len(ready) != 1 || ready[0].Spec.ProviderID == node.Spec.ProviderID {
			return false, fmt.Errorf("%d ready nodes", len(ready))
		}
		replacement = ready[0]
		_, err := w.Kube.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		return err != nil, fmt.Errorf("broken node %s still there", node.Name)
	})
	t.Logf("heat member replaced in %s: node %s → %s", took.Round(time.Second), node.Name, replacement.Name)
	if _, err := servers.Get(ctx, w.Project.Compute, serverID).Extract(); err == nil {
		t.Errorf("old server %s still exists", serverID)
	}
	d := &autoscaler.Driver{Client: p.Client, Kube: w.Kube}
	if size, err := d.TargetSize(ctx, group); err != nil || size != 1 {
		t.Errorf("target size after the replacement = %d (%v), want 1", size, err)
	}
}

// A paused server leaves its node NotReady with the server ACTIVE in Nova's eyes: the repair
// escalates. Nova refuses a soft reboot of a paused server (reported on the node), so the next
// step, a hard reboot, brings it back.
func TestRepairEscalatesFromSoftToHardReboot(t *testing.T) {
	const group = "repair-reboot"
	w := framework.Connect(t)
	w.SetNodeGroups(t, novaConfig(w, group, 0, 2))
	cleanupGroupServers(t, w, group)
	cfg := strings.Replace(repairConfig(w, group, 2), "escalateAfter: 30s", "escalateAfter: 8s", 1)
	p := startRepairingProvider(t, w, group, cfg)
	d := &autoscaler.Driver{Client: p.Client, Kube: w.Kube}
	ctx := context.Background()
	if err := d.IncreaseSize(ctx, group, 1); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 120*time.Second, time.Second, "a ready node", func() (bool, error) {
		return len(groupNodes(t, w, group)) == 1, nil
	})
	node := groupNodes(t, w, group)[0]
	serverID := serverOf(t, node)

	if err := servers.Pause(ctx, w.Project.Compute, serverID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	soft := waitForEvent(t, w, node, repair.ReasonSoftReboot, 60*time.Second)
	failed := waitForEvent(t, w, node, repair.ReasonFailed, 30*time.Second)
	t.Logf("events: %s %s; %s %s", soft.Reason, soft.Message, failed.Reason, failed.Message)
	hard := waitForEvent(t, w, node, repair.ReasonHardReboot, 60*time.Second)
	t.Logf("event: %s %s", hard.Reason, hard.Message)
	took := waitReadyOnSameServer(t, w, group, node)
	t.Logf("paused server hard-rebooted, node Ready again %s after the hard reboot was asked", took.Round(time.Second))
	waitForEvent(t, w, node, repair.ReasonRepaired, 30*time.Second)
	wantMetrics(t, p,
		`openstack_autoscaler_repair_actions_total{action="soft-reboot",group="repair-reboot",outcome="failed"} 1`,
		`openstack_autoscaler_repair_actions_total{action="hard-reboot",group="repair-reboot",outcome="ok"} 1`,
		`openstack_autoscaler_repair_repaired_total{action="hard-reboot",group="repair-reboot"} 1`,
	)
}

// holdLease keeps a Lease held by holder (as cluster-autoscaler renews its own) until the test
// ends or the returned function names another holder.
func holdLease(t *testing.T, w *framework.World, namespace, name, holder string) (setHolder func(string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	leases := w.Kube.CoordinationV1().Leases(namespace)
	renew := func() error {
		mu.Lock()
		h := holder
		mu.Unlock()
		l, err := leases.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: &h, LeaseDurationSeconds: ptr.To(int32(15)), RenewTime: &metav1.MicroTime{Time: time.Now()}}}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &h, ptr.To(int32(15)), &metav1.MicroTime{Time: time.Now()}
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	}
	if err := renew(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			_ = renew()
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = leases.Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return func(h string) {
		mu.Lock()
		holder = h
		mu.Unlock()
		_ = renew()
	}
}

// The chart's two pods each run an autoscaler and a provider with repair on. Only the provider of
// the pod whose autoscaler holds the autoscaler's Lease repairs (only there is the scaling in
// progress seen); when the other pod's autoscaler takes over, so does its provider.
func TestRepairRunsOnlyBesideTheLeadingAutoscaler(t *testing.T) {
	const group = "repair-two-pods"
	w := framework.Connect(t)
	ctx := context.Background()
	w.SetNodeGroups(t, novaConfig(w, group, 0, 3))
	cleanupGroupServers(t, w, group)
	setHolder := holdLease(t, w, "kube-system", "cluster-autoscaler-"+group, "pod-b")
	pod := func(name string) *framework.Provider {
		return framework.StartProvider(t, repairConfig(w, group, 3), "--kubeconfig", w.Env["KUBECONFIG"],
			"--autoscaler-lease", "kube-system/cluster-autoscaler-"+group, "--identity", name)
	}
	podA, podB := pod("pod-a"), pod("pod-b")
	d := &autoscaler.Driver{Client: podB.Client, Kube: w.Kube}
	if err := d.IncreaseSize(ctx, group, 2); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 120*time.Second, time.Second, "2 ready nodes", func() (bool, error) {
		n := len(groupNodes(t, w, group))
		return n == 2, fmt.Errorf("%d ready", n)
	})
	nodes := groupNodes(t, w, group)

	stop := func(n corev1.Node) {
		serverID := serverOf(t, n)
		if err := servers.Stop(ctx, w.Project.Compute, serverID).ExtractErr(); err != nil {
			t.Fatal(err)
		}
		waitForEvent(t, w, n, repair.ReasonStart, 60*time.Second)
		framework.Eventually(t, 90*time.Second, time.Second, "server "+serverID+" ACTIVE again", func() (bool, error) {
			s, err := servers.Get(ctx, w.Project.Compute, serverID).Extract()
			return err == nil && s.Status == "ACTIVE", fmt.Errorf("%v %v", s, err)
		})
	}
	stop(nodes[0])
	wantMetrics(t, podB, `openstack_autoscaler_repair_actions_total{action="start",group="`+group+`",outcome="ok"} 1`,
		`openstack_autoscaler_repair_leader 1`)
	wantMetrics(t, podA, `openstack_autoscaler_repair_leader 0`)
	if m, _ := podA.Metrics(ctx); strings.Contains(m, `openstack_autoscaler_repair_actions_total{`) {
		t.Errorf("pod-a, whose autoscaler does not lead, took a repair step:\n%s", framework.Tail(m, 1500))
	}

	// pod-a's autoscaler takes over: pod-a's provider repairs now, pod-b's does not.
	setHolder("pod-a")
	framework.Eventually(t, 30*time.Second, time.Second, "pod-a leads repair", func() (bool, error) {
		m, err := podA.Metrics(ctx)
		return err == nil && strings.Contains(m, "openstack_autoscaler_repair_leader 1"), err
	})
	stop(nodes[1])
	wantMetrics(t, podA, `openstack_autoscaler_repair_actions_total{action="start",group="`+group+`",outcome="ok"} 1`)
	wantMetrics(t, podB, `openstack_autoscaler_repair_actions_total{action="start",group="`+group+`",outcome="ok"} 1`,
		`openstack_autoscaler_repair_leader 0`)
}
