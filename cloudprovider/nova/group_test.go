package nova_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/leader/leadertest"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodegroup"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nova"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack/openstacktest"
)

const cluster = "prod"

var fastBackoff = openstack.Backoff{Attempts: 4, Initial: time.Millisecond, Max: 5 * time.Millisecond}

func newGroup(cloud *openstacktest.Cloud, compute func(*openstack.Clients), minSize, maxSize int) *nova.Group {
	clients := cloud.Clients()
	if compute != nil {
		compute(clients)
	}
	cfg := config.NodeGroup{Name: "workers", Backend: config.BackendNova, MinSize: minSize, MaxSize: maxSize,
		Nova: &config.Nova{Flavor: "m1.small", Image: "world-node-image"}}
	g := nova.New(cfg, cluster, clients.Compute, "image-id", "flavor-id", nil)
	g.Backoff = fastBackoff
	g.SuccessorPoll = time.Millisecond
	return g
}

// observe gives the group one refresh, as the provider's manager does.
func observe(t *testing.T, cloud *openstacktest.Cloud, g *nova.Group) {
	t.Helper()
	snap := &nodegroup.Snapshot{Started: time.Now()}
	pages, err := servers.List(cloud.Clients().Compute, servers.ListOpts{}).AllPages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if snap.Servers, err = servers.ExtractServers(pages); err != nil {
		t.Fatal(err)
	}
	if err := g.Observe(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
}

func isPost(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/servers")
}

// Nova applies a server POST and its answer is lost; the look-up by name that follows fails
// too. The provider must not POST again blindly: one server exists, and once the listing
// shows it, the group counts it once (not as a server and a failed placeholder).
func TestLostCreateAnswerIsNotPostedAgainBlindly(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	var posts atomic.Int32
	cloud.LoseAnswer = func(r *http.Request) bool { return isPost(r) && posts.Add(1) == 1 }
	cloud.Fault = func(r *http.Request) int {
		if r.URL.Query().Get("name") != "" {
			return http.StatusServiceUnavailable // the look-up by name
		}
		return 0
	}
	g := newGroup(cloud, nil, 0, 5)
	if err := g.IncreaseSize(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	g.Wait()
	if got := len(cloud.Servers()); got != 1 {
		t.Fatalf("%d servers after one scale-up of 1 (POSTs: %d), want 1", got, posts.Load())
	}
	observe(t, cloud, g)
	if got := g.TargetSize(); got != 1 {
		t.Errorf("target %d, want 1: the server and the failed creation's placeholder both count", got)
	}
	instances := g.Instances()
	if len(instances) != 1 || instances[0].ID != membership.ProviderID(cloud.Servers()[0]) {
		t.Errorf("instances %+v, want only the server", instances)
	}
}

// A POST answered with a 5xx that Nova did not apply is retried after the look-up says the
// server does not exist: the scale-up still reaches its target.
func TestFailedCreateIsRetriedOnceTheLookUpSaysItIsMissing(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	var posts atomic.Int32
	cloud.Fault = func(r *http.Request) int {
		if isPost(r) && posts.Add(1) == 1 {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	g := newGroup(cloud, nil, 0, 5)
	if err := g.IncreaseSize(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	g.Wait()
	if got := len(cloud.Servers()); got != 2 {
		t.Errorf("%d servers, want 2", got)
	}
	if got := g.TargetSize(); got != 2 {
		t.Errorf("target %d, want 2", got)
	}
}

// The provider accepts a deletion and is killed before Nova got it: the provider that starts
// next (or the other replica) deletes exactly that server.
func TestAcceptedDeletionSurvivesARestart(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	named := cloud.AddServer("prod-workers-a", "ACTIVE", membership.Metadata(cluster, "workers"))
	kept := cloud.AddServer("prod-workers-b", "ACTIVE", membership.Metadata(cluster, "workers"))
	cloud.Fault = func(r *http.Request) int {
		if r.Method == http.MethodDelete && strings.Contains(r.UserAgent(), "killed-replica") {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	first := newGroup(cloud, func(c *openstack.Clients) { c.Provider.UserAgent.Prepend("killed-replica") }, 0, 5)
	observe(t, cloud, first)
	if err := first.DeleteInstances(context.Background(), []string{membership.ProviderID(named)}); err != nil {
		t.Fatal(err)
	}
	first.Wait() // its deletion failed: as good as killed
	if cloud.ServerBody(named) == nil {
		t.Fatal("the killed replica's deletion went through; the test proves nothing")
	}
	next := newGroup(cloud, nil, 0, 5)
	observe(t, cloud, next)
	if got := next.TargetSize(); got != 1 {
		t.Errorf("the next provider's target is %d, want 1", got)
	}
	next.Wait()
	if cloud.ServerBody(named) != nil {
		t.Errorf("server %s, whose deletion was accepted, still exists", named)
	}
	if cloud.ServerBody(kept) == nil {
		t.Errorf("server %s was deleted without being named", kept)
	}
}

// The listing shows a failed creation in ERROR without its fault yet: the group reads the
// server's fault before telling the autoscaler why it failed (No valid host: out of resources).
func TestFailedCreationIsClassifiedFromTheServersFault(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	cloud.ListingWithoutFault = true
	id := cloud.AddServer("prod-workers-gpu", "ERROR", membership.Metadata(cluster, "workers"))
	g := newGroup(cloud, nil, 0, 5)
	observe(t, cloud, g)
	for _, inst := range g.Instances() {
		if inst.ID != membership.ProviderID(id) {
			continue
		}
		if inst.Error == nil || inst.Error.Class != nodegroup.OutOfResources || !strings.Contains(inst.Error.Message, "No valid host") {
			t.Errorf("failed creation reported as %+v, want out of resources with Nova's fault", inst.Error)
		}
		return
	}
	t.Fatal("the failed server is not listed")
}

// cluster-autoscaler 1.36 reverts a scale-up that timed out with DecreaseTargetSize of the whole
// increase. Servers that exist are not cancelled (their nodes are deleted by name once the
// autoscaler gives up on them): the refusal says so; failed creations are cancelled.
func TestRevertOfATimedOutScaleUp(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	g := newGroup(cloud, nil, 0, 5)
	if err := g.IncreaseSize(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	g.Wait()
	err := g.DecreaseTargetSize(-3)
	if !errors.Is(err, nodegroup.ErrOutOfRange) || !strings.Contains(err.Error(), "3 server(s) of the group exist") {
		t.Errorf("revert with 3 servers created: %v, want a refusal saying the servers exist", err)
	}
	if got := g.TargetSize(); got != 3 {
		t.Errorf("target %d after the refused revert, want 3", got)
	}

	quotaCloud := openstacktest.NewCloud(t)
	quotaCloud.Quota = 1
	q := newGroup(quotaCloud, nil, 0, 5)
	if err := q.IncreaseSize(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	q.Wait()
	if err := q.DecreaseTargetSize(-2); err != nil {
		t.Errorf("revert of the two failed creations: %v", err)
	}
	if got := q.TargetSize(); got != 1 {
		t.Errorf("target %d after cancelling the failed creations, want 1", got)
	}
}

// IncreaseSize answers once Nova has accepted the servers: a provider killed right after the
// answer has nothing to remember, the next one lists them and reaches the target asked for.
func TestAcceptedScaleUpSurvivesARestart(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	cloud.Fault = func(r *http.Request) int {
		if isPost(r) {
			time.Sleep(50 * time.Millisecond) // Nova takes its time to accept a server
		}
		return 0
	}
	first := newGroup(cloud, nil, 0, 5)
	if err := first.IncreaseSize(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	// first is killed as soon as it answered.
	if got := len(cloud.Servers()); got != 3 {
		t.Fatalf("%d servers accepted by Nova when IncreaseSize answered, want 3", got)
	}
	next := newGroup(cloud, nil, 0, 5)
	observe(t, cloud, next)
	if got := next.TargetSize(); got != 3 {
		t.Errorf("the next provider's target is %d, want 3", got)
	}
}

func serversNamed(cloud *openstacktest.Cloud, name string) []string {
	var out []string
	for _, id := range cloud.Servers() {
		if s := cloud.ServerBody(id); s != nil && s["name"] == name {
			out = append(out, id)
		}
	}
	return out
}

// Repair's replacement makes the successor under the same name before the old server goes.
func TestReplaceMakesTheSuccessorThenDeletesTheOldServer(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	old := cloud.AddServer("prod-workers-a", "ERROR", membership.Metadata(cluster, "workers"))
	cloud.OnCreate = func(s map[string]any) { s["status"] = "ACTIVE" }
	g := newGroup(cloud, nil, 0, 5)
	observe(t, cloud, g)
	if err := g.Replace(old); err != nil {
		t.Fatal(err)
	}
	g.Wait()
	successor := serversNamed(cloud, "prod-workers-a")
	if len(successor) != 1 || successor[0] == old || cloud.ServerBody(old) != nil {
		t.Errorf("after the replacement: servers named prod-workers-a %v, old %s still there: %v", successor, old, cloud.ServerBody(old) != nil)
	}
	observe(t, cloud, g)
	if got := g.TargetSize(); got != 1 {
		t.Errorf("target %d after the replacement, want 1", got)
	}
}

// The provider that started a replacement is killed before it could create the successor: the
// next one finishes it, so the group keeps its size.
func TestReplacementSurvivesARestart(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	old := cloud.AddServer("prod-workers-a", "ERROR", membership.Metadata(cluster, "workers"))
	cloud.OnCreate = func(s map[string]any) { s["status"] = "ACTIVE" }
	cloud.Fault = func(r *http.Request) int {
		killed := strings.Contains(r.UserAgent(), "killed-replica")
		if killed && (r.Method == http.MethodPost || r.Method == http.MethodDelete) {
			return http.StatusServiceUnavailable // nothing but the record (the rename) gets through
		}
		return 0
	}
	first := newGroup(cloud, func(c *openstack.Clients) { c.Provider.UserAgent.Prepend("killed-replica") }, 0, 5)
	observe(t, cloud, first)
	if err := first.Replace(old); err != nil {
		t.Fatal(err)
	}
	first.Wait() // it got nowhere: as good as killed
	if cloud.ServerBody(old) == nil || len(cloud.Servers()) != 1 {
		t.Fatal("the killed replica changed servers; the test proves nothing")
	}
	next := newGroup(cloud, nil, 0, 5)
	observe(t, cloud, next)
	next.Wait()
	successor := serversNamed(cloud, "prod-workers-a")
	if len(successor) != 1 || successor[0] == old {
		t.Errorf("servers named prod-workers-a after the next provider's refresh: %v (old %s)", successor, old)
	}
	if cloud.ServerBody(old) != nil {
		t.Errorf("old server %s still exists", old)
	}
	observe(t, cloud, next)
	if got := next.TargetSize(); got != 1 {
		t.Errorf("target %d, want 1", got)
	}
}

// The autoscaler deletes a node whose server repair is replacing: the group's target goes down
// by one (it used to keep its size: the deletion was skipped as "already going"), and the
// successor, once made, is deleted too.
func TestDeletingANodeUnderReplacementLowersTheTarget(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	old := cloud.AddServer("prod-workers-a", "ERROR", membership.Metadata(cluster, "workers"))
	release := make(chan struct{})
	cloud.Fault = func(r *http.Request) int {
		if isPost(r) {
			<-release // the successor's creation takes its time
		}
		return 0
	}
	g := newGroup(cloud, nil, 0, 5)
	observe(t, cloud, g)
	if err := g.Replace(old); err != nil {
		t.Fatal(err)
	}
	if got := g.TargetSize(); got != 1 {
		t.Fatalf("target %d during the replacement, want 1", got)
	}
	if err := g.DeleteInstances(context.Background(), []string{membership.ProviderID(old)}); err != nil {
		t.Fatal(err)
	}
	if got := g.TargetSize(); got != 0 {
		t.Errorf("target %d after deleting the node under replacement, want 0", got)
	}
	close(release)
	g.Wait()
	observe(t, cloud, g)
	g.Wait()
	if left := cloud.Servers(); len(left) != 0 {
		t.Errorf("servers left: %v, want none (the old server and its successor deleted)", left)
	}
}

// The successor of a replacement (of a node NotReady after a hard reboot) goes to ERROR (no
// valid host): the old server must stay a
// member and the group keep its size; the failed successor goes. It used to be the other way
// round: the old server was deleted as soon as the successor's POST answered, and the successor
// in ERROR was then a failed creation the autoscaler removes, lowering the target.
func TestFailedSuccessorKeepsTheOldServerAndTheSize(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	old := cloud.AddServer("prod-workers-a", "ACTIVE", membership.Metadata(cluster, "workers"))
	g := newGroup(cloud, nil, 0, 5)
	observe(t, cloud, g)
	cloud.OnCreate = func(s map[string]any) {
		s["status"] = "ERROR"
		s["fault"] = map[string]any{"code": 500, "message": "No valid host was found. "}
	}
	if err := g.Replace(old); err != nil {
		t.Fatal(err)
	}
	g.Wait()
	if cloud.ServerBody(old) == nil {
		t.Fatal("the old server was deleted although its successor failed")
	}
	if left := serversNamed(cloud, "prod-workers-a"); len(left) != 0 {
		t.Errorf("the failed successor is left: %v", left)
	}
	observe(t, cloud, g)
	if got := g.TargetSize(); got != 1 {
		t.Errorf("target %d after a failed replacement, want 1", got)
	}
	if msg := g.ReplaceFailed(old); !strings.Contains(msg, "No valid host") {
		t.Errorf("ReplaceFailed(old) = %q, want the successor's fault", msg)
	}
	for _, inst := range g.Instances() {
		if inst.Error != nil {
			t.Errorf("instance %s reported with error %+v: the autoscaler would delete it and lower the target", inst.ID, inst.Error)
		}
	}
	// The failure is not retried behind repair's back: the next Replace (repair's next step) is.
	observe(t, cloud, g)
	g.Wait()
	if len(cloud.Servers()) != 1 {
		t.Errorf("servers %v after a refresh: a failed replacement was retried without being asked", cloud.Servers())
	}
	cloud.OnCreate = func(s map[string]any) { s["status"] = "ACTIVE" }
	if err := g.Replace(old); err != nil {
		t.Fatal(err)
	}
	g.Wait()
	if cloud.ServerBody(old) != nil || len(serversNamed(cloud, "prod-workers-a")) != 1 {
		t.Errorf("the retried replacement did not finish: old present %v, successors %v", cloud.ServerBody(old) != nil, serversNamed(cloud, "prod-workers-a"))
	}
	if msg := g.ReplaceFailed(old); msg != "" {
		t.Errorf("ReplaceFailed(old) = %q after the retry, want none", msg)
	}
}

// A successor that never leaves BUILD is given up after SuccessorTimeout, like one in ERROR.
func TestSuccessorThatNeverBuildsIsGivenUp(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	old := cloud.AddServer("prod-workers-a", "SHUTOFF", membership.Metadata(cluster, "workers"))
	g := newGroup(cloud, nil, 0, 5)
	g.SuccessorTimeout = 50 * time.Millisecond
	observe(t, cloud, g)
	if err := g.Replace(old); err != nil {
		t.Fatal(err)
	}
	g.Wait()
	if cloud.ServerBody(old) == nil {
		t.Fatal("the old server was deleted although its successor never became ACTIVE")
	}
	if msg := g.ReplaceFailed(old); !strings.Contains(msg, "ACTIVE") {
		t.Errorf("ReplaceFailed(old) = %q, want why (not ACTIVE in time)", msg)
	}
	observe(t, cloud, g)
	if got := g.TargetSize(); got != 1 {
		t.Errorf("target %d, want 1", got)
	}
}

// A provider restarts during a replacement whose successor then went to ERROR: it must not take
// the successor's existence for success (it used to delete the old server): the successor goes,
// the old server stays.
func TestRestartedReplacementWithAFailedSuccessorKeepsTheOldServer(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	old := cloud.AddServer("prod-workers-a"+membership.ReplacedSuffix, "ACTIVE", membership.Metadata(cluster, "workers"))
	successor := cloud.AddServer("prod-workers-a", "ERROR", membership.Metadata(cluster, "workers"))
	g := newGroup(cloud, nil, 0, 5)
	observe(t, cloud, g)
	g.Wait()
	if cloud.ServerBody(old) == nil {
		t.Fatal("the old server was deleted although its successor is in ERROR")
	}
	if cloud.ServerBody(successor) != nil {
		t.Error("the failed successor was left")
	}
	if msg := g.ReplaceFailed(old); !strings.Contains(msg, "ERROR") {
		t.Errorf("ReplaceFailed(old) = %q, want the successor's failure", msg)
	}
	observe(t, cloud, g)
	if got := g.TargetSize(); got != 1 {
		t.Errorf("target %d, want 1", got)
	}
}

// The autoscaler deletes the node of a server under replacement once the successor exists (it
// is being built): the target goes down at once. It stayed up until the successor's deletion
// began (the e2e test in the world caught it: target 2 for 1).
func TestDeletingANodeWhoseSuccessorExistsLowersTheTargetAtOnce(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	old := cloud.AddServer("prod-workers-a", "ACTIVE", membership.Metadata(cluster, "workers"))
	g := newGroup(cloud, nil, 0, 5)
	g.SuccessorPoll = 20 * time.Millisecond // the successor stays BUILD: the replacement waits
	observe(t, cloud, g)
	if err := g.Replace(old); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "the successor created", func() bool { return len(serversNamed(cloud, "prod-workers-a")) == 1 })
	observe(t, cloud, g)
	if got := g.TargetSize(); got != 1 {
		t.Fatalf("target %d during the replacement, want 1", got)
	}
	if err := g.DeleteInstances(context.Background(), []string{membership.ProviderID(old)}); err != nil {
		t.Fatal(err)
	}
	if got := g.TargetSize(); got != 0 {
		t.Errorf("target %d right after deleting the node whose successor exists, want 0", got)
	}
	g.Wait()
	observe(t, cloud, g)
	g.Wait()
	if left := cloud.Servers(); len(left) != 0 {
		t.Errorf("servers left: %v, want none", left)
	}
}

// Nova keeps no metadata on a server in ERROR (409 "while it is in vm_state error"), and asking
// again does not change that: the deletion of such a node is recorded by the DELETE itself,
// sent within the call, after a single refused mark.
func TestDeletingAServerInErrorIsRecordedByItsDelete(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	broken := cloud.AddServer("prod-workers-a", "ERROR", membership.Metadata(cluster, "workers"))
	cloud.AddServer("prod-workers-b", "ACTIVE", membership.Metadata(cluster, "workers"))
	var marks atomic.Int32
	cloud.Fault = func(r *http.Request) int {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, broken+"/metadata") {
			marks.Add(1)
		}
		return 0
	}
	g := newGroup(cloud, nil, 0, 5)
	observe(t, cloud, g)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := g.DeleteInstances(ctx, []string{membership.ProviderID(broken)}); err != nil {
		t.Fatal(err)
	}
	if got := marks.Load(); got != 1 {
		t.Errorf("%d marks sent to a server in ERROR, want 1 (a refusal for its state is not retried)", got)
	}
	for _, id := range cloud.Servers() {
		if id == broken {
			t.Errorf("the call answered OK but the server in ERROR still exists: its deletion is recorded nowhere")
		}
	}
	if got := g.TargetSize(); got != 1 {
		t.Errorf("target %d, want 1", got)
	}
}

// A mark that Nova refuses (not for the server's state) fails the call, and the marks of the
// call's other servers are taken off: nothing of the call stays.
func TestAFailedMarkUndoesTheCallsOtherMarks(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	a := cloud.AddServer("prod-workers-a", "ACTIVE", membership.Metadata(cluster, "workers"))
	b := cloud.AddServer("prod-workers-b", "ACTIVE", membership.Metadata(cluster, "workers"))
	cloud.Fault = func(r *http.Request) int {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, b+"/metadata") {
			return http.StatusForbidden
		}
		return 0
	}
	g := newGroup(cloud, nil, 0, 5)
	observe(t, cloud, g)
	err := g.DeleteInstances(context.Background(), []string{membership.ProviderID(a), membership.ProviderID(b)})
	if err == nil {
		t.Fatal("the call answered OK though one of its servers could not be marked")
	}
	g.Wait()
	if len(cloud.Servers()) != 2 {
		t.Errorf("servers %v after a failed call, want both", cloud.Servers())
	}
	if _, marked := cloud.ServerBody(a)["metadata"].(map[string]any)[membership.DeletionKey]; marked {
		t.Errorf("server %s keeps the mark of a call that failed", a)
	}
	if got := g.TargetSize(); got != 2 {
		t.Errorf("target %d after a failed call, want 2", got)
	}
}

// Two replicas, each beside its own autoscaler; only the Lease holder's may write on its own.
// The standby sees a deletion the leader recorded and a replacement the leader started (the
// old server renamed -replaced): it deletes nothing and creates nothing (two successors under
// one name would register two kubelets as one Node). Once it leads, it finishes both.
func TestStandbyWritesNothingUntilItLeads(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	md := membership.Metadata(cluster, "workers")
	// What the leader recorded before it was killed: a deletion it accepted, a replacement.
	markedMD := membership.Metadata(cluster, "workers")
	markedMD[membership.DeletionKey] = "2026-12-08T00:00:00Z"
	cloud.AddServer("prod-workers-a", "ACTIVE", markedMD)
	cloud.AddServer("prod-workers-b"+membership.ReplacedSuffix, "ACTIVE", md)
	cloud.AddServer("prod-workers-c", "ACTIVE", md)
	before := cloud.Calls()

	standby := newGroup(cloud, nil, 0, 5)
	var g leadertest.Switch
	standby.Leader = &g
	for range 3 {
		observe(t, cloud, standby)
		waitAtMost(standby, time.Second) // a write a standby started would be under way by then
	}
	after := cloud.Calls()
	for op, n := range after {
		if n != before[op] && !strings.HasPrefix(op, "GET") {
			t.Errorf("the standby wrote to OpenStack: %s %d times", op, n-before[op])
		}
	}
	if got := len(cloud.Servers()); got != 3 {
		t.Fatalf("%d servers while nobody led the writes, want 3", got)
	}
	cloud.OnCreate = func(s map[string]any) { s["status"] = "ACTIVE" } // the successor boots
	g.Set(true)
	openstacktest.Eventually(t, "the new leader finishes the recorded deletion and replacement", func() bool {
		observe(t, cloud, standby)
		names := map[string]int{}
		for _, id := range cloud.Servers() {
			names[cloud.ServerBody(id)["name"].(string)]++
		}
		_, gone := names["prod-workers-a"]
		return !gone && names["prod-workers-b"] == 1
	})
}

// waitAtMost waits for the group's background work, or d.
func waitAtMost(g *nova.Group, d time.Duration) {
	done := make(chan struct{})
	go func() { g.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// A call fails at its deadline; its mark lands afterwards and is being taken off when a refresh
// lists the servers (the mark still on). That refresh, observed after the unmark finished, must
// not resume the deletion: the autoscaler untainted the node when the call failed.
func TestARefreshThatListedAMarkBeingUndoneDoesNotResumeIt(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	id := cloud.AddServer("prod-workers-a", "ACTIVE", membership.Metadata(cluster, "workers"))
	cloud.AddServer("prod-workers-b", "ACTIVE", membership.Metadata(cluster, "workers"))
	markHeld, unmarkHeld := make(chan struct{}), make(chan struct{})
	var unmarking atomic.Bool
	cloud.Fault = func(r *http.Request) int {
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, id+"/metadata"):
			<-markHeld
		case r.Method == http.MethodDelete && strings.Contains(r.URL.Path, id+"/metadata/"):
			unmarking.Store(true)
			<-unmarkHeld
		}
		return 0
	}
	g := newGroup(cloud, nil, 0, 5)
	observe(t, cloud, g)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := g.DeleteInstances(ctx, []string{membership.ProviderID(id)}); err == nil {
		t.Fatal("the call answered OK though its mark was held past its deadline")
	}
	close(markHeld) // the mark lands after the error answer; its unmark is sent and held
	openstacktest.Eventually(t, "the unmark to be on its way", unmarking.Load)
	snap := &nodegroup.Snapshot{Started: time.Now()}
	pages, err := servers.List(cloud.Clients().Compute, servers.ListOpts{}).AllPages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	snap.Servers, _ = servers.ExtractServers(pages) // lists the mark
	close(unmarkHeld)
	g.Wait() // the unmark is done
	if err := g.Observe(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	g.Wait()
	if cloud.ServerBody(id) == nil {
		t.Error("the server of a call that failed was deleted by a refresh that listed its mark while it was being taken off")
	}
}
