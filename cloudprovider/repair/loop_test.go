package repair

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodegroup"
)

// fakeCloud is a group of servers; it records the calls the loop makes.
type fakeCloud struct {
	nodegroup.Group
	mu       sync.Mutex
	servers  map[string]servers.Server
	calls    []string
	busy     bool
	replaced map[string]bool
	// giveUp, when set, is why every replacement fails: the server stays.
	giveUp string
	failed map[string]string
}

func (c *fakeCloud) ID() string               { return "g" }
func (c *fakeCloud) Config() config.NodeGroup { return config.NodeGroup{Name: "g"} }
func (c *fakeCloud) Busy() bool               { return c.busy }

func (c *fakeCloud) Member(providerID string) (nodegroup.Repairable, servers.Server, bool) {
	id, _ := membership.ServerID(providerID)
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.servers[id]
	return c, s, ok
}

func (c *fakeCloud) record(call string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, call)
}

func (c *fakeCloud) Start(_ context.Context, id string) error { c.record("start " + id); return nil }
func (c *fakeCloud) Reboot(_ context.Context, id string, hard bool) error {
	if hard {
		c.record("hard-reboot " + id)
	} else {
		c.record("soft-reboot " + id)
	}
	return nil
}

func (c *fakeCloud) Replace(id string) error {
	c.record("replace " + id)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.giveUp != "" {
		if c.failed == nil {
			c.failed = map[string]string{}
		}
		c.failed[id] = c.giveUp // the successor failed: the old server stays
		return nil
	}
	delete(c.servers, id) // the server goes, as Nova deletes it
	return nil
}

func (c *fakeCloud) ReplaceFailed(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed[id]
}

func (c *fakeCloud) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

var (
	t0  = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	old = metav1.NewTime(t0.Add(-time.Hour))
)

func node(name, serverID string, ready corev1.ConditionStatus) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), CreationTimestamp: old},
		Spec:       corev1.NodeSpec{ProviderID: membership.ProviderID(serverID)},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready, LastTransitionTime: old}}},
	}
}

type harness struct {
	loop     *Loop
	kube     *fake.Clientset
	cloud    *fakeCloud
	recorder *record.FakeRecorder
	factory  informers.SharedInformerFactory
}

func newHarness(t *testing.T, cloud *fakeCloud, objects ...runtime.Object) *harness {
	kube := fake.NewClientset(objects...)
	factory := informers.NewSharedInformerFactory(kube, 0)
	h := &harness{kube: kube, cloud: cloud, recorder: record.NewFakeRecorder(100), factory: factory}
	h.loop = &Loop{Kube: kube, Nodes: factory.Core().V1().Nodes().Lister(), Cloud: cloud,
		PolicyFor: func(nodegroup.Group) (Policy, bool) { return DefaultPolicy, true },
		Interval:  time.Second, DrainTimeout: 3 * time.Second, Recorder: h.recorder,
		Metrics: NewMetrics(prometheus.NewRegistry()), Now: func() time.Time { return t0 }}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return h
}

// pass runs one look and waits for the steps it started.
func (h *harness) pass(t *testing.T) {
	t.Helper()
	h.loop.Pass(context.Background())
	h.loop.steps.Wait()
}

// waitCached waits until the loop's Node lister shows the node as cond wants.
func (h *harness) waitCached(t *testing.T, name string, cond func(*corev1.Node) bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		n, err := h.loop.Nodes.Get(name)
		return err == nil && cond(n), nil
	})
	if err != nil {
		t.Fatalf("node informer did not show the change to %s: %v", name, err)
	}
}

func (h *harness) events() []string {
	var out []string
	for {
		select {
		case e := <-h.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func countPrefix(list []string, prefix string) int {
	n := 0
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

func TestStoppedServerIsStartedOnceAndTheStepRemembered(t *testing.T) {
	cloud := &fakeCloud{servers: map[string]servers.Server{"s1": {ID: "s1", Status: "SHUTOFF"}, "s2": {ID: "s2", Status: "ACTIVE"}}}
	h := newHarness(t, cloud, node("n1", "s1", corev1.ConditionFalse), node("n2", "s2", corev1.ConditionTrue))
	h.pass(t)
	h.pass(t) // the step is remembered: no second start within escalateAfter
	if got := cloud.Calls(); len(got) != 1 || got[0] != "start s1" {
		t.Fatalf("calls = %v, want one start of s1", got)
	}
	n, err := h.kube.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Annotations[StepAnnotation] != "start" || n.Annotations[StepAtAnnotation] != t0.Format(time.RFC3339) {
		t.Errorf("annotations = %v, want the start step and its time", n.Annotations)
	}
	if evs := h.events(); countPrefix(evs, "Normal "+ReasonStart) != 1 {
		t.Errorf("events = %v, want one %s", evs, ReasonStart)
	}

	// The server runs again and the node is Ready: the memory is cleared, and it is said.
	cloud.servers["s1"] = servers.Server{ID: "s1", Status: "ACTIVE"}
	n.Status.Conditions[0].Status = corev1.ConditionTrue
	if _, err := h.kube.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitCached(t, "n1", func(n *corev1.Node) bool {
		return n.Status.Conditions[0].Status == corev1.ConditionTrue && n.Annotations[StepAnnotation] == "start"
	})
	h.pass(t)
	n, _ = h.kube.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	if _, has := n.Annotations[StepAnnotation]; has {
		t.Errorf("annotations = %v after recovery, want none", n.Annotations)
	}
	if evs := h.events(); countPrefix(evs, "Normal "+ReasonRepaired) != 1 {
		t.Errorf("events = %v, want %s", evs, ReasonRepaired)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	cloud := &fakeCloud{servers: map[string]servers.Server{"s1": {ID: "s1", Status: "ERROR"}, "s2": {ID: "s2", Status: "ACTIVE"}, "s3": {ID: "s3", Status: "ACTIVE"}}}
	h := newHarness(t, cloud, node("n1", "s1", corev1.ConditionFalse), node("n2", "s2", corev1.ConditionTrue), node("n3", "s3", corev1.ConditionTrue))
	h.loop.DryRun = true
	h.pass(t)
	h.pass(t)
	if got := cloud.Calls(); len(got) != 0 {
		t.Errorf("dry run made calls %v", got)
	}
	for _, a := range h.kube.Actions() {
		if a.GetVerb() != "list" && a.GetVerb() != "watch" {
			t.Errorf("dry run wrote to the API: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
	if evs := h.events(); countPrefix(evs, "Normal "+ReasonDryRun+" dry run: would replace server s1") != 1 {
		t.Errorf("events = %v, want one dry-run event naming the replacement", evs)
	}
}

func TestTooManyUnhealthyIsHeldAndSaidOnce(t *testing.T) {
	cloud := &fakeCloud{servers: map[string]servers.Server{"s1": {ID: "s1", Status: "SHUTOFF"}, "s2": {ID: "s2", Status: "SHUTOFF"}, "s3": {ID: "s3", Status: "ACTIVE"}}}
	h := newHarness(t, cloud, node("n1", "s1", corev1.ConditionFalse), node("n2", "s2", corev1.ConditionFalse), node("n3", "s3", corev1.ConditionTrue))
	h.pass(t)
	h.pass(t)
	if got := cloud.Calls(); len(got) != 0 {
		t.Errorf("calls = %v with 2 of 3 nodes broken, want none", got)
	}
	evs := h.events()
	if countPrefix(evs, "Warning "+ReasonHeld+" not repaired: 2 of 3 nodes") != 2 {
		t.Errorf("events = %v, want one held event per broken node", evs)
	}
}

func TestReplaceDrainsWithinTheTimeoutThenReplacesAndDeletesTheNode(t *testing.T) {
	cloud := &fakeCloud{servers: map[string]servers.Server{"s1": {ID: "s1", Status: "ERROR"}, "s2": {ID: "s2", Status: "ACTIVE"}, "s3": {ID: "s3", Status: "ACTIVE"}}}
	controller := true
	pods := []runtime.Object{
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: corev1.PodSpec{NodeName: "n1"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"}, Spec: corev1.PodSpec{NodeName: "n1"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "kube-system",
			OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Name: "agent", Controller: &controller}}}, Spec: corev1.PodSpec{NodeName: "n1"}},
	}
	h := newHarness(t, cloud, append(pods, node("n1", "s1", corev1.ConditionFalse), node("n2", "s2", corev1.ConditionTrue), node("n3", "s3", corev1.ConditionTrue))...)
	var evicted []string
	var mu sync.Mutex
	h.kube.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		name := a.(k8stesting.CreateAction).GetObject().(metav1.Object).GetName()
		if name == "db" { // its PodDisruptionBudget allows no disruption
			return true, nil, apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 1)
		}
		mu.Lock()
		evicted = append(evicted, name)
		mu.Unlock()
		return true, nil, nil
	})
	h.pass(t)
	if got := cloud.Calls(); len(got) != 1 || got[0] != "replace s1" {
		t.Errorf("calls = %v, want the replacement of s1", got)
	}
	if len(evicted) != 1 || evicted[0] != "web" {
		t.Errorf("evicted %v, want web only (db held by its budget, the DaemonSet pod left)", evicted)
	}
	evs := h.events()
	if countPrefix(evs, "Warning "+ReasonDrainTimeout) != 1 || !strings.Contains(strings.Join(evs, "\n"), "default/db") {
		t.Errorf("events = %v, want a drain timeout naming default/db", evs)
	}
	if _, err := h.kube.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node n1 after its replacement: err = %v, want it deleted", err)
	}
	var cordoned bool
	for _, a := range h.kube.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok && a.GetResource() == (schema.GroupVersionResource{Version: "v1", Resource: "nodes"}) &&
			strings.Contains(string(p.GetPatch()), `"unschedulable":true`) {
			cordoned = true
		}
	}
	if !cordoned {
		t.Error("node was not cordoned before the drain")
	}
}

func TestUnhealthyGaugeIsWithdrawnWhenTheGroupHasNoNodesLeft(t *testing.T) {
	cloud := &fakeCloud{servers: map[string]servers.Server{"s1": {ID: "s1", Status: "SHUTOFF"}, "s2": {ID: "s2", Status: "SHUTOFF"}}}
	h := newHarness(t, cloud, node("n1", "s1", corev1.ConditionFalse), node("n2", "s2", corev1.ConditionFalse))
	h.pass(t)
	if got := testutil.ToFloat64(h.loop.Metrics.unhealthy.WithLabelValues("g")); got != 2 {
		t.Fatalf("unhealthy nodes of g = %v, want 2", got)
	}
	for _, n := range []string{"n1", "n2"} {
		if err := h.kube.CoreV1().Nodes().Delete(context.Background(), n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		list, err := h.loop.Nodes.List(labels.Everything())
		return err == nil && len(list) == 0, nil
	})
	if err != nil {
		t.Fatal("node informer still shows nodes")
	}
	h.pass(t)
	if n := testutil.CollectAndCount(h.loop.Metrics.unhealthy); n != 0 {
		t.Errorf("%d unhealthy-node series after the group's last node went, want none (not a stale count)", n)
	}
}

// The repair Lease cannot be renewed for a while (the API server refuses it): this replica stops
// repairing and, once renewals go through again, campaigns and repairs again (it used to stop
// for good after one lost renewal).
func TestRepairCampaignsAgainAfterLosingTheLease(t *testing.T) {
	kube := fake.NewClientset()
	var refusing atomic.Bool
	refuse := func(k8stesting.Action) (bool, runtime.Object, error) {
		if refusing.Load() {
			return true, nil, errors.New("the API server is unavailable")
		}
		return false, nil, nil
	}
	kube.PrependReactor("update", "leases", refuse)
	kube.PrependReactor("get", "leases", refuse)
	metrics := NewMetrics(prometheus.NewRegistry())
	loop := &Loop{Cloud: &fakeCloud{}, PolicyFor: func(nodegroup.Group) (Policy, bool) { return DefaultPolicy, true },
		Interval: 50 * time.Millisecond, Metrics: metrics}
	election := Election{Namespace: "kube-system", Name: "openstack-provider-repair", Identity: "replica-a",
		LeaseDuration: time.Second, RenewDeadline: 500 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { RunElected(ctx, kube, election, loop); close(done) }()
	defer func() { cancel(); <-done }()
	leading := func() bool { return testutil.ToFloat64(metrics.leader) == 1 }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 20*time.Second, true,
			func(context.Context) (bool, error) { return cond(), nil }); err != nil {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
	waitFor("replica-a leads", leading)
	refusing.Store(true)
	waitFor("replica-a stops leading", func() bool { return !leading() })
	refusing.Store(false)
	waitFor("replica-a leads again", leading)
}

// Two pods each run an autoscaler and a provider; repair acts only in the pod whose autoscaler
// holds the autoscaler's Lease (the other pod cannot see the scaling in progress).
func TestRepairActsOnlyWhereTheAutoscalerLeads(t *testing.T) {
	stopped := node("n1", "s1", corev1.ConditionTrue)
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "osa", Name: "cluster-autoscaler"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("pod-b"), RenewTime: &metav1.MicroTime{Time: time.Now()}, LeaseDurationSeconds: ptr.To(int32(15))}}
	for pod, wantStart := range map[string]bool{"pod-a": false, "pod-b": true} {
		cloud := &fakeCloud{servers: map[string]servers.Server{"s1": {ID: "s1", Status: "SHUTOFF"}}}
		h := newHarness(t, cloud, stopped.DeepCopy(), lease.DeepCopy())
		h.loop.Gate = WithAutoscaler(h.kube, "osa", "cluster-autoscaler", pod)
		h.pass(t)
		started := slices.Contains(cloud.Calls(), "start s1")
		if started != wantStart {
			t.Errorf("%s (the autoscaler leads in pod-b): started the server = %v, want %v (calls %v)", pod, started, wantStart, cloud.Calls())
		}
		held := testutil.ToFloat64(h.loop.Metrics.held.WithLabelValues("", string(HoldElsewhere)))
		if (held > 0) == wantStart {
			t.Errorf("%s: held{hold=autoscaler-elsewhere} = %v", pod, held)
		}
	}
	// An expired Lease: no autoscaler leads anywhere, nothing is repaired.
	expired := lease.DeepCopy()
	expired.Spec.RenewTime = &metav1.MicroTime{Time: time.Now().Add(-time.Minute)}
	cloud := &fakeCloud{servers: map[string]servers.Server{"s1": {ID: "s1", Status: "SHUTOFF"}}}
	h := newHarness(t, cloud, stopped.DeepCopy(), expired)
	h.loop.Gate = WithAutoscaler(h.kube, "osa", "cluster-autoscaler", "pod-b")
	h.pass(t)
	if len(cloud.Calls()) != 0 {
		t.Errorf("expired autoscaler Lease: calls %v, want none", cloud.Calls())
	}
}

// twoGroups is a cloud of two groups of fakeCloud servers (one broken node each is each
// group's lone unhealthy node, which the group guard alone would repair).
type twoGroups map[string]*namedGroup

type namedGroup struct {
	*fakeCloud
	id string
}

func (g *namedGroup) ID() string { return g.id }

func (c twoGroups) Member(providerID string) (nodegroup.Repairable, servers.Server, bool) {
	for _, g := range c {
		if _, s, ok := g.fakeCloud.Member(providerID); ok {
			return g, s, true
		}
	}
	return nil, servers.Server{}, false
}
func (c twoGroups) Start(ctx context.Context, id string) error { return c["g1"].Start(ctx, id) }
func (c twoGroups) Reboot(ctx context.Context, id string, hard bool) error {
	return c["g1"].Reboot(ctx, id, hard)
}

// One node broken in each of two small groups of the same zone: each is its group's lone
// unhealthy node, but half the zone (and the cluster) is down: a wide fault, nothing repaired.
func TestAWideFaultIsNotOneBrokenNodePerGroup(t *testing.T) {
	inZone := func(n *corev1.Node, zone string) *corev1.Node {
		n.Labels = map[string]string{ZoneLabel: zone}
		return n
	}
	g1 := &fakeCloud{servers: map[string]servers.Server{"a1": {ID: "a1", Status: "ACTIVE"}, "a2": {ID: "a2", Status: "ACTIVE"}}}
	g2 := &fakeCloud{servers: map[string]servers.Server{"b1": {ID: "b1", Status: "ACTIVE"}, "b2": {ID: "b2", Status: "ACTIVE"}}}
	cloud := twoGroups{"g1": {g1, "g1"}, "g2": {g2, "g2"}}
	h := newHarness(t, g1,
		inZone(node("a1", "a1", corev1.ConditionFalse), "nova-a"), inZone(node("a2", "a2", corev1.ConditionTrue), "nova-a"),
		inZone(node("b1", "b1", corev1.ConditionFalse), "nova-a"), inZone(node("b2", "b2", corev1.ConditionTrue), "nova-a"))
	h.loop.Cloud = cloud
	h.loop.MaxZoneUnhealthy = 0.4
	h.pass(t)
	if calls := append(g1.Calls(), g2.Calls()...); len(calls) != 0 {
		t.Errorf("calls %v: want none (2 of 4 nodes of zone nova-a unhealthy)", calls)
	}
	if held := testutil.ToFloat64(h.loop.Metrics.held.WithLabelValues("g1", string(HoldWide))); held != 1 {
		t.Errorf("held{g1, wide-fault} = %v, want 1", held)
	}
	// Without the zone guard, each group's lone unhealthy node would be rebooted.
	h.loop.MaxZoneUnhealthy = 0
	h.pass(t)
	if calls := g1.Calls(); len(calls) != 2 {
		t.Errorf("without the zone guard: calls %v, want the two soft reboots", calls)
	}
}

// A replacement the group gives up (its successor went to ERROR) is a failed step, said in an
// Event, never "replaced": the node is not deleted, the group keeps its server, and the next
// step (after EscalateAfter) asks for the replacement again. The loop used to wait for the
// server to go for 15 minutes and then report nothing but "still listed".
func TestGivenUpReplacementIsAFailedStepAndIsRetried(t *testing.T) {
	cloud := &fakeCloud{giveUp: "successor s9 went to ERROR: No valid host was found.",
		servers: map[string]servers.Server{"s1": {ID: "s1", Status: "ERROR"}, "s2": {ID: "s2", Status: "ACTIVE"}, "s3": {ID: "s3", Status: "ACTIVE"}}}
	h := newHarness(t, cloud, node("n1", "s1", corev1.ConditionFalse), node("n2", "s2", corev1.ConditionTrue), node("n3", "s3", corev1.ConditionTrue))
	h.loop.ReplacePoll = time.Millisecond
	done := make(chan struct{})
	go func() { h.pass(t); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the replacement step did not end although the group gave it up")
	}
	evs := h.events()
	if countPrefix(evs, "Warning "+ReasonFailed+" replace server s1 failed: replacement given up") != 1 ||
		!slices.ContainsFunc(evs, func(e string) bool { return strings.Contains(e, "No valid host") }) {
		t.Errorf("events = %v, want one %s naming the successor's fault", evs, ReasonFailed)
	}
	if _, err := h.kube.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{}); err != nil {
		t.Errorf("node n1 after a failed replacement: %v (it must stay)", err)
	}
	if got := testutil.ToFloat64(h.loop.Metrics.actions.WithLabelValues("g", string(Replace), "failed")); got != 1 {
		t.Errorf("failed replace actions = %v, want 1", got)
	}
	// The next step, once EscalateAfter has passed, asks again (and this time it works).
	h.waitCached(t, "n1", func(n *corev1.Node) bool { return n.Annotations[StepAnnotation] == string(Replace) })
	cloud.mu.Lock()
	cloud.giveUp = ""
	delete(cloud.failed, "s1")
	cloud.mu.Unlock()
	h.loop.Now = func() time.Time { return t0.Add(DefaultPolicy.EscalateAfter + time.Second) }
	h.pass(t)
	if got := cloud.Calls(); countPrefix(got, "replace s1") != 2 {
		t.Errorf("calls = %v, want the replacement asked again by the next step", got)
	}
	if _, err := h.kube.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node n1 after the second, successful replacement: %v, want it deleted", err)
	}
}
