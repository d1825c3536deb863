package grpcserver

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nova"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack/openstacktest"
)

// cluster-autoscaler 1.36.1 with its default --node-deletion-batcher-interval=0 deletes every
// node from its own goroutine (core/scaledown/actuation/delete_in_batch.go): several
// single-node DeleteNodes calls on one group at the same moment, each under its own
// grpc_timeout. When a call fails, a deadline included, it removes the
// ToBeDeletedByClusterAutoscaler taint and the node takes pods again: a call that answers an
// error must not delete its server, ever.
//
// Nova is slow here: every deletion mark takes a while, and one mark hangs until its call has
// already answered (and is applied by Nova after that).
func TestConcurrentSingleNodeDeletionsPastTheirDeadlineDeleteNothing(t *testing.T) {
	const calls = 6
	var ids []string
	h := newHarness(t, 1, 10, func(c *openstacktest.Cloud) { ids = members(c, "g0", calls+1) })
	hung := ids[calls-1]
	release := make(chan struct{})
	var inflight, overlap atomic.Int32
	h.cloud.Fault = func(r *http.Request) int {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/metadata") {
			return 0
		}
		if strings.Contains(r.URL.Path, hung) {
			<-release // Nova takes this one after its caller gave up
			return 0
		}
		if n := inflight.Add(1); n > 1 {
			overlap.Store(n)
		}
		time.Sleep(300 * time.Millisecond)
		inflight.Add(-1)
		return 0
	}
	errs := make([]error, calls)
	hungDone := make(chan struct{})
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == calls-1 {
				defer close(hungDone)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, errs[i] = h.client.NodeGroupDeleteNodes(ctx, &pb.NodeGroupDeleteNodesRequest{Id: "g0",
				Nodes: []*pb.ExternalGrpcNode{{ProviderID: membership.ProviderID(ids[i]), Name: "n" + ids[i]}}})
		}()
	}
	// The hung mark is released once its call has answered.
	<-hungDone
	close(release)
	wg.Wait()
	if errs[calls-1] == nil {
		t.Fatalf("the call whose mark hung past its deadline answered OK")
	}
	// Let every background deletion, mark and unmark settle, then compare with Nova.
	group, err := h.p.Manager.Group("g0")
	if err != nil {
		t.Fatal(err)
	}
	novaGroup := group.(*nova.Group)
	settle := func() {
		for range 3 { // deletions started by a settling call, then marks undone after it
			time.Sleep(200 * time.Millisecond)
			novaGroup.Wait()
		}
	}
	settle()
	left := h.cloud.Servers()
	for i, err := range errs[:calls] {
		exists := slices.Contains(left, ids[i])
		switch {
		case err == nil && exists:
			t.Errorf("call %d answered OK but server %s was not deleted", i, ids[i])
		case err != nil && !exists:
			t.Errorf("call %d answered %v, yet its server %s was deleted: the autoscaler has untainted that node", i, err, ids[i])
		case err != nil:
			if _, marked := h.cloud.ServerBody(ids[i])["metadata"].(map[string]any)[membership.DeletionKey]; marked {
				t.Errorf("call %d answered an error, yet server %s keeps the deletion mark: a restarted provider would delete it", i, ids[i])
			}
		}
	}
	if !slices.Contains(left, ids[calls]) {
		t.Errorf("server %s that no call named was deleted", ids[calls])
	}
	if overlap.Load() < 2 {
		t.Errorf("the calls' marks never overlapped: concurrent single-node calls were queued one behind the other")
	}
	// A refresh after it all resumes nothing.
	snap, err := h.p.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := novaGroup.Observe(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	settle()
	for i, err := range errs {
		if err != nil && !slices.Contains(h.cloud.Servers(), ids[i]) {
			t.Errorf("server %s of a failed call was deleted after a refresh", ids[i])
		}
	}
}

// Nova accepts one server of a scale-up of 2 before the call's deadline and the other after
// it. The call used to answer OK after 3 s with one server accepted and the other made in the
// background: a replica that took over right then saw target 1 and its autoscaler asked again
// (three servers for two, seen in the failover soak). Now the call answers OK only when Nova
// has accepted every server; past its deadline it answers an error and makes nothing: what
// was accepted is deleted, the target is back where it was.
func TestScaleUpPastItsDeadlineMakesNothing(t *testing.T) {
	h := newHarness(t, 1, 10, func(c *openstacktest.Cloud) { members(c, "g0", 1) })
	var posts atomic.Int32
	release := make(chan struct{})
	h.cloud.Fault = func(r *http.Request) int {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/servers") && posts.Add(1) == 2 {
			<-release // Nova is slow with the second
		}
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := h.client.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "g0", Delta: 2})
	close(release)
	group, _ := h.p.Manager.Group("g0")
	novaGroup := group.(*nova.Group)
	for range 3 {
		time.Sleep(200 * time.Millisecond)
		novaGroup.Wait()
	}
	target := group.TargetSize()
	servers := len(h.cloud.Servers())
	switch {
	case err == nil && (target != 3 || servers != 3):
		t.Errorf("the call answered OK; target %d with %d servers, want 3 and 3", target, servers)
	case err != nil && (target != 1 || servers != 1):
		t.Errorf("the call answered %v; target %d with %d servers, want 1 and 1: an error must leave nothing made", err, target, servers)
	case err == nil:
		t.Errorf("the call answered OK before Nova accepted the second server (held past the deadline)")
	}
}
