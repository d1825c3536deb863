package heat_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/orchestration/v1/stacks"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/heat"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/leader/leadertest"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodegroup"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack/openstacktest"
)

const cluster = "prod"

// newCloud is the fake cloud of a test, which fails if any stack update removed a member it did
// not name.
func newCloud(t *testing.T) *openstacktest.Cloud {
	cloud := openstacktest.NewCloud(t)
	t.Cleanup(func() {
		for _, v := range cloud.Violations() {
			t.Errorf("fake Heat: %s", v)
		}
	})
	return cloud
}

// workers is a stack like examples/heat-node-group.yaml: one ResourceGroup "nodes" of servers.
func workers(cloud *openstacktest.Cloud, count int) (*openstacktest.Stack, *openstacktest.StackGroup) {
	group := &openstacktest.StackGroup{Resource: "nodes", CountParam: "count", RemovalParam: "removal",
		Metadata: membership.Metadata(cluster, "workers")}
	stack := cloud.AddStack("workers", map[string]string{"count": fmt.Sprint(count), "removal": "", "flavor": "m1.small"}, group)
	return stack, group
}

// newGroup makes a group whose updates end with the test.
func newGroup(t *testing.T, cloud *openstacktest.Cloud, name string, heatCfg config.Heat, minSize, maxSize int) *heat.Group {
	cfg := config.NodeGroup{Name: name, Backend: config.BackendHeat, MinSize: minSize, MaxSize: maxSize, Heat: &heatCfg}
	g := heat.New(cfg, cluster, cloud.Clients().Orchestration)
	g.PollInterval = 5 * time.Millisecond
	t.Cleanup(g.Stop)
	return g
}

// observe gives the group one refresh, as the provider's manager does.
func observe(t *testing.T, cloud *openstacktest.Cloud, g *heat.Group) error {
	t.Helper()
	clients := cloud.Clients()
	ctx := context.Background()
	snap := &nodegroup.Snapshot{Started: time.Now()}
	pages, err := servers.List(clients.Compute, servers.ListOpts{}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Servers, err = servers.ExtractServers(pages); err != nil {
		t.Fatal(err)
	}
	stackPages, err := stacks.List(clients.Orchestration, stacks.ListOpts{}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Stacks, err = stacks.ExtractStacks(stackPages); err != nil {
		t.Fatal(err)
	}
	return g.Observe(ctx, snap)
}

func mustObserve(t *testing.T, cloud *openstacktest.Cloud, g *heat.Group) {
	t.Helper()
	if err := observe(t, cloud, g); err != nil {
		t.Fatal(err)
	}
}

func providerID(cloud *openstacktest.Cloud, g *openstacktest.StackGroup, member string) string {
	return membership.ProviderID(cloud.MemberServers(g, member)[0])
}

// A standby replica that read the stack when it held 2 members, after the other replica grew it
// to 5, is asked to remove one named node: exactly that member goes, four stay.
func TestStaleReplicaRemovesExactlyTheNamedMember(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := workers(cloud, 2)
	replicaB := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	mustObserve(t, cloud, replicaB)

	cloud.SetStack(stack, map[string]string{"count": "5"}) // replica A's scale-up
	mustObserve(t, cloud, replicaB)
	if got := replicaB.TargetSize(); got != 5 {
		t.Errorf("after the stack grew to 5, replica B reports target %d", got)
	}
	named := cloud.MemberServers(nodes, "3")[0]
	if err := replicaB.DeleteInstances(context.Background(), []string{membership.ProviderID(named)}); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "the stack update is sent", func() bool { u, _ := cloud.StackUpdates(stack); return len(u) == 1 })
	updates, _ := cloud.StackUpdates(stack)
	if updates[0]["count"] != "4" || updates[0]["removal"] != "3" {
		t.Errorf("update sent %v, want count 4 and removal 3", updates[0])
	}
	if got, want := cloud.StackMembers(nodes), []string{"0", "1", "2", "4"}; !slices.Equal(got, want) {
		t.Errorf("members after the removal: %v, want %v", got, want)
	}
	if cloud.ServerBody(named) != nil {
		t.Errorf("server %s of the named member still exists", named)
	}
	if got := len(cloud.Servers()); got != 4 {
		t.Errorf("%d servers left, want 4", got)
	}
}

// An operator resized the stack by hand; the provider's next scale-up adds to that size instead
// of writing the count it read before (which would delete running members).
func TestScaleUpAddsToTheStackAsItIsNow(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := workers(cloud, 2)
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	mustObserve(t, cloud, g)
	cloud.SetStack(stack, map[string]string{"count": "4"}) // by hand, no refresh since
	if err := g.IncreaseSize(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "the stack update is sent", func() bool { u, _ := cloud.StackUpdates(stack); return len(u) == 1 })
	if got := cloud.StackParam(stack, "count"); got != "5" {
		t.Errorf("count after the scale-up: %s, want 5", got)
	}
	if got := len(cloud.StackMembers(nodes)); got != 5 {
		t.Errorf("%d members, want 5", got)
	}
}

// An update that was to remove a member ends in UPDATE_FAILED: the member is named again in the
// next update, with the count it already has (not lowered a second time), and the group
// reports the failure meanwhile.
func TestFailedRemovalIsSentAgainWithoutLoweringTheCountTwice(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := workers(cloud, 3)
	stack.FailUpdates = 1
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	mustObserve(t, cloud, g)
	if err := g.DeleteInstances(context.Background(), []string{providerID(cloud, nodes, "1")}); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "the first update fails", func() bool { _, status := cloud.StackUpdates(stack); return status == "UPDATE_FAILED" })
	mustObserve(t, cloud, g)
	if !strings.Contains(g.Debug(), "UPDATE_FAILED") && !strings.Contains(g.Debug(), "update failed") {
		t.Errorf("the group does not report the failed update: %s", g.Debug())
	}
	openstacktest.Eventually(t, "the removal is sent again", func() bool { u, _ := cloud.StackUpdates(stack); return len(u) == 2 })
	updates, status := cloud.StackUpdates(stack)
	if updates[1]["count"] != "2" || updates[1]["removal"] != "1" {
		t.Errorf("second update %v, want count 2 and removal 1", updates[1])
	}
	if got, want := cloud.StackMembers(nodes), []string{"0", "2"}; !slices.Equal(got, want) || status != "UPDATE_COMPLETE" {
		t.Errorf("members %v (%s), want %v", got, status, want)
	}
	if got := g.TargetSize(); got != 2 {
		t.Errorf("target %d, want 2", got)
	}
}

// A member that ran and failed later (a stack update or check left it *_FAILED) is a node to
// repair, not a failed creation the autoscaler would delete undrained; a member whose server
// never ran (Nova put it in ERROR before it launched, or Heat never got one) is one.
func TestMemberThatRanAndFailedLaterIsRunning(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := workers(cloud, 4)
	cloud.SetMemberStatus(nodes, "0", "UPDATE_FAILED", "Resource UPDATE failed: timeout")
	cloud.SetMemberStatus(nodes, "1", "CHECK_FAILED", "Resource CHECK failed: server is SHUTOFF")
	cloud.FailMemberCreation(nodes, "2", "Resource CREATE failed: ResourceInError: resources[2]: Went to status ERROR due to \"Message: No valid host was found. , Code: 500\"", true)
	cloud.FailMemberCreation(nodes, "3", "Resource CREATE failed: Forbidden: Quota exceeded for instances: Requested 1, but already used 10 of 10 instances", false)
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	mustObserve(t, cloud, g)
	got := map[string]nodegroup.Instance{}
	for _, inst := range g.Instances() {
		got[inst.ID] = inst
	}
	for _, member := range []string{"0", "1"} {
		inst := got[providerID(cloud, nodes, member)]
		if inst.State != nodegroup.Running || inst.Error != nil {
			t.Errorf("member %s: state %d, error %v; want running with no error", member, inst.State, inst.Error)
		}
	}
	failed := got[providerID(cloud, nodes, "2")]
	if failed.State != nodegroup.Creating || failed.Error == nil || failed.Error.Class != nodegroup.OutOfResources {
		t.Errorf("member 2 (CREATE_FAILED, server in ERROR never launched): %+v, want a failed creation, out of resources", failed)
	}
	noServer := got[heat.PlaceholderPrefix+stack.ID+"/3"]
	if noServer.State != nodegroup.Creating || noServer.Error == nil || noServer.Error.Class != nodegroup.OutOfResources {
		t.Errorf("member 3 (CREATE_FAILED, no server): %+v, want a failed creation, out of resources", noServer)
	}
}

// Heat marks a member CREATE_FAILED for reasons that come after its server booted and the
// kubelet joined: a WaitCondition or the stack's timeout, a heat-engine restart mid-create.
// The autoscaler deletes failed creations undrained, so such a member is a running node, never
// a failed creation: only a member whose server never ran is one.
func TestCreateFailedMemberWhoseServerRunsIsRunning(t *testing.T) {
	cloud := newCloud(t)
	_, nodes := workers(cloud, 3)
	cloud.SetMemberStatus(nodes, "1", "CREATE_FAILED", "Resource CREATE failed: WaitConditionTimeout: resources.wait: 0 of 1 received")
	cloud.SetMemberStatus(nodes, "2", "CREATE_FAILED", "Resource CREATE failed: Engine went down during resource CREATE")
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	mustObserve(t, cloud, g)
	got := map[string]nodegroup.Instance{}
	for _, inst := range g.Instances() {
		got[inst.ID] = inst
	}
	for _, member := range []string{"1", "2"} {
		inst := got[providerID(cloud, nodes, member)]
		if inst.State != nodegroup.Running || inst.Error != nil {
			t.Errorf("member %s (CREATE_FAILED, server ACTIVE and launched): state %d, error %+v; want running with no error",
				member, inst.State, inst.Error)
		}
	}
}

// The provider's snapshot holds only servers carrying the cluster's metadata, and a stack's
// servers need not carry it. A CREATE_FAILED member whose server is not in the snapshot is
// looked up in Nova: running, it is a node; in ERROR without ever launching, a failed creation.
func TestCreateFailedMemberWithAnUntaggedServerIsLookedUp(t *testing.T) {
	cloud := newCloud(t)
	nodes := &openstacktest.StackGroup{Resource: "nodes", CountParam: "count", RemovalParam: "removal"} // no metadata
	cloud.AddStack("workers", map[string]string{"count": "3", "removal": ""}, nodes)
	cloud.SetMemberStatus(nodes, "1", "CREATE_FAILED", "Resource CREATE failed: WaitConditionTimeout: resources.wait: 0 of 1 received")
	cloud.FailMemberCreation(nodes, "2", "Resource CREATE failed: ResourceInError: resources[2]: Went to status ERROR due to \"Message: No valid host was found. , Code: 500\"", true)
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	g.Compute = cloud.Clients().Compute
	clients := cloud.Clients()
	ctx := context.Background()
	snap := &nodegroup.Snapshot{Started: time.Now()} // as the provider's: the cluster's servers only
	stackPages, err := stacks.List(clients.Orchestration, stacks.ListOpts{}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Stacks, err = stacks.ExtractStacks(stackPages); err != nil {
		t.Fatal(err)
	}
	if err := g.Observe(ctx, snap); err != nil {
		t.Fatal(err)
	}
	got := map[string]nodegroup.Instance{}
	for _, inst := range g.Instances() {
		got[inst.ID] = inst
	}
	if inst := got[providerID(cloud, nodes, "1")]; inst.State != nodegroup.Running || inst.Error != nil {
		t.Errorf("member 1 (CREATE_FAILED, untagged server ACTIVE and launched): state %d, error %+v; want running with no error", inst.State, inst.Error)
	}
	if inst := got[providerID(cloud, nodes, "2")]; inst.State != nodegroup.Creating || inst.Error == nil {
		t.Errorf("member 2 (CREATE_FAILED, untagged server in ERROR never launched): %+v, want a failed creation", inst)
	}
}

// Two node groups in one stack (members "0", "1" in each) and members holding two servers:
// every group lists its own nodes' servers, never the other group's.
func TestTwoGroupsInOneStackKeepTheirServers(t *testing.T) {
	cloud := newCloud(t)
	a := &openstacktest.StackGroup{Resource: "a", CountParam: "count_a", RemovalParam: "removal_a", Nested: true,
		ServersPerMember: 2, Metadata: membership.Metadata(cluster, "group-a")}
	b := &openstacktest.StackGroup{Resource: "b", CountParam: "count_b", RemovalParam: "removal_b", Nested: true,
		Metadata: membership.Metadata(cluster, "group-b")}
	cloud.AddStack("pool", map[string]string{"count_a": "2", "removal_a": "", "count_b": "2", "removal_b": ""}, a, b)
	groupA := newGroup(t, cloud, "group-a", config.Heat{Stack: "pool", ResourceGroup: "a", CountParameter: "count_a", RemovalParameter: "removal_a"}, 0, 5)
	groupB := newGroup(t, cloud, "group-b", config.Heat{Stack: "pool", ResourceGroup: "b", CountParameter: "count_b", RemovalParameter: "removal_b"}, 0, 5)
	mustObserve(t, cloud, groupA)
	mustObserve(t, cloud, groupB)
	for _, tc := range []struct {
		group *heat.Group
		own   *openstacktest.StackGroup
		other *openstacktest.StackGroup
	}{{groupA, a, b}, {groupB, b, a}} {
		var ids []string
		for _, inst := range tc.group.Instances() {
			ids = append(ids, inst.ID)
		}
		want := []string{providerID(cloud, tc.own, "0"), providerID(cloud, tc.own, "1")}
		if slices.Sort(ids); !slices.Equal(ids, want) {
			t.Errorf("group %s lists %v, want its own nodes %v", tc.group.ID(), ids, want)
		}
		for _, member := range []string{"0", "1"} {
			if other := cloud.MemberServers(tc.other, member)[0]; tc.group.HasServer(other) {
				t.Errorf("group %s claims server %s of the other group", tc.group.ID(), other)
			}
		}
	}
}

// Placeholders of members not created yet are checked: one that is not pending is refused.
func TestPendingPlaceholdersAreChecked(t *testing.T) {
	cloud := newCloud(t)
	stack, _ := workers(cloud, 1)
	// An update by other hands runs: the scale-up stays unsent. (An update refused with a 503
	// may have reached Heat: its increase is no longer the group's to take back until the
	// stack is read again.)
	cloud.SetStackStatus(stack, "UPDATE_IN_PROGRESS")
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	mustObserve(t, cloud, g)
	if err := g.IncreaseSize(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	var pending []string
	for _, inst := range g.Instances() {
		if strings.Contains(inst.ID, "pending-") {
			pending = append(pending, inst.ID)
		}
	}
	if len(pending) != 1 {
		t.Fatalf("pending placeholders %v, want one", pending)
	}
	notPending := strings.Replace(pending[0], "pending-1", "pending-7", 1)
	if err := g.DeleteInstances(context.Background(), []string{notPending}); !errors.Is(err, nodegroup.ErrNotMember) {
		t.Errorf("deleting %s (not pending): %v, want ErrNotMember", notPending, err)
	}
	if err := g.DeleteInstances(context.Background(), []string{pending[0], pending[0]}); !errors.Is(err, nodegroup.ErrNotMember) {
		t.Errorf("deleting one pending placeholder twice: %v, want ErrNotMember", err)
	}
	if got := g.TargetSize(); got != 2 {
		t.Errorf("target %d after refused deletions, want 2", got)
	}
	if err := g.DeleteInstances(context.Background(), pending); err != nil {
		t.Fatal(err)
	}
	if got := g.TargetSize(); got != 1 {
		t.Errorf("target %d after cancelling the pending member, want 1", got)
	}
	_ = stack
}

// The answer to an update is lost after Heat applied it: the group sees the stack holds what it
// sent and does not apply the change a second time.
func TestUpdateWhoseAnswerWasLostIsNotAppliedTwice(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ask       func(g *heat.Group, cloud *openstacktest.Cloud, nodes *openstacktest.StackGroup) error
		wantCount string
		members   int
	}{
		{"scale-up", func(g *heat.Group, _ *openstacktest.Cloud, _ *openstacktest.StackGroup) error {
			return g.IncreaseSize(context.Background(), 2)
		}, "5", 5},
		{"removal", func(g *heat.Group, cloud *openstacktest.Cloud, nodes *openstacktest.StackGroup) error {
			return g.DeleteInstances(context.Background(), []string{providerID(cloud, nodes, "1")})
		}, "2", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cloud := newCloud(t)
			stack, nodes := workers(cloud, 3)
			lost := 0
			cloud.LoseAnswer = func(r *http.Request) bool {
				if r.Method == http.MethodPatch && lost == 0 {
					lost++
					return true
				}
				return false
			}
			g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
			mustObserve(t, cloud, g)
			if err := tc.ask(g, cloud, nodes); err != nil {
				t.Fatal(err)
			}
			openstacktest.Eventually(t, "the group settles", func() bool { return observe(t, cloud, g) == nil && !g.Busy() })
			updates, _ := cloud.StackUpdates(stack)
			if len(updates) != 1 || cloud.StackParam(stack, "count") != tc.wantCount || len(cloud.StackMembers(nodes)) != tc.members {
				t.Errorf("updates %v, count %s, members %v; want one update to count %s", updates, cloud.StackParam(stack, "count"),
					cloud.StackMembers(nodes), tc.wantCount)
			}
		})
	}
}

func TestParseList(t *testing.T) {
	for raw, want := range map[string][]string{"": nil, "3": {"3"}, "3,4": {"3", "4"}, "['3', '4']": {"3", "4"}, `["a"]`: {"a"}, "[]": nil} {
		if got := heat.ParseList(raw); !slices.Equal(got, want) {
			t.Errorf("ParseList(%q) = %v, want %v", raw, got, want)
		}
	}
}

var _ = openstack.DefaultBackoff

// The provider accepts a removal and is killed before it reaches the stack: the provider that
// starts next (or the other replica) removes exactly that member.
func TestAcceptedRemovalSurvivesARestart(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := workers(cloud, 3)
	// The first provider's updates never reach Heat: it is as good as killed once it answered.
	cloud.HeatFault = func(r *http.Request) int {
		if r.Method == http.MethodPatch && strings.Contains(r.UserAgent(), "killed-replica") {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	clients := cloud.Clients()
	clients.Provider.UserAgent.Prepend("killed-replica")
	first := heat.New(config.NodeGroup{Name: "workers", Backend: config.BackendHeat, MaxSize: 10, Heat: &config.Heat{Stack: "workers"}},
		cluster, clients.Orchestration)
	t.Cleanup(first.Stop)
	first.Compute = clients.Compute
	mustObserve(t, cloud, first)
	if err := first.DeleteInstances(context.Background(), []string{providerID(cloud, nodes, "1")}); err != nil {
		t.Fatal(err)
	}
	next := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	mustObserve(t, cloud, next)
	if got := next.TargetSize(); got != 2 {
		t.Errorf("the next provider's target is %d, want 2", got)
	}
	openstacktest.Eventually(t, "the removal reaches the stack", func() bool { return len(cloud.StackMembers(nodes)) == 2 })
	if got, want := cloud.StackMembers(nodes), []string{"0", "2"}; !slices.Equal(got, want) {
		t.Errorf("members %v, want %v", got, want)
	}
	if got := cloud.StackParam(stack, "count"); got != "2" {
		t.Errorf("count %s, want 2", got)
	}
}

// The autoscaler deletes a node whose member repair is replacing, before the replacement
// reached the stack: the group's target goes down by one, and the stack loses that member
// without a successor.
func TestDeletingAMemberUnderReplacementLowersTheTarget(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := workers(cloud, 3)
	// An update by other hands runs: the replacement stays unsent. (An update refused with a
	// 503 may have reached Heat: the replacement would be in flight, its successor dropped
	// later, and the members checked below would depend on timing.)
	cloud.SetStackStatus(stack, "UPDATE_IN_PROGRESS")
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	mustObserve(t, cloud, g)
	broken := cloud.MemberServers(nodes, "1")[0]
	if err := g.Replace(broken); err != nil {
		t.Fatal(err)
	}
	if err := g.DeleteInstances(context.Background(), []string{membership.ProviderID(broken)}); err != nil {
		t.Fatal(err)
	}
	if got := g.TargetSize(); got != 2 {
		t.Errorf("target %d after deleting the member under replacement, want 2", got)
	}
	cloud.SetStackStatus(stack, "UPDATE_COMPLETE")
	openstacktest.Eventually(t, "the stack updated", func() bool { u, _ := cloud.StackUpdates(stack); return len(u) >= 1 })
	if got, want := cloud.StackMembers(nodes), []string{"0", "2"}; !slices.Equal(got, want) {
		t.Errorf("members %v, want %v (no successor for member 1)", got, want)
	}
}

// holdNext holds the answer of the next stack read (GET /stacks/<name>/<id>) once armed, until
// released: a refresh that read the stack just before an update lands after it.
type holdNext struct {
	base    http.RoundTripper
	armed   atomic.Bool
	held    chan struct{}
	release chan struct{}
}

func (h *holdNext) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := h.base.RoundTrip(r)
	if r.Method == http.MethodGet && strings.Count(strings.TrimPrefix(r.URL.Path, "/heat/v1/project/stacks/"), "/") == 1 &&
		h.armed.CompareAndSwap(true, false) {
		close(h.held)
		<-h.release
	}
	return resp, err
}

// A refresh read the stack (count 2) before an update to 5 was sent and recorded, and lands
// after it: the group keeps the update's count, it does not fall back to 2 (the autoscaler,
// seeing its nodes gone from the target, would ask again and the stack would reach 8).
func TestARefreshThatReadBeforeAnUpdateDoesNotUndoIt(t *testing.T) {
	cloud := newCloud(t)
	stack, _ := workers(cloud, 2)
	clients := cloud.Clients()
	hold := &holdNext{base: clients.Provider.HTTPClient.Transport, held: make(chan struct{}), release: make(chan struct{})}
	if hold.base == nil {
		hold.base = http.DefaultTransport
	}
	clients.Provider.HTTPClient.Transport = hold
	g := heat.New(config.NodeGroup{Name: "workers", Backend: config.BackendHeat, MaxSize: 10, Heat: &config.Heat{Stack: "workers"}},
		cluster, clients.Orchestration)
	t.Cleanup(g.Stop)
	g.PollInterval = 5 * time.Millisecond
	mustObserve(t, cloud, g)
	hold.armed.Store(true)
	observed := make(chan error)
	go func() { observed <- observe(t, cloud, g) }()
	<-hold.held // the refresh has read count 2
	if err := g.IncreaseSize(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "the update recorded", func() bool { u, _ := cloud.StackUpdates(stack); return len(u) == 1 && !g.Busy() == false })
	openstacktest.Eventually(t, "the stack at 5", func() bool { return cloud.StackParam(stack, "count") == "5" })
	time.Sleep(50 * time.Millisecond) // the update loop records what it sent
	close(hold.release)
	if err := <-observed; err != nil {
		t.Fatal(err)
	}
	if got := g.TargetSize(); got != 5 {
		t.Errorf("target %d after a refresh that read the stack before the update, want 5", got)
	}
}

// The autoscaler deletes a member under replacement while the update that replaces it is
// being sent: the replacement stands (its successor is on its way), so the successor is named
// for removal once it exists and the group ends one smaller. It used to keep its size (the
// deletion was skipped as "already going"). No update lowers the count without naming a member.
func TestDeletingAMemberWhoseReplacementIsInFlightDropsItsSuccessor(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := workers(cloud, 4)
	var patches atomic.Int32
	entered, proceed := make(chan struct{}), make(chan struct{})
	cloud.HeatFault = func(r *http.Request) int {
		if r.Method == http.MethodPatch && patches.Add(1) == 1 {
			close(entered)
			<-proceed // the update is in flight (the fake cloud answers nothing else meanwhile)
		}
		return 0
	}
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	mustObserve(t, cloud, g)
	broken := cloud.MemberServers(nodes, "1")[0]
	if err := g.Replace(broken); err != nil {
		t.Fatal(err)
	}
	<-entered
	deleted := make(chan error)
	go func() { deleted <- g.DeleteInstances(context.Background(), []string{membership.ProviderID(broken)}) }()
	time.Sleep(20 * time.Millisecond)
	close(proceed)
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if got := g.TargetSize(); got != 3 {
		t.Errorf("target %d after deleting the member under replacement, want 3", got)
	}
	openstacktest.Eventually(t, "the group settles", func() bool { return observe(t, cloud, g) == nil && !g.Busy() })
	checkShrunkByName(t, cloud, stack, nodes, 4)
}

// checkShrunkByName checks that a stack of `from` members whose member 1 was replaced and then
// deleted by the autoscaler ends with from-1 members, none of them 1 or its successor, and that
// every update that lowered the count named a member it had not named before.
func checkShrunkByName(t *testing.T, cloud *openstacktest.Cloud, stack *openstacktest.Stack, nodes *openstacktest.StackGroup, from int) {
	t.Helper()
	updates, _ := cloud.StackUpdates(stack)
	prevCount, prevRemoval := from, []string{}
	for _, u := range updates {
		removal := heat.ParseList(u["removal"])
		named := slices.ContainsFunc(removal, func(n string) bool { return !slices.Contains(prevRemoval, n) })
		count, _ := strconv.Atoi(u["count"])
		if count < prevCount && !named {
			t.Errorf("update %v lowers the count without naming a new member", u)
		}
		prevCount, prevRemoval = count, removal
	}
	got := cloud.StackMembers(nodes)
	if len(got) != from-1 || slices.Contains(got, "1") || slices.Contains(got, fmt.Sprint(from)) {
		t.Errorf("members %v (updates %v), want %d: member 1 and its successor %d gone", got, updates, from-1, from)
	}
}

// The autoscaler deletes a member whose replacement the stack took (the update failed once,
// as when Heat could not delete the member yet, so the member is still there): the successor
// the update creates when sent again is named for removal once it exists; the target is lower
// at once.
func TestDeletingAMemberBeingReplacedByHeatDropsItsSuccessor(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := workers(cloud, 4)
	stack.FailUpdates = 1
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	mustObserve(t, cloud, g)
	broken := cloud.MemberServers(nodes, "1")[0]
	if err := g.Replace(broken); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "the replacement sent", func() bool { u, _ := cloud.StackUpdates(stack); return len(u) == 1 })
	mustObserve(t, cloud, g)
	if err := g.DeleteInstances(context.Background(), []string{membership.ProviderID(broken)}); err != nil {
		t.Fatal(err)
	}
	if got := g.TargetSize(); got != 3 {
		t.Errorf("target %d after deleting the member Heat is replacing, want 3", got)
	}
	openstacktest.Eventually(t, "the group settles", func() bool {
		return observe(t, cloud, g) == nil && !g.Busy() && len(cloud.StackMembers(nodes)) == 3
	})
	checkShrunkByName(t, cloud, stack, nodes, 4)
	if got := g.TargetSize(); got != 3 {
		t.Errorf("target %d once settled, want 3", got)
	}
}

// The answer of an update is lost after Heat applied it, and a refresh reads the stack before
// the update loop looks again: the refresh must count the removal once. It counted it twice
// (the stack's new count less the removal still pending): the target fell to 0 for 2, and the
// autoscaler asked for more (the soak test caught it).
func TestRefreshAfterALostUpdateAnswerCountsItOnce(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := workers(cloud, 4)
	// Heat took the parameters and has not removed the members yet (the fake stores them and
	// removes nothing when an update fails; the answer is lost either way).
	stack.FailUpdates = 1
	var patches atomic.Int32
	cloud.LoseAnswer = func(r *http.Request) bool { return r.Method == http.MethodPatch && patches.Add(1) == 1 }
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	g.PollInterval = time.Second // the update loop looks again 5 s after the lost answer
	mustObserve(t, cloud, g)
	if err := g.DeleteInstances(context.Background(), []string{providerID(cloud, nodes, "1"), providerID(cloud, nodes, "2")}); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "the update applied, its answer lost", func() bool { u, _ := cloud.StackUpdates(stack); return len(u) == 1 })
	mustObserve(t, cloud, g)
	if got := g.TargetSize(); got != 2 {
		t.Errorf("target %d after a refresh that read the applied update, want 2", got)
	}
}

// asgWorkers is a stack like examples/heat-asg-node-group.yaml: one AutoScalingGroup "nodes".
func asgWorkers(cloud *openstacktest.Cloud, count int) (*openstacktest.Stack, *openstacktest.StackGroup) {
	group := &openstacktest.StackGroup{Resource: "nodes", CountParam: "count", AutoScaling: true,
		Metadata: membership.Metadata(cluster, "workers")}
	stack := cloud.AddStack("workers", map[string]string{"count": fmt.Sprint(count), "flavor": "m1.small"}, group)
	return stack, group
}

// The autoscaler deletes a member of an AutoScalingGroup; Heat took the update (count 2, the
// member marked unhealthy) and has not begun deleting it when the next refresh reads the
// stack. The refresh must not count the member off again: it did (the server carries the
// accepted deletion, the member was not "being removed" by any sign an AutoScalingGroup shows),
// the target fell to 1 for 2 (CI saw it in the world), and the next update would have removed a
// second, unnamed member.
func TestAutoScalingGroupMemberBeingRemovedIsCountedOnce(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := asgWorkers(cloud, 3)
	stack.Lag = true
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	g.Compute = cloud.Clients().Compute
	mustObserve(t, cloud, g)
	if err := g.DeleteInstances(context.Background(), []string{providerID(cloud, nodes, "1")}); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "the update taken by Heat", func() bool { u, _ := cloud.StackUpdates(stack); return len(u) == 1 })
	// Refreshes while the member waits for Heat: the first may land before the update loop
	// recorded the answer, the later ones after.
	for i := 0; i < 10; i++ {
		mustObserve(t, cloud, g)
		if got := g.TargetSize(); got != 2 {
			t.Fatalf("target %d while Heat removes the member (refresh %d), want 2", got, i+1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A provider that starts now (a restart, or the other replica) reads the same stack.
	next := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	mustObserve(t, cloud, next)
	if got := next.TargetSize(); got != 2 {
		t.Errorf("a new provider's target %d while Heat removes the member, want 2", got)
	}
	cloud.Finish(stack)
	openstacktest.Eventually(t, "both settle", func() bool {
		return observe(t, cloud, g) == nil && observe(t, cloud, next) == nil && !g.Busy() && !next.Busy()
	})
	if got, want := cloud.StackMembers(nodes), []string{"0", "2"}; !slices.Equal(got, want) {
		t.Errorf("members %v, want %v", got, want)
	}
	if updates, _ := cloud.StackUpdates(stack); len(updates) != 1 || cloud.StackParam(stack, "count") != "2" {
		t.Errorf("updates %v, want one to count 2", updates)
	}
	if got := g.TargetSize(); got != 2 {
		t.Errorf("target %d once settled, want 2", got)
	}
}

// holdPatch holds the first stack update (PATCH) on its way to Heat until released.
type holdPatch struct {
	base    http.RoundTripper
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

func (h *holdPatch) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPatch && strings.Count(strings.TrimPrefix(r.URL.Path, "/heat/v1/project/stacks/"), "/") == 1 {
		h.once.Do(func() {
			close(h.held)
			<-h.release
		})
	}
	return h.base.RoundTrip(r)
}

// A refresh starts while an update to 5 is on its way to Heat, reads the stack at 2 before
// Heat takes the update, and lands after the update was recorded: the group keeps the update's
// count. It fell back to 2 (the refresh began after the update was counted as sent, so it
// looked newer), and the autoscaler, seeing its nodes gone from the target, would ask again.
func TestARefreshThatReadWhileAnUpdateWasOnItsWayDoesNotUndoIt(t *testing.T) {
	cloud := newCloud(t)
	stack, _ := workers(cloud, 2)
	var read *holdNext
	g, patch := groupWithHeldPatch(t, cloud, func(patch http.RoundTripper) http.RoundTripper {
		read = &holdNext{base: patch, held: make(chan struct{}), release: make(chan struct{})}
		return read
	})
	mustObserve(t, cloud, g)
	if err := g.IncreaseSize(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	<-patch.held // the update is on its way
	read.armed.Store(true)
	observed := make(chan error)
	go func() { observed <- observe(t, cloud, g) }()
	<-read.held // the refresh has read count 2
	close(patch.release)
	openstacktest.Eventually(t, "the stack at 5", func() bool { return cloud.StackParam(stack, "count") == "5" })
	time.Sleep(50 * time.Millisecond) // the update loop records what it sent
	close(read.release)
	if err := <-observed; err != nil {
		t.Fatal(err)
	}
	if got := g.TargetSize(); got != 5 {
		t.Errorf("target %d after a refresh that read the stack while the update was on its way, want 5", got)
	}
}

// A ResourceGroup with removal_policies_mode: update skips only the names its last update's
// removal_policies list. After member 1 went, removing member 3 with "3" alone would free name
// 1: Heat would renumber onto it and delete member 4, which nobody named.
func TestRemovalPoliciesModeUpdateRemovesOnlyTheNamedMembers(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := workers(cloud, 5)
	nodes.RemovalPoliciesUpdate = true
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	mustObserve(t, cloud, g)
	four := cloud.MemberServers(nodes, "4")[0]
	if err := g.DeleteInstances(context.Background(), []string{providerID(cloud, nodes, "1")}); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "the first removal", func() bool { u, _ := cloud.StackUpdates(stack); return len(u) == 1 })
	mustObserve(t, cloud, g)
	if err := g.DeleteInstances(context.Background(), []string{providerID(cloud, nodes, "3")}); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "the second removal", func() bool { u, _ := cloud.StackUpdates(stack); return len(u) == 2 })
	updates, _ := cloud.StackUpdates(stack)
	if got, want := cloud.StackMembers(nodes), []string{"0", "2", "4"}; !slices.Equal(got, want) {
		t.Errorf("members %v after removing 1 then 3, want %v (updates sent: %v)", got, want, updates)
	}
	if cloud.ServerBody(four) == nil {
		t.Errorf("the server of member 4, which nobody named, was deleted (updates sent: %v)", updates)
	}
}

// Marking an AutoScalingGroup's member unhealthy must not put the member in a metric label:
// every request is counted by its path template, and a label per member is a series per member
// ever removed.
func TestMarkingAMemberUnhealthyKeepsItOutOfMetricLabels(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := asgWorkers(cloud, 3)
	clients := cloud.Clients()
	reg := prometheus.NewRegistry()
	clients.Provider.HTTPClient.Transport = openstack.NewMetrics(reg).Transport(clients.Provider.HTTPClient.Transport)
	g := heat.New(config.NodeGroup{Name: "workers", Backend: config.BackendHeat, MaxSize: 10, Heat: &config.Heat{Stack: "workers"}},
		cluster, clients.Orchestration)
	t.Cleanup(g.Stop)
	g.PollInterval = 5 * time.Millisecond
	mustObserve(t, cloud, g)
	if err := g.DeleteInstances(context.Background(), []string{providerID(cloud, nodes, "1")}); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "the removal sent", func() bool { u, _ := cloud.StackUpdates(stack); return len(u) == 1 })
	if got, want := cloud.StackMembers(nodes), []string{"0", "2"}; !slices.Equal(got, want) {
		t.Errorf("members %v, want %v", got, want)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	marked := false
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != "operation" || !strings.HasPrefix(l.GetValue(), "PATCH ") || !strings.Contains(l.GetValue(), "/resources/") {
					continue
				}
				marked = true
				if !strings.HasSuffix(l.GetValue(), "/resources/{id}") {
					t.Errorf("%s{operation=%q}: the member is in the label", f.GetName(), l.GetValue())
				}
			}
		}
	}
	if !marked {
		t.Error("no mark-unhealthy request was counted")
	}
}

// cluster-autoscaler 1.36.1 sends one DeleteNodes call per node, all at once, each under its
// own deadline (core/scaledown/actuation/delete_in_batch.go with the default
// --node-deletion-batcher-interval=0), and takes the node's taint off when a call fails. Six
// such calls on one stack: they are recorded side by side, not one behind the other, and the
// one whose mark hangs past its deadline answers an error and removes nothing, even though
// Nova applies its mark afterwards.
func TestConcurrentSingleNodeDeletionsOnAStack(t *testing.T) {
	const calls = 6
	cloud := newCloud(t)
	stack, nodes := workers(cloud, calls+1)
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	g.Compute = cloud.Clients().Compute
	mustObserve(t, cloud, g)
	ids := make([]string, calls+1)
	for i := range ids {
		ids[i] = providerID(cloud, nodes, strconv.Itoa(i))
	}
	hung, _ := membership.ServerID(ids[calls-1])
	release := make(chan struct{})
	var inflight, overlap atomic.Int32
	cloud.Fault = func(r *http.Request) int {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/metadata") {
			return 0
		}
		if strings.Contains(r.URL.Path, hung) {
			<-release
			return 0
		}
		if n := inflight.Add(1); n > 1 {
			overlap.Store(n)
		}
		time.Sleep(200 * time.Millisecond)
		inflight.Add(-1)
		return 0
	}
	errs := make([]error, calls)
	done := make([]chan struct{}, calls)
	for i := range calls {
		done[i] = make(chan struct{})
		go func() {
			defer close(done[i])
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			errs[i] = g.DeleteInstances(ctx, []string{ids[i]})
		}()
	}
	<-done[calls-1]
	close(release)
	for _, d := range done {
		<-d
	}
	if errs[calls-1] == nil {
		t.Fatal("the call whose mark hung past its deadline answered OK")
	}
	if overlap.Load() < 2 {
		t.Errorf("the calls' marks never overlapped: concurrent calls were queued one behind the other")
	}
	want := []string{strconv.Itoa(calls - 1), strconv.Itoa(calls)}
	for i, err := range errs[:calls-1] {
		if err != nil {
			want = append(want, strconv.Itoa(i))
			t.Logf("call %d answered %v", i, err)
		}
	}
	slices.Sort(want)
	openstacktest.Eventually(t, "the stack to keep exactly the members no successful call named", func() bool {
		return slices.Equal(cloud.StackMembers(nodes), want)
	})
	time.Sleep(100 * time.Millisecond)
	if got := cloud.StackMembers(nodes); !slices.Equal(got, want) {
		t.Errorf("members %v, want %v", got, want)
	}
	openstacktest.Eventually(t, "the hung call's mark to be taken off", func() bool {
		_, marked := cloud.ServerBody(hung)["metadata"].(map[string]any)[membership.DeletionKey]
		return !marked
	})
	mustObserve(t, cloud, g)
	time.Sleep(100 * time.Millisecond)
	if got := cloud.StackMembers(nodes); !slices.Equal(got, want) {
		t.Errorf("members %v after a refresh, want %v: a failed call's deletion was resumed", got, want)
	}
	_ = stack
}

// stackKinds are the two kinds of group a stack may hold, as the tests build them.
var stackKinds = []struct {
	name string
	make func(*openstacktest.Cloud, int) (*openstacktest.Stack, *openstacktest.StackGroup)
}{{"ResourceGroup", workers}, {"AutoScalingGroup", asgWorkers}}

// sentCount waits until the group has recorded that the stack's count parameter is count.
func sentCount(t *testing.T, g *heat.Group, count int) {
	t.Helper()
	openstacktest.Eventually(t, fmt.Sprintf("the group records count %d sent", count), func() bool {
		return strings.Contains(g.Debug(), fmt.Sprintf("stack count %d ", count))
	})
}

// A scale-up reached the stack while the group's refreshes kept failing (it never saw the new
// members), then the autoscaler lowers the target. Only the increase not written yet may be
// taken back: the others are members of the stack, and an update lowering the count for them
// names none (a ResourceGroup deletes its newest members, an AutoScalingGroup its oldest).
func TestDecreaseTargetSizeTakesBackOnlyIncreasesNotSent(t *testing.T) {
	for _, kind := range stackKinds {
		t.Run(kind.name, func(t *testing.T) {
			cloud := newCloud(t)
			stack, nodes := kind.make(cloud, 3)
			g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
			mustObserve(t, cloud, g)
			if err := g.IncreaseSize(context.Background(), 2); err != nil {
				t.Fatal(err)
			}
			sentCount(t, g, 5)
			cloud.SetStackStatus(stack, "UPDATE_IN_PROGRESS") // the next increase stays unsent
			if err := g.IncreaseSize(context.Background(), 1); err != nil {
				t.Fatal(err)
			}
			if err := g.DecreaseTargetSize(-2); err == nil {
				t.Errorf("DecreaseTargetSize(-2) with 1 increase unsent and 2 sent = nil, want an error")
			}
			if err := g.DecreaseTargetSize(-1); err != nil {
				t.Errorf("DecreaseTargetSize(-1) of the unsent increase: %v", err)
			}
			if got := g.TargetSize(); got != 5 {
				t.Errorf("target %d, want 5", got)
			}
			cloud.SetStackStatus(stack, "UPDATE_COMPLETE")
			mustObserve(t, cloud, g)
			time.Sleep(200 * time.Millisecond) // whatever the calls made pending is sent
			updates, _ := cloud.StackUpdates(stack)
			if got := len(cloud.StackMembers(nodes)); got != 5 || len(updates) != 1 {
				t.Errorf("%d members after updates %v, want 5 after one update", got, updates)
			}
		})
	}
}

// The autoscaler lowers the target while the update carrying the increase is on its way: that
// increase is no longer the group's to take back.
func TestDecreaseTargetSizeWhileTheIncreaseIsSentIsRefused(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := workers(cloud, 3)
	g, patch := groupWithHeldPatch(t, cloud, nil)
	mustObserve(t, cloud, g)
	if err := g.IncreaseSize(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	<-patch.held
	if err := g.DecreaseTargetSize(-2); err == nil {
		t.Errorf("DecreaseTargetSize(-2) while the increase is on its way to Heat = nil, want an error")
	}
	close(patch.release)
	sentCount(t, g, 5)
	time.Sleep(200 * time.Millisecond)
	updates, _ := cloud.StackUpdates(stack)
	if got := len(cloud.StackMembers(nodes)); got != 5 || len(updates) != 1 {
		t.Errorf("%d members after updates %v, want 5 after one update", got, updates)
	}
}

// The autoscaler deletes the placeholder of a member whose creation reached the stack (the
// group's refreshes failed since): it is refused, as the member exists and only a removal that
// names it may take it away.
func TestCancellingAPlaceholderOfASentScaleUpIsRefused(t *testing.T) {
	for _, kind := range stackKinds {
		t.Run(kind.name, func(t *testing.T) {
			cloud := newCloud(t)
			stack, nodes := kind.make(cloud, 3)
			g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
			mustObserve(t, cloud, g)
			if err := g.IncreaseSize(context.Background(), 2); err != nil {
				t.Fatal(err)
			}
			sentCount(t, g, 5)
			var pending []string
			for _, inst := range g.Instances() {
				if strings.Contains(inst.ID, "/pending-") {
					pending = append(pending, inst.ID)
				}
			}
			if len(pending) != 2 {
				t.Fatalf("placeholders %v, want 2 (the group has not seen the new members)", pending)
			}
			if err := g.DeleteInstances(context.Background(), pending[:1]); err == nil {
				t.Errorf("deleting the placeholder %s of a member the stack was asked for = nil, want an error", pending[0])
			}
			if got := g.TargetSize(); got != 5 {
				t.Errorf("target %d, want 5", got)
			}
			time.Sleep(200 * time.Millisecond)
			updates, _ := cloud.StackUpdates(stack)
			if got := len(cloud.StackMembers(nodes)); got != 5 || len(updates) != 1 {
				t.Errorf("%d members after updates %v, want 5 after one update", got, updates)
			}
		})
	}
}

// An AutoScalingGroup's update that was to remove a marked member failed, and left another
// member UPDATE_FAILED. Sending the update again (the count it already holds, the marked member
// to go) would make Heat remove the older failed member, which nobody named: nothing is sent
// until that member is named too, and the group says why.
func TestAutoScalingGroupRetryAfterAFailedUpdateRemovesOnlyNamedMembers(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := asgWorkers(cloud, 3)
	stack.FailUpdates = 1
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	mustObserve(t, cloud, g)
	if err := g.DeleteInstances(context.Background(), []string{providerID(cloud, nodes, "1")}); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "the update fails", func() bool { _, status := cloud.StackUpdates(stack); return status == "UPDATE_FAILED" })
	cloud.SetMemberStatus(nodes, "0", "UPDATE_FAILED", "Resource UPDATE failed: resources[0]: timed out")
	mustObserve(t, cloud, g)
	time.Sleep(200 * time.Millisecond) // a retry has had time to go
	if got := cloud.StackMembers(nodes); !slices.Contains(got, "0") {
		t.Fatalf("members %v: the update sent again removed member 0, which nobody named", got)
	}
	if !strings.Contains(g.Debug(), "member 0") {
		t.Errorf("the group does not say which member holds the removal: %s", g.Debug())
	}
	if updates, _ := cloud.StackUpdates(stack); len(updates) != 1 {
		t.Errorf("updates %v while the removal is held, want only the one that failed", updates)
	}
	if g.Busy() {
		t.Error("the group is busy while its removal waits for repair (repair holds busy groups)")
	}
	// Repair (or the autoscaler) names the failed member: both go.
	if err := g.DeleteInstances(context.Background(), []string{providerID(cloud, nodes, "0")}); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "both removed", func() bool {
		return observe(t, cloud, g) == nil && slices.Equal(cloud.StackMembers(nodes), []string{"2"})
	})
}

// One member of an AutoScalingGroup failed and nobody asked it to go. The autoscaler deletes a
// healthy older member and scales up: both reach the stack, the named member alone is removed
// (Heat removes failed members oldest first, and the named one is older), and the group says
// which member failed. The removal guard refused every update: the scale-up never went out
// while DeleteNodes had answered OK.
func TestAutoScalingGroupUnnamedFailedMemberBlocksNeitherScaleUpNorRemoval(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(*openstacktest.Cloud, *openstacktest.StackGroup)
	}{
		{"CREATE_FAILED", func(cloud *openstacktest.Cloud, nodes *openstacktest.StackGroup) {
			cloud.FailMemberCreation(nodes, "3", "Resource CREATE failed: ResourceInError: resources[3]: Went to status ERROR due to \"Message: No valid host was found. , Code: 500\"", true)
		}},
		{"UPDATE_FAILED", func(cloud *openstacktest.Cloud, nodes *openstacktest.StackGroup) {
			cloud.SetMemberStatus(nodes, "3", "UPDATE_FAILED", "Resource UPDATE failed: resources[3]: timed out")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cloud := newCloud(t)
			stack, nodes := asgWorkers(cloud, 4)
			tc.fail(cloud, nodes)
			g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
			mustObserve(t, cloud, g)
			if !strings.Contains(g.Debug(), "member 3") {
				t.Errorf("the group does not report its failed member: %s", g.Debug())
			}
			if err := g.DeleteInstances(context.Background(), []string{providerID(cloud, nodes, "1")}); err != nil {
				t.Fatal(err)
			}
			if err := g.IncreaseSize(context.Background(), 2); err != nil {
				t.Fatal(err)
			}
			want := []string{"0", "2", "3", "4", "5"}
			openstacktest.Eventually(t, "the removal and the scale-up reach the stack", func() bool {
				return observe(t, cloud, g) == nil && !g.Busy() && slices.Equal(cloud.StackMembers(nodes), want)
			})
			if got := g.TargetSize(); got != 5 {
				t.Errorf("target %d, want 5", got)
			}
			_ = stack
		})
	}
}

// The failed member nobody named is older than the member the autoscaler deletes: Heat would
// remove it first, so the deletion is refused when asked (an error, nothing recorded), and a
// scale-up still goes out.
func TestAutoScalingGroupRefusesARemovalThatWouldTakeAnOlderFailedMember(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := asgWorkers(cloud, 4)
	cloud.SetMemberStatus(nodes, "0", "UPDATE_FAILED", "Resource UPDATE failed: resources[0]: timed out")
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	g.Compute = cloud.Clients().Compute
	mustObserve(t, cloud, g)
	two := cloud.MemberServers(nodes, "2")[0]
	err := g.DeleteInstances(context.Background(), []string{membership.ProviderID(two)})
	if err == nil || !strings.Contains(err.Error(), "member 0") {
		t.Errorf("deleting member 2 behind the older failed member 0: %v, want an error naming member 0", err)
	}
	if _, marked := cloud.ServerBody(two)["metadata"].(map[string]any)[membership.DeletionKey]; marked {
		t.Errorf("the refused deletion was recorded on the server")
	}
	if err := g.IncreaseSize(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "the scale-up reaches the stack", func() bool {
		return observe(t, cloud, g) == nil && !g.Busy() && len(cloud.StackMembers(nodes)) == 6
	})
	if got := g.TargetSize(); got != 6 {
		t.Errorf("target %d, want 6", got)
	}
	_ = stack
}

// A removal was accepted, and before it reached the stack an older member failed (nobody named
// it): Heat would remove that member instead. The removal is held (the group says why), a
// scale-up asked meanwhile still goes out, and once the failed member is named too both go.
// Every update failed the removal guard: the scale-up never went out.
func TestAutoScalingGroupRemovalHeldBehindAFailedMemberLetsScaleUpsOut(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := asgWorkers(cloud, 4)
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	mustObserve(t, cloud, g)
	cloud.SetStackStatus(stack, "UPDATE_IN_PROGRESS") // by other hands: the removal waits
	if err := g.DeleteInstances(context.Background(), []string{providerID(cloud, nodes, "2")}); err != nil {
		t.Fatal(err)
	}
	cloud.SetMemberStatus(nodes, "0", "UPDATE_FAILED", "Resource UPDATE failed: resources[0]: timed out")
	if err := g.IncreaseSize(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	cloud.SetStackStatus(stack, "UPDATE_COMPLETE")
	mustObserve(t, cloud, g)
	openstacktest.Eventually(t, "the scale-up reaches the stack", func() bool {
		return observe(t, cloud, g) == nil && len(cloud.StackMembers(nodes)) == 6
	})
	time.Sleep(100 * time.Millisecond)
	if got := cloud.StackMembers(nodes); !slices.Contains(got, "0") || !slices.Contains(got, "2") {
		t.Fatalf("members %v: member 0 (failed, not named) or member 2 (named, held) removed", got)
	}
	if got := g.TargetSize(); got != 5 {
		t.Errorf("target %d, want 5 (6 members, member 2 to go)", got)
	}
	if !strings.Contains(g.Debug(), "member 0") {
		t.Errorf("the group does not say which member holds the removal: %s", g.Debug())
	}
	openstacktest.Eventually(t, "the group is not busy (repair holds busy groups)", func() bool { return observe(t, cloud, g) == nil && !g.Busy() })
	if err := g.DeleteInstances(context.Background(), []string{providerID(cloud, nodes, "0")}); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "both removed", func() bool {
		return observe(t, cloud, g) == nil && !g.Busy() && slices.Equal(cloud.StackMembers(nodes), []string{"1", "3", "4", "5"})
	})
	if got := g.TargetSize(); got != 4 {
		t.Errorf("target %d once settled, want 4", got)
	}
	_ = stack
}

// A standby replica sees a removal the leader recorded on a member's server before it was
// killed: it sends no stack update (two writers on one stack lose changes), until its
// autoscaler leads; then it removes exactly that member.
func TestStandbySendsNoStackUpdateUntilItLeads(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := workers(cloud, 3)
	victim := cloud.MemberServers(nodes, "1")[0]
	if _, err := servers.UpdateMetadata(context.Background(), cloud.Clients().Compute, victim,
		servers.MetadataOpts{membership.DeletionKey: "2026-12-08T00:00:00Z"}).Extract(); err != nil {
		t.Fatal(err)
	}
	standby := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	standby.Compute = cloud.Clients().Compute
	var g leadertest.Switch
	standby.Leader = &g
	for range 3 {
		mustObserve(t, cloud, standby)
		time.Sleep(50 * time.Millisecond)
	}
	if updates, _ := cloud.StackUpdates(stack); len(updates) != 0 {
		t.Fatalf("the standby sent stack updates %v", updates)
	}
	g.Set(true)
	openstacktest.Eventually(t, "the leader removes the recorded member", func() bool {
		mustObserve(t, cloud, standby)
		return slices.Equal(cloud.StackMembers(nodes), []string{"0", "2"})
	})
}

// A replica accepted a scale-up and lost the Lease before its update went out (a standby sends
// nothing). The other replica's autoscaler asked again and that replica grew the stack. When
// the first leads again, it must not send its old increase on top (seen in the failover soak:
// a stack at 3 for a target of 2): what was recorded nowhere is dropped when it stops leading.
func TestIncreaseNotSentBeforeLeadershipWasLostIsDropped(t *testing.T) {
	cloud := newCloud(t)
	stack, nodes := workers(cloud, 0)
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	var gt leadertest.Switch
	g.Leader = &gt
	mustObserve(t, cloud, g)
	if err := g.IncreaseSize(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	g.ForgetUnsent()                                       // the provider's hook when the Lease goes to the other replica
	cloud.SetStack(stack, map[string]string{"count": "2"}) // the other replica's update
	gt.Set(true)
	for range 3 {
		mustObserve(t, cloud, g)
		time.Sleep(50 * time.Millisecond)
	}
	if updates, _ := cloud.StackUpdates(stack); len(updates) != 0 {
		t.Errorf("the replica sent %v after it led again: its old increase on top of the other's", updates)
	}
	if got := len(cloud.StackMembers(nodes)); got != 2 {
		t.Errorf("%d members, want 2", got)
	}
	if got := g.TargetSize(); got != 2 {
		t.Errorf("target %d, want 2", got)
	}
}

// groupWithHeldPatch is a group of the "workers" stack whose stack updates are held by a
// holdPatch (wrapped by outer, when given) until the test releases them.
func groupWithHeldPatch(t *testing.T, cloud *openstacktest.Cloud, outer func(http.RoundTripper) http.RoundTripper) (*heat.Group, *holdPatch) {
	t.Helper()
	clients := cloud.Clients()
	base := clients.Provider.HTTPClient.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	patch := &holdPatch{base: base, held: make(chan struct{}), release: make(chan struct{})}
	clients.Provider.HTTPClient.Transport = patch
	if outer != nil {
		clients.Provider.HTTPClient.Transport = outer(patch)
	}
	g := heat.New(config.NodeGroup{Name: "workers", Backend: config.BackendHeat, MaxSize: 10, Heat: &config.Heat{Stack: "workers"}},
		cluster, clients.Orchestration)
	t.Cleanup(g.Stop)
	g.PollInterval = 5 * time.Millisecond
	return g, patch
}

// reentrantGate calls back into the group when asked, as a leadership change's hook does
// (ForgetUnsent takes the group's lock).
type reentrantGate struct{ g *heat.Group }

func (r *reentrantGate) Leads() (bool, string) {
	r.g.ForgetUnsent()
	return true, ""
}

// A refresh asks whether this replica leads, and the answer may run hooks that take the
// group's lock: it used to ask under that lock, and the group (then the whole manager, and
// every gRPC call touching the group) hung for ever.
func TestLeadershipCheckInARefreshTakesNoLockAHookNeeds(t *testing.T) {
	cloud := newCloud(t)
	_, nodes := workers(cloud, 2)
	marked := cloud.MemberServers(nodes, "1")[0] // a recorded removal: the refresh asks whether to resume it
	if _, err := servers.UpdateMetadata(context.Background(), cloud.Clients().Compute, marked,
		servers.MetadataOpts{membership.DeletionKey: "2026-12-08T00:00:00Z"}).Extract(); err != nil {
		t.Fatal(err)
	}
	g := newGroup(t, cloud, "workers", config.Heat{Stack: "workers"}, 0, 10)
	g.Compute = cloud.Clients().Compute
	g.Leader = &reentrantGate{g: g}
	done := make(chan error, 1)
	go func() { done <- observe(t, cloud, g) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the refresh hung: it asked for leadership under the group's lock")
	}
}
