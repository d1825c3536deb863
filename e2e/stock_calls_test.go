//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/autoscaler"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/faultproxy"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

// Six nodes of one Heat group are removed the way cluster-autoscaler 1.36.1 removes them: six
// single-node DeleteNodes calls at the same moment, each under its own 5 s grpc_timeout, the
// nodes tainted first and untainted when their call fails. Nova is slow to take the deletion
// marks (1.5 s each) and one mark is held past its call's deadline. Watched for the whole
// window: a node whose call failed keeps its server and takes pods again; the servers of the
// calls that succeeded, and only those, go; the calls ran side by side (not queued into their
// deadlines). A second round, as the autoscaler's next loop, removes the rest.
func TestHeatNodesDeletedAsTheStockAutoscalerDeletesThem(t *testing.T) {
	w := framework.Connect(t)
	ctx := context.Background()
	const group, count = "stock-delete", 6
	w.SetNodeGroups(t, fmt.Sprintf("clusterName: %s\nnodeGroups:\n- name: %s\n  labels: {e2e-group: %s}\n", w.Cluster, group, group))
	createNodeGroupStack(t, w, group, count, nil)
	proxy, clouds := proxiedClouds(t, w)
	p := framework.StartProvider(t, withClouds(heatConfig(w, group, 0, count), w, clouds))
	d := &autoscaler.Driver{Client: p.Client, Kube: w.Kube, Timeout: 5 * time.Second}
	framework.Eventually(t, 180*time.Second, 2*time.Second, "6 ready nodes", func() (bool, error) {
		n := len(groupNodes(t, w, group))
		return n == count, fmt.Errorf("%d nodes", n)
	})
	framework.Eventually(t, 30*time.Second, time.Second, "the provider sees the 6 members", func() (bool, error) {
		loop, err := d.RunLoop(ctx)
		if err != nil {
			return false, err
		}
		n := 0
		for _, g := range loop.NodeToGroup {
			if g == group {
				n++
			}
		}
		return n == count, fmt.Errorf("%d nodes of the group", n)
	})
	nodes := groupNodes(t, w, group)
	serverOf := map[string]string{} // node name -> server ID
	for _, n := range nodes {
		id, _ := membership.ServerID(n.Spec.ProviderID)
		serverOf[n.Name] = id
	}

	var held atomic.Int32
	proxy.Delay, proxy.HoldFor = 1500*time.Millisecond, 6*time.Second
	proxy.Decide = func(r *http.Request) faultproxy.Fault {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/metadata") {
			return faultproxy.Pass
		}
		if held.Add(1) == 1 {
			return faultproxy.Timeout // held past the call's deadline, then dropped
		}
		return faultproxy.Latency
	}
	// Watch the whole window: a failed call's server must never go, early or late.
	var mu sync.Mutex
	outcome := map[string]error{}
	decided := map[string]bool{}
	watch := watchGroupServers(t, w, group, func(gone string) error {
		mu.Lock()
		defer mu.Unlock()
		for name, id := range serverOf {
			if id == gone && decided[name] && outcome[name] != nil {
				return fmt.Errorf("server %s of node %s went, but its DeleteNodes call answered %v", id, name, outcome[name])
			}
		}
		return nil
	})
	start := time.Now()
	first := d.DeleteNodesAsStock(ctx, group, nodes...)
	took := time.Since(start)
	mu.Lock()
	var failed []corev1.Node
	for _, n := range nodes {
		outcome[n.Name], decided[n.Name] = first[n.Name], true
		if first[n.Name] != nil {
			failed = append(failed, n)
			t.Logf("node %s: %v", n.Name, first[n.Name])
		}
	}
	mu.Unlock()
	proxy.Decide = nil
	t.Logf("6 concurrent single-node calls answered in %s: %d failed", took.Round(time.Millisecond), len(failed))
	if len(failed) == 0 {
		t.Fatal("no call failed: the held mark did not push its call past the deadline, the test checked nothing")
	}
	if len(failed) > 1 {
		t.Errorf("%d calls failed; only the held one should: the calls were queued one behind the other", len(failed))
	}
	for _, n := range failed {
		node, err := w.Kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("node %s of a failed call: %v", n.Name, err)
		}
		if autoscaler.Tainted(*node) {
			t.Errorf("node %s still carries %s after its call failed", n.Name, autoscaler.ToBeDeletedTaint)
		}
	}
	framework.Eventually(t, 180*time.Second, 2*time.Second, "the succeeded calls' servers gone", func() (bool, error) {
		left := serverIDs(t, w, group)
		return len(left) == len(failed), fmt.Errorf("%d servers left, want %d", len(left), len(failed))
	})
	// Past the held mark's 6 s and its retries: the failed call's server is still there, unmarked.
	time.Sleep(10 * time.Second)
	for _, n := range failed {
		s, err := servers.Get(ctx, w.Project.Compute, serverOf[n.Name]).Extract()
		if err != nil {
			t.Errorf("server of node %s (failed call): %v", n.Name, err)
			continue
		}
		if _, marked := s.Metadata[membership.DeletionKey]; marked {
			t.Errorf("server %s keeps the deletion mark of a call that failed: a restarted provider would delete it", s.ID)
		}
	}
	// The next loop deletes the rest.
	for name, err := range d.DeleteNodesAsStock(ctx, group, failed...) {
		mu.Lock()
		outcome[name] = err
		mu.Unlock()
		if err != nil {
			t.Errorf("second round, node %s: %v", name, err)
		}
	}
	framework.Eventually(t, 180*time.Second, 2*time.Second, "every server gone", func() (bool, error) {
		left := serverIDs(t, w, group)
		return len(left) == 0, fmt.Errorf("%d servers left", len(left))
	})
	if size, _ := d.TargetSize(ctx, group); size != 0 {
		t.Errorf("target %d, want 0", size)
	}
	watch()
}

// watchGroupServers lists the group's servers every 500 ms until the returned stop is called,
// and fails the test when a server that went is one check says must not go.
func watchGroupServers(t *testing.T, w *framework.World, group string, check func(gone string) error) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	finished := make(chan struct{})
	var errs []error
	go func() {
		defer close(finished)
		seen := map[string]bool{}
		for {
			list, err := w.GroupServers(context.Background(), group)
			if err == nil {
				now := map[string]bool{}
				for _, s := range list {
					now[s.ID] = true
					seen[s.ID] = true
				}
				for id := range seen {
					if !now[id] {
						if err := check(id); err != nil {
							errs = append(errs, err)
						}
						delete(seen, id)
					}
				}
			}
			select {
			case <-done:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		for _, err := range errs {
			t.Error(err)
		}
	}
}
