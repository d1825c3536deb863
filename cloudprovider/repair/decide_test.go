package repair

import (
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	corev1 "k8s.io/api/core/v1"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	old := now.Add(-time.Hour)
	p := DefaultPolicy
	group := GroupState{Nodes: 5, Unhealthy: 1}
	for _, tc := range []struct {
		name   string
		node   NodeState
		group  GroupState
		want   Action
		reason string
	}{
		{"healthy", NodeState{Created: old, Ready: "True", ReadySince: old, ServerStatus: "ACTIVE"}, group, None, "healthy"},
		{"NotReady for 4m: not yet", NodeState{Created: old, Ready: "False", ReadySince: now.Add(-4 * time.Minute), ServerStatus: "ACTIVE"}, group, None, "healthy"},
		{"NotReady for 6m: soft reboot", NodeState{Created: old, Ready: "Unknown", ReadySince: now.Add(-6 * time.Minute), ServerStatus: "ACTIVE"}, group, SoftReboot, "NotReady"},
		{"SHUTOFF: start at once", NodeState{Created: old, Ready: "True", ReadySince: old, ServerStatus: "SHUTOFF"}, group, Start, "SHUTOFF"},
		{"ERROR: replace at once", NodeState{Created: old, Ready: "False", ReadySince: now.Add(-time.Minute), ServerStatus: "ERROR"}, group, Replace, "ERROR"},
		{"ERROR, replacement under way", NodeState{Created: old, Ready: "False", ReadySince: old, ServerStatus: "ERROR", LastStep: Replace, LastStepAt: now.Add(-2 * time.Minute)}, group, None, "waiting"},
		{"replacement failed: again", NodeState{Created: old, Ready: "False", ReadySince: old, ServerStatus: "ERROR", LastStep: Replace, LastStepAt: now.Add(-6 * time.Minute)}, group, Replace, "ERROR"},
		{"young node", NodeState{Created: now.Add(-5 * time.Minute), Ready: "False", ReadySince: now.Add(-5 * time.Minute), ServerStatus: "SHUTOFF"}, group, None, "grace period"},
		{"group scaling", NodeState{Created: old, Ready: "False", ReadySince: old, ServerStatus: "ACTIVE"}, GroupState{Nodes: 5, Unhealthy: 1, Scaling: true}, None, "scale operation"},
		{"3 of 5 unhealthy", NodeState{Created: old, Ready: "False", ReadySince: old, ServerStatus: "ACTIVE"}, GroupState{Nodes: 5, Unhealthy: 3}, None, "3 of 5 nodes"},
		{"1 of 1 unhealthy: a lone node is repaired", NodeState{Created: old, Ready: "False", ReadySince: old, ServerStatus: "SHUTOFF"}, GroupState{Nodes: 1, Unhealthy: 1}, Start, ""},
		{"2 of 2 unhealthy", NodeState{Created: old, Ready: "False", ReadySince: old, ServerStatus: "SHUTOFF"}, GroupState{Nodes: 2, Unhealthy: 2}, None, "2 of 2 nodes"},
		{"2 of 5 unhealthy is 40%: repaired", NodeState{Created: old, Ready: "False", ReadySince: old, ServerStatus: "ACTIVE"}, GroupState{Nodes: 5, Unhealthy: 2}, SoftReboot, ""},
		{"soft reboot 2m ago: wait", NodeState{Created: old, Ready: "False", ReadySince: old, ServerStatus: "ACTIVE", LastStep: SoftReboot, LastStepAt: now.Add(-2 * time.Minute)}, group, None, "waiting"},
		{"soft reboot 6m ago: hard reboot", NodeState{Created: old, Ready: "False", ReadySince: old, ServerStatus: "ACTIVE", LastStep: SoftReboot, LastStepAt: now.Add(-6 * time.Minute)}, group, HardReboot, "soft reboot"},
		{"hard reboot 6m ago: replace", NodeState{Created: old, Ready: "False", ReadySince: old, ServerStatus: "ACTIVE", LastStep: HardReboot, LastStepAt: now.Add(-6 * time.Minute)}, group, Replace, "hard reboot"},
		{"started but still down: soft reboot", NodeState{Created: old, Ready: "False", ReadySince: old, ServerStatus: "ACTIVE", LastStep: Start, LastStepAt: now.Add(-6 * time.Minute)}, group, SoftReboot, ""},
		{"replacement under way", NodeState{Created: old, Ready: "False", ReadySince: old, ServerStatus: "ACTIVE", LastStep: Replace, LastStepAt: now.Add(-2 * time.Minute)}, group, None, "waiting"},
		{"replaced node still here", NodeState{Created: old, Ready: "False", ReadySince: old, ServerStatus: "ACTIVE", LastStep: Replace, LastStepAt: now.Add(-6 * time.Minute)}, group, Replace, "after its replacement"},
		{"being removed by the autoscaler", NodeState{Created: old, Ready: "False", ReadySince: old, ServerStatus: "ERROR", Removing: true}, group, None, "ToBeDeletedByClusterAutoscaler"},
		{"stale view of OpenStack", NodeState{Created: old, Ready: "False", ReadySince: old, ServerStatus: "SHUTOFF"}, GroupState{Nodes: 5, Unhealthy: 1, Stale: "no refresh for 2m"}, None, "stale"},
		{"lone unhealthy node of its group in a wide fault", NodeState{Created: old, Ready: "False", ReadySince: old, ServerStatus: "ACTIVE"},
			GroupState{Nodes: 2, Unhealthy: 1, WideFault: WideFault("zone nova-a", 6, 8, 0.5)}, None, "6 of 8 nodes of zone nova-a"},
	} {
		got, reason, _ := p.Decide(tc.node, tc.group, now)
		if got != tc.want || !strings.Contains(reason, tc.reason) {
			t.Errorf("%s: Decide = %q (%s), want %q with a reason containing %q", tc.name, got, reason, tc.want, tc.reason)
		}
	}
}

// A node cluster-autoscaler is draining for removal carries its taint: the loop reads it.
func TestStateOfReadsTheAutoscalersRemovalTaint(t *testing.T) {
	n := &corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: ToBeDeletedTaint, Value: "1764849600", Effect: corev1.TaintEffectNoSchedule}}}}
	if !stateOf(n, servers.Server{Status: "ERROR"}).Removing {
		t.Error("a node with the ToBeDeletedByClusterAutoscaler taint is not seen as being removed")
	}
	if stateOf(&corev1.Node{}, servers.Server{}).Removing {
		t.Error("an untainted node is seen as being removed")
	}
}

func TestWideFault(t *testing.T) {
	for _, tc := range []struct {
		unhealthy, nodes int
		wide             bool
	}{{1, 1, false}, {1, 10, false}, {3, 10, false}, {4, 10, true}, {2, 2, true}} {
		if got := WideFault("the cluster", tc.unhealthy, tc.nodes, 0.3) != ""; got != tc.wide {
			t.Errorf("%d of %d unhealthy, 30%%: wide %v, want %v", tc.unhealthy, tc.nodes, got, tc.wide)
		}
	}
}
