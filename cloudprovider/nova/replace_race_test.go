package nova_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack/openstacktest"
)

// Repair asks again for a replacement that was given up (the old server still carries the
// "-replaced" name of the first attempt) and a refresh lands while Replace is renaming it: one
// successor, not two. The refresh used to resume the replacement recorded in the name while
// Replace went on with its own: two servers for a group of one (the e2e test saw it in CI).
func TestRetriedReplacementAndARefreshMakeOneSuccessor(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	old := cloud.AddServer("prod-workers-a", "ACTIVE", membership.Metadata(cluster, "workers"))
	g := newGroup(cloud, nil, 0, 5)
	g.SuccessorTimeout = 2 * time.Second // two successors of one name: the old code waited for ever
	observe(t, cloud, g)
	cloud.Fault = func(r *http.Request) int {
		if isPost(r) {
			return http.StatusForbidden // quota used up: the first replacement is given up
		}
		return 0
	}
	if err := g.Replace(old); err != nil {
		t.Fatal(err)
	}
	g.Wait()
	if g.ReplaceFailed(old) == "" {
		t.Fatal("the first replacement was not given up")
	}
	cloud.OnCreate = func(s map[string]any) { s["status"] = "ACTIVE" }
	var renaming atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	cloud.Fault = func(r *http.Request) int {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/servers/"+old) && renaming.CompareAndSwap(false, true) {
			close(entered)
			<-release // the rename is on its way while a refresh reads the servers
		}
		return 0
	}
	replaced := make(chan error)
	go func() { replaced <- g.Replace(old) }()
	<-entered
	observe(t, cloud, g)
	close(release)
	if err := <-replaced; err != nil {
		t.Fatal(err)
	}
	g.Wait()
	observe(t, cloud, g)
	g.Wait()
	if got := serversNamed(cloud, "prod-workers-a"); len(got) != 1 {
		t.Errorf("successors %v, want one", got)
	}
	if cloud.ServerBody(old) != nil {
		t.Error("the old server was not deleted once its successor was ACTIVE")
	}
}

// The autoscaler deletes a node while repair is renaming its server for a replacement. The
// old server was deleted and the successor still made, and the target did not go down: a
// group of 2 holding 2 servers after the autoscaler removed one. The deletion is refused while
// the rename is on its way (nothing deleted; the autoscaler asks again in its next loop).
func TestDeletionDuringAReplacementsRenameIsRefused(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	old := cloud.AddServer("prod-workers-a", "ACTIVE", membership.Metadata(cluster, "workers"))
	cloud.AddServer("prod-workers-b", "ACTIVE", membership.Metadata(cluster, "workers"))
	cloud.OnCreate = func(s map[string]any) { s["status"] = "ACTIVE" }
	g := newGroup(cloud, nil, 0, 5)
	observe(t, cloud, g)
	var renaming atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	cloud.Fault = func(r *http.Request) int {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/servers/"+old) && renaming.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
		return 0
	}
	replaced := make(chan error)
	go func() { replaced <- g.Replace(old) }()
	<-entered
	err := g.DeleteInstances(context.Background(), []string{membership.ProviderID(old)})
	close(release)
	if rerr := <-replaced; rerr != nil {
		t.Fatal(rerr)
	}
	g.Wait()
	observe(t, cloud, g)
	g.Wait()
	target := g.TargetSize()
	n := len(cloud.Servers())
	if err == nil && (target != 1 || n != 1) {
		t.Errorf("the deletion answered OK during the rename, then target %d with %d servers: want 1 and 1", target, n)
	}
	if err != nil && (target != 2 || n != 2) {
		t.Errorf("the deletion was refused, then target %d with %d servers: want 2 and 2 (the replacement went on)", target, n)
	}
}
