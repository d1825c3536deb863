package repair

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodegroup"
)

// Annotations on the Node remember the last step across restarts of the provider (and changes
// of leader), so a node is never repaired twice at once nor escalated too early.
const (
	StepAnnotation   = "openstack-autoscaler.io/repair-step"
	StepAtAnnotation = "openstack-autoscaler.io/repair-step-at"
)

// ToBeDeletedTaint is the taint cluster-autoscaler puts on a node it is draining to remove it.
const ToBeDeletedTaint = "ToBeDeletedByClusterAutoscaler"

// Event reasons on the Node.
const (
	ReasonStart        = "RepairStart"
	ReasonSoftReboot   = "RepairSoftReboot"
	ReasonHardReboot   = "RepairHardReboot"
	ReasonReplace      = "RepairReplace"
	ReasonDrainTimeout = "RepairDrainTimeout"
	ReasonFailed       = "RepairFailed"
	ReasonHeld         = "RepairHeld"
	ReasonRepaired     = "Repaired"
	ReasonDryRun       = "RepairDryRun"
)

var stepReason = map[Action]string{Start: ReasonStart, SoftReboot: ReasonSoftReboot, HardReboot: ReasonHardReboot, Replace: ReasonReplace}

// Cloud is what the loop needs of the provider.
type Cloud interface {
	// Member finds the group and the server of a node from its providerID, as last refreshed;
	// ok is false for nodes that are not members of a group.
	Member(providerID string) (group nodegroup.Repairable, server servers.Server, ok bool)
	// Start powers a stopped server on; Reboot reboots it (hard: power cycle).
	Start(ctx context.Context, serverID string) error
	Reboot(ctx context.Context, serverID string, hard bool) error
}

// Loop looks at every node of every group each Interval and takes at most one step per node.
type Loop struct {
	Kube  kubernetes.Interface
	Nodes corelisters.NodeLister
	Cloud Cloud
	// PolicyFor returns a group's policy; ok false means repair is off for the group.
	PolicyFor func(group nodegroup.Group) (policy Policy, ok bool)
	// MaxClusterUnhealthy and MaxZoneUnhealthy: above these shares of unhealthy nodes across
	// every group, or within one availability zone, no node there is repaired (0: no limit).
	MaxClusterUnhealthy, MaxZoneUnhealthy float64
	// Gate, when set, says whether this replica may repair now, and why not (see
	// WithAutoscaler); while it says no, no node is repaired.
	Gate func(ctx context.Context) (ok bool, reason string)
	// Stale, when set, says why the view of a group's servers cannot be trusted now ("" when
	// it is fresh): nothing of the group is repaired meanwhile.
	Stale        func(group nodegroup.Group) string
	Interval     time.Duration
	DrainTimeout time.Duration
	// ReplacePoll is how often a replacement's progress is read (default 1 s).
	ReplacePoll time.Duration
	DryRun      bool
	Recorder    record.EventRecorder
	Metrics     *Metrics
	Now         func() time.Time

	mu     sync.Mutex
	active map[string]bool     // nodes with a step under way
	taken  map[types.UID]taken // the last step per node, also before the informer shows the annotation
	told   map[string]string   // node → the last hold (or dry-run step) reported, to report each once
	steps  sync.WaitGroup
	// gauged: the groups whose unhealthy-node gauge the last pass set (Pass runs on one goroutine).
	gauged map[string]bool
	// gateReason is why the gate last said no (logged once per reason).
	gateReason string
}

// Run passes over the nodes every Interval until ctx ends, then waits for steps under way.
func (l *Loop) Run(ctx context.Context) {
	klog.InfoS("node repair running", "interval", l.Interval, "dryRun", l.DryRun, "drainTimeout", l.DrainTimeout)
	wait.UntilWithContext(ctx, l.Pass, l.Interval)
	l.steps.Wait()
}

type taken struct {
	step Action
	at   time.Time
}

type candidate struct {
	node   *corev1.Node
	server servers.Server
	state  NodeState
}

// Pass makes one look at the nodes; steps it decides on run in the background.
func (l *Loop) Pass(ctx context.Context) {
	if l.Gate != nil {
		ok, reason := l.Gate(ctx)
		if ok {
			l.Metrics.leader.Set(1)
		} else {
			l.Metrics.leader.Set(0)
		}
		if !ok {
			l.Metrics.held.WithLabelValues("", string(HoldElsewhere)).Inc()
			l.mu.Lock()
			if l.gateReason != reason {
				klog.InfoS("node repair waits", "reason", reason)
				l.gateReason = reason
			}
			l.mu.Unlock()
			return
		}
		l.mu.Lock()
		l.gateReason = ""
		l.mu.Unlock()
	}
	nodes, err := l.Nodes.List(labels.Everything())
	if err != nil {
		klog.ErrorS(err, "listing nodes for repair")
		return
	}
	l.forgetGone(nodes)
	groups := map[string]nodegroup.Repairable{}
	byGroup := map[string][]candidate{}
	for _, n := range nodes {
		g, s, ok := l.Cloud.Member(n.Spec.ProviderID)
		if !ok {
			continue
		}
		groups[g.ID()] = g
		state := stateOf(n, s)
		l.mu.Lock()
		if t, ok := l.taken[n.UID]; ok && t.at.After(state.LastStepAt) {
			state.LastStep, state.LastStepAt = t.step, t.at
		}
		l.mu.Unlock()
		byGroup[g.ID()] = append(byGroup[g.ID()], candidate{node: n, server: s, state: state})
	}
	now := l.now()
	wide := l.wideFaults(byGroup, now)
	gauged := map[string]bool{}
	defer func() {
		// A group that lost its last node, or whose repair was turned off, reports nothing
		// rather than its last count.
		for id := range l.gauged {
			if !gauged[id] {
				l.Metrics.unhealthy.DeleteLabelValues(id)
			}
		}
		l.gauged = gauged
	}()
	for id, cands := range byGroup {
		group := groups[id]
		policy, on := l.PolicyFor(group)
		if !on {
			continue
		}
		gs := GroupState{Nodes: len(cands), Scaling: group.Busy()}
		if l.Stale != nil {
			gs.Stale = l.Stale(group)
		}
		// For the group's share, a node counts as soon as it is not Ready: nodes cut off by the
		// same network fault go NotReady within seconds of each other, and the first must not
		// be repaired alone because the others have not been NotReady long enough yet.
		for _, c := range cands {
			if policy.Unhealthy(c.state, now) || c.state.Ready != string(corev1.ConditionTrue) {
				gs.Unhealthy++
			}
		}
		l.Metrics.unhealthy.WithLabelValues(id).Set(float64(gs.Unhealthy))
		gauged[id] = true
		for _, c := range cands {
			if l.isActive(c.node.Name) {
				continue
			}
			gs := gs
			gs.WideFault = wide(c.node)
			action, reason, hold := policy.Decide(c.state, gs, now)
			switch {
			case action == None && hold == NotHeld && c.state.LastStep != None:
				l.repaired(ctx, id, c)
			case action == None && hold != NotHeld && hold != HoldWaiting:
				l.held(id, c, hold, reason)
			case action != None:
				l.begin(ctx, group, c, action, reason)
			}
		}
	}
}

// ZoneLabel is the label that names a node's availability zone.
const ZoneLabel = "topology.kubernetes.io/zone"

// wideFaults counts unhealthy nodes across every group, in all and per zone (with the group
// guard's rule: a node counts as soon as it is not Ready), and returns what holds a node
// because of them ("" when nothing does).
func (l *Loop) wideFaults(byGroup map[string][]candidate, now time.Time) func(*corev1.Node) string {
	type count struct{ nodes, unhealthy int }
	var all count
	zones := map[string]*count{}
	for _, cands := range byGroup {
		for _, c := range cands {
			zone := c.node.Labels[ZoneLabel]
			if zones[zone] == nil {
				zones[zone] = &count{}
			}
			all.nodes++
			zones[zone].nodes++
			if DefaultPolicy.Unhealthy(c.state, now) || c.state.Ready != string(corev1.ConditionTrue) {
				all.unhealthy++
				zones[zone].unhealthy++
			}
		}
	}
	cluster := ""
	if l.MaxClusterUnhealthy > 0 {
		cluster = WideFault("the cluster", all.unhealthy, all.nodes, l.MaxClusterUnhealthy)
	}
	return func(n *corev1.Node) string {
		if cluster != "" {
			return cluster
		}
		zone := n.Labels[ZoneLabel]
		if z := zones[zone]; l.MaxZoneUnhealthy > 0 && zone != "" && z != nil {
			return WideFault("zone "+zone, z.unhealthy, z.nodes, l.MaxZoneUnhealthy)
		}
		return ""
	}
}

// forgetGone drops what is remembered of nodes that no longer exist (replaced, scaled down).
func (l *Loop) forgetGone(nodes []*corev1.Node) {
	names, uids := make(map[string]bool, len(nodes)), make(map[types.UID]bool, len(nodes))
	for _, n := range nodes {
		names[n.Name], uids[n.UID] = true, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for uid := range l.taken {
		if !uids[uid] {
			delete(l.taken, uid)
		}
	}
	for name := range l.told {
		if !names[name] {
			delete(l.told, name)
		}
	}
}

func (l *Loop) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// stateOf reads what the decision needs from the Node and its server.
func stateOf(n *corev1.Node, s servers.Server) NodeState {
	st := NodeState{Created: n.CreationTimestamp.Time, Ready: string(corev1.ConditionUnknown), ReadySince: n.CreationTimestamp.Time, ServerStatus: s.Status}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			st.Ready, st.ReadySince = string(c.Status), c.LastTransitionTime.Time
		}
	}
	for _, t := range n.Spec.Taints {
		st.Removing = st.Removing || t.Key == ToBeDeletedTaint
	}
	if step := n.Annotations[StepAnnotation]; step != "" {
		st.LastStep = Action(step)
		if at, err := time.Parse(time.RFC3339, n.Annotations[StepAtAnnotation]); err == nil {
			st.LastStepAt = at
		}
	}
	return st
}

func (l *Loop) isActive(node string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active[node]
}

// tellOnce reports to the Node once per distinct message key.
func (l *Loop) tellOnce(node *corev1.Node, key string, eventType, reason, message string) {
	l.mu.Lock()
	if l.told == nil {
		l.told = map[string]string{}
	}
	if l.told[node.Name] == key {
		l.mu.Unlock()
		return
	}
	l.told[node.Name] = key
	l.mu.Unlock()
	l.Recorder.Event(node, eventType, reason, message)
}

func (l *Loop) held(group string, c candidate, hold Hold, reason string) {
	l.Metrics.held.WithLabelValues(group, string(hold)).Inc()
	klog.V(2).InfoS("unhealthy node left alone", "node", c.node.Name, "group", group, "hold", hold, "reason", reason)
	if hold == HoldTooMany || hold == HoldScaling || hold == HoldStale || hold == HoldRemoving || hold == HoldWide {
		l.tellOnce(c.node, string(hold), corev1.EventTypeWarning, ReasonHeld, "not repaired: "+reason)
	}
}

// repaired clears the memory of a node that is healthy again after a step.
func (l *Loop) repaired(ctx context.Context, group string, c candidate) {
	if l.DryRun {
		return
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:null,%q:null}}}`, StepAnnotation, StepAtAnnotation)
	if _, err := l.Kube.CoreV1().Nodes().Patch(ctx, c.node.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		klog.ErrorS(err, "clearing repair annotations", "node", c.node.Name)
		return
	}
	l.Metrics.repaired.WithLabelValues(group, string(c.state.LastStep)).Inc()
	l.Recorder.Eventf(c.node, corev1.EventTypeNormal, ReasonRepaired, "healthy again after %s", c.state.LastStep)
	klog.InfoS("node repaired", "node", c.node.Name, "group", group, "after", c.state.LastStep)
	l.mu.Lock()
	delete(l.told, c.node.Name)
	delete(l.taken, c.node.UID)
	l.mu.Unlock()
}

// begin records the step on the Node (before acting: a restart mid-step must not repeat it) and
// carries it out in the background.
func (l *Loop) begin(ctx context.Context, group nodegroup.Repairable, c candidate, action Action, reason string) {
	node, serverID := c.node, c.server.ID
	if l.DryRun {
		l.Metrics.actions.WithLabelValues(group.ID(), string(action), "dry-run").Inc()
		klog.InfoS("dry run: would repair", "node", node.Name, "group", group.ID(), "server", serverID, "action", action, "reason", reason)
		l.tellOnce(node, "dry-run:"+string(action), corev1.EventTypeNormal, ReasonDryRun, fmt.Sprintf("dry run: would %s server %s: %s", action, serverID, reason))
		return
	}
	at := l.now().UTC().Truncate(time.Second)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q,%q:%q}}}`, StepAnnotation, action, StepAtAnnotation, at.Format(time.RFC3339))
	if _, err := l.Kube.CoreV1().Nodes().Patch(ctx, node.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		klog.ErrorS(err, "recording the repair step on the node; not repairing it this time", "node", node.Name)
		return
	}
	l.mu.Lock()
	if l.active == nil {
		l.active = map[string]bool{}
	}
	l.active[node.Name] = true
	if l.taken == nil {
		l.taken = map[types.UID]taken{}
	}
	l.taken[node.UID] = taken{step: action, at: at}
	delete(l.told, node.Name)
	l.mu.Unlock()
	klog.InfoS("repairing node", "node", node.Name, "group", group.ID(), "server", serverID, "action", action, "reason", reason)
	l.Recorder.Eventf(node, corev1.EventTypeNormal, stepReason[action], "%s server %s: %s", action, serverID, reason)
	l.steps.Add(1)
	go func() {
		defer l.steps.Done()
		defer func() {
			l.mu.Lock()
			delete(l.active, node.Name)
			l.mu.Unlock()
		}()
		outcome, err := l.carryOut(ctx, group, node, serverID, action)
		l.Metrics.actions.WithLabelValues(group.ID(), string(action), outcome).Inc()
		if err != nil {
			klog.ErrorS(err, "repair step failed", "node", node.Name, "action", action)
			l.Recorder.Eventf(node, corev1.EventTypeWarning, ReasonFailed, "%s server %s failed: %v", action, serverID, err)
		}
	}()
}

func (l *Loop) carryOut(ctx context.Context, group nodegroup.Repairable, node *corev1.Node, serverID string, action Action) (outcome string, err error) {
	callCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	switch action {
	case Start:
		err = l.Cloud.Start(callCtx, serverID)
	case SoftReboot, HardReboot:
		err = l.Cloud.Reboot(callCtx, serverID, action == HardReboot)
	case Replace:
		return l.replace(ctx, group, node, serverID)
	}
	if err != nil {
		return "failed", err
	}
	return "ok", nil
}

// replace cordons and drains the node, replaces its server, and deletes the Node once the
// server is gone (as the cloud node controller would), so the replacement can register.
func (l *Loop) replace(ctx context.Context, group nodegroup.Repairable, node *corev1.Node, serverID string) (string, error) {
	outcome := "ok"
	if err := cordon(ctx, l.Kube, node.Name); err != nil {
		return "failed", fmt.Errorf("cordoning: %w", err)
	}
	held, err := drain(ctx, l.Kube, node.Name, l.DrainTimeout)
	if err != nil {
		return "failed", fmt.Errorf("draining: %w", err)
	}
	if len(held) > 0 {
		outcome = "drain-timeout"
		msg := fmt.Sprintf("eviction refused for %s (PodDisruptionBudget) for %s: %s; replacing the node anyway, the pods go with it",
			l.DrainTimeout, pluralPods(len(held)), strings.Join(held, ", "))
		klog.InfoS("drain timed out", "node", node.Name, "pods", held)
		l.Recorder.Event(node, corev1.EventTypeWarning, ReasonDrainTimeout, msg)
	}
	if err := group.Replace(serverID); err != nil {
		return "failed", err
	}
	providerID := node.Spec.ProviderID
	var gaveUp string
	err = wait.PollUntilContextTimeout(ctx, l.replacePoll(), 20*time.Minute, true, func(context.Context) (bool, error) {
		if gaveUp = group.ReplaceFailed(serverID); gaveUp != "" {
			return true, nil
		}
		_, _, member := l.Cloud.Member(providerID)
		return !member, nil
	})
	if gaveUp != "" {
		// Not done: the old server stays a member and the group keeps its size; the node keeps
		// its step, so the next step (after EscalateAfter) asks for the replacement again.
		return "failed", fmt.Errorf("replacement given up, the server stays in the group (its size is unchanged) and the next repair step tries again: %s", gaveUp)
	}
	if err != nil {
		return "failed", fmt.Errorf("server %s still listed after its replacement was asked: %w", serverID, err)
	}
	// Only this Node object: a node of the same name registered since has another UID.
	uid := node.UID
	err = l.Kube.CoreV1().Nodes().Delete(ctx, node.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return outcome, fmt.Errorf("deleting the replaced node: %w", err)
	}
	klog.InfoS("node replaced", "node", node.Name, "oldServer", serverID, "outcome", outcome)
	return outcome, nil
}

func (l *Loop) replacePoll() time.Duration {
	if l.ReplacePoll > 0 {
		return l.ReplacePoll
	}
	return time.Second
}

func pluralPods(n int) string {
	if n == 1 {
		return "1 pod"
	}
	return fmt.Sprintf("%d pods", n)
}
