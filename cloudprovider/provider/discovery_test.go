package provider

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/heat"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/leader"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/leader/leadertest"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack/openstacktest"
)

// A tagged stack that a configured group already drives (named by its name or its ID) is not
// discovered as a second group: two groups claiming one stack's nodes answer
// NodeGroupForNode at random, and both resize it. It is said once, not at every refresh.
func TestDiscoveryLeavesStacksOfConfiguredGroups(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	tags := []string{TagEnabled, TagClusterPrefix + "prod", TagMin + "0", TagMax + "5"}
	cloud.AddStack("prod-workers", map[string]string{"count": "0", "removal": ""}).Tags = tags
	batch := cloud.AddStack("prod-batch", map[string]string{"count": "0", "removal": ""})
	batch.Tags = tags
	cloud.AddStack("prod-spare", map[string]string{"count": "0", "removal": ""}).Tags = tags
	p, err := newProvider(t, cloud, fmt.Sprintf(`cloud: {name: world}
clusterName: prod
nodeGroups:
- {name: workers, backend: heat, minSize: 0, maxSize: 5, heat: {stack: prod-workers}}
- {name: batch, backend: heat, minSize: 0, maxSize: 5, heat: {stack: %s}}
autoDiscovery: {heatStacks: true}
`, batch.ID))
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	klog.LogToStderr(false)
	klog.SetOutput(&logged)
	t.Cleanup(func() {
		klog.SetOutput(os.Stderr)
		klog.LogToStderr(true)
	})
	ctx := context.Background()
	for refresh := 1; refresh <= 2; refresh++ {
		snap, err := p.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, g := range p.discoverStacks(ctx, snap, nil) {
			ids = append(ids, g.ID())
		}
		if got := strings.Join(ids, ","); got != "prod-spare" {
			t.Errorf("refresh %d: discovered %q, want only prod-spare (prod-workers and prod-batch are configured groups' stacks)", refresh, got)
		}
	}
	klog.Flush()
	for _, want := range []string{`stack="prod-workers" group="workers"`, `stack="prod-batch" group="batch"`} {
		if n := strings.Count(logged.String(), want); n != 1 {
			t.Errorf("%s said %d times over two refreshes, want once; log:\n%s", want, n, logged.String())
		}
	}
}

// A discovered stack loses its tags while its group waits to update it (an operator's update
// runs): the group stops, and makes no Heat call after the refresh that dropped it. Tagged
// again, the stack has one writer: the change asked of the dropped group is not sent, the one
// asked of the new group is sent once. The dropped group's update loop ran on, and wrote its
// change beside the new group's.
func TestDroppedDiscoveredGroupStopsWriting(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	tags := []string{TagEnabled, TagClusterPrefix + "prod", TagMin + "0", TagMax + "5"}
	nodes := &openstacktest.StackGroup{Resource: "nodes", CountParam: "count", RemovalParam: "removal",
		Metadata: membership.Metadata("prod", "prod-pool")}
	stack := cloud.AddStack("prod-pool", map[string]string{"count": "1", "removal": ""}, nodes)
	cloud.SetStackTags(stack, tags)
	var stackCalls atomic.Int32
	cloud.HeatFault = func(r *http.Request) int {
		if strings.Contains(r.URL.Path, "/stacks/prod-pool/") {
			stackCalls.Add(1)
		}
		return 0
	}
	p, err := newProvider(t, cloud, "cloud: {name: world}\nclusterName: prod\nrefreshInterval: 1h\nautoDiscovery: {heatStacks: true}\n")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// Start refreshes at once (the interval is an hour: its background refreshes never come).
	refresh := func() {
		t.Helper()
		if err := p.Manager.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	group := func() *heat.Group {
		t.Helper()
		g, err := p.Manager.Group("prod-pool")
		if err != nil {
			t.Fatal(err)
		}
		hg := g.(*heat.Group)
		hg.PollInterval = 5 * time.Millisecond // its update loop is idle: nothing was asked yet
		return hg
	}
	refresh()
	first := group()
	cloud.SetStackStatus(stack, "UPDATE_IN_PROGRESS") // by other hands
	if err := first.IncreaseSize(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "the group waits for the stack", func() bool { return stackCalls.Load() > 2 })

	cloud.SetStackTags(stack, nil)
	refresh()
	if _, err := p.Manager.Group("prod-pool"); err == nil {
		t.Fatal("the untagged stack is still a group")
	}
	after := stackCalls.Load()
	time.Sleep(200 * time.Millisecond) // forty of its poll intervals
	if n := stackCalls.Load() - after; n != 0 {
		t.Errorf("the dropped group made %d Heat calls on its stack after the refresh that dropped it", n)
	}

	cloud.SetStackTags(stack, tags)
	refresh()
	second := group()
	cloud.SetStackStatus(stack, "UPDATE_COMPLETE")
	if err := second.IncreaseSize(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	openstacktest.Eventually(t, "the new group's scale-up reaches the stack", func() bool {
		updates, _ := cloud.StackUpdates(stack)
		return len(updates) > 0
	})
	time.Sleep(200 * time.Millisecond) // a second writer has had time to write
	if updates, _ := cloud.StackUpdates(stack); len(updates) != 1 || updates[0]["count"] != "3" {
		t.Errorf("updates %v, want one, to count 3: the stack has one writer", updates)
	}
	for _, v := range cloud.Violations() {
		t.Errorf("fake Heat: %s", v)
	}
}

// A discovered stack is deleted and made again under its name between two refreshes: it is
// another stack, driven by a new group; the old group, whose pending changes named the old
// stack's members, is stopped. The old group was kept and went on with the new stack.
func TestStackMadeAgainUnderItsNameGetsANewGroup(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	tags := []string{TagEnabled, TagClusterPrefix + "prod", TagMin + "0", TagMax + "5"}
	pool := func() *openstacktest.Stack {
		nodes := &openstacktest.StackGroup{Resource: "nodes", CountParam: "count", RemovalParam: "removal",
			Metadata: membership.Metadata("prod", "prod-pool")}
		s := cloud.AddStack("prod-pool", map[string]string{"count": "1", "removal": ""}, nodes)
		cloud.SetStackTags(s, tags)
		return s
	}
	old := pool()
	p, err := newProvider(t, cloud, "cloud: {name: world}\nclusterName: prod\nrefreshInterval: 1h\nautoDiscovery: {heatStacks: true}\n")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := p.Manager.Start(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := p.Manager.Group("prod-pool")
	if err != nil {
		t.Fatal(err)
	}
	cloud.DeleteStack(old)
	made := pool()
	if err := p.Manager.Start(ctx); err != nil { // a refresh at once
		t.Fatal(err)
	}
	second, err := p.Manager.Group("prod-pool")
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatalf("the group of the deleted stack %s drives the stack %s made under its name", old.ID, made.ID)
	}
	if err := first.IncreaseSize(context.Background(), 1); err == nil {
		t.Error("the old group still takes changes")
	}
	if got := second.(*heat.Group).StackID(); got != made.ID {
		t.Errorf("the new group reads stack %s, want %s", got, made.ID)
	}
}

// A group discovered after this replica was made a standby writes nothing on its own either:
// discovered groups got no gate (nil: always leads), so a standby sent their stack updates.
func TestDiscoveredGroupsFollowTheLeadershipGate(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	cloud.AddStack("prod-spare", map[string]string{"count": "0", "removal": ""}).Tags =
		[]string{TagEnabled, TagClusterPrefix + "prod", TagMin + "0", TagMax + "5"}
	p, err := newProvider(t, cloud, "cloud: {name: world}\nclusterName: prod\nnodeGroups: []\nautoDiscovery: {heatStacks: true}\n")
	if err != nil {
		t.Fatal(err)
	}
	var standby leadertest.Switch
	p.SetLeader(&standby)
	snap, err := p.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := p.discoverStacks(context.Background(), snap, nil)
	if len(found) != 1 {
		t.Fatalf("discovered %d groups, want 1", len(found))
	}
	if g := found[0].(*heat.Group); g.Leader != leader.Gate(&standby) {
		t.Errorf("the discovered group's gate is %v, want this replica's", g.Leader)
	}
	for _, g := range found {
		g.(*heat.Group).Stop()
	}
}
