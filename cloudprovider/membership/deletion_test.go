package membership

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack/openstacktest"
)

// Marking a large scale-down must not send Nova one request per server at once: no more than
// markParallelism are in flight, and all servers are marked.
func TestMarkBoundsTheRequestsInFlight(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	var ids []string
	for range 3 * markParallelism {
		ids = append(ids, cloud.AddServer("w", "ACTIVE", nil))
	}
	var inFlight, most atomic.Int32
	release := make(chan struct{})
	t.Cleanup(func() { // before the server's Close, which waits for the held requests
		select {
		case <-release:
		default:
			close(release)
		}
	})
	cloud.Fault = func(r *http.Request) int {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		return 0
	}
	backoff := openstack.Backoff{Attempts: 1}
	done := make(chan map[string]error)
	go func() { done <- Mark(context.Background(), cloud.Clients().Compute, backoff, ids, DeletionKey, "now") }()
	// The first requests are held until the bound is reached, and a while longer for any request
	// beyond it to show up: a slow machine only makes an excess less likely to be seen, never a
	// correct bound fail.
	openstacktest.Eventually(t, "the first requests are in flight", func() bool { return inFlight.Load() >= markParallelism })
	time.Sleep(100 * time.Millisecond)
	close(release)
	errs := <-done
	if most.Load() > markParallelism || len(errs) != 0 {
		t.Errorf("%d servers: %d requests in flight at most, errors %v; want at most %d and none", len(ids), most.Load(), errs, markParallelism)
	}
	for _, id := range ids {
		if md, _ := cloud.ServerBody(id)["metadata"].(map[string]any); md[DeletionKey] != "now" {
			t.Errorf("server %s not marked: metadata %v", id, md)
		}
	}
}
