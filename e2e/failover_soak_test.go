//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/autoscaler"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/faultproxy"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

// failoverConfig has one group of each kind: Nova (with node repair on), a Heat ResourceGroup
// and a Heat AutoScalingGroup, each of maxSize servers.
func failoverConfig(w *framework.World, clouds string, nova, rg, asg string, maxSize int) string {
	return fmt.Sprintf(`cloud: {cloudsFile: %s, name: world}
clusterName: %s
refreshInterval: 2s
repair: {enabled: true, interval: 2s, unhealthyAfter: 60s, grace: 30s, escalateAfter: 60s, drainTimeout: 12s}
nodeGroups:
- name: %s
  backend: nova
  minSize: 0
  maxSize: %d
  labels: {e2e-group: %s}
  nova: {flavor: m1.small, image: world-node-image}
- {name: %s, backend: heat, minSize: 0, maxSize: %d, heat: {stack: %s}, repair: {disabled: true}}
- {name: %s, backend: heat, minSize: 0, maxSize: %d, heat: {stack: %s}, repair: {disabled: true}}
`, clouds, w.Cluster, nova, maxSize, nova, rg, maxSize, rg, asg, maxSize, asg)
}

// Two autoscaler replicas, each beside its own provider (as the chart runs them), drive a Nova
// group, a Heat ResourceGroup and a Heat AutoScalingGroup through OpenStack APIs that fail
// now and then. Only the Lease holder acts; the Lease moves to the other replica right after
// each scale-up was answered, and a provider is SIGKILLed right after each scale-down was
// answered (the leader's and the standby's in turn), then started again. Checked at every poll
// against every server of the project (by id and name, not through the product's membership
// rule) and at the end: no leak, no server deleted that no successful DeleteNodes named, never
// above maxSize, never two servers or two Nodes with one name, the target converges.
func TestFailoverSoak(t *testing.T) {
	w := framework.Connect(t)
	cycles, deadline, rng := soakCycles(t)
	if os.Getenv("OSA_SOAK_CYCLES") == "" {
		cycles = 1 // per kind in make test: a few minutes; make soak runs the long one
	}
	started := time.Now()
	proxy, clouds := proxiedClouds(t, w)
	proxy.HoldFor, proxy.Delay = 3*time.Second, 500*time.Millisecond
	const novaGroup, rgGroup, asgGroup, maxSize = "fo-nova", "fo-heat", "fo-asg", 3
	w.SetNodeGroups(t, fmt.Sprintf("clusterName: %s\nnodeGroups:\n- {name: %s}\n- {name: %s}\n- {name: %s}\n", w.Cluster, novaGroup, rgGroup, asgGroup))
	cleanupGroupServers(t, w, novaGroup)
	createNodeGroupStack(t, w, rgGroup, 0, nil)
	createStack(t, w, "../examples/heat-asg-node-group.yaml", asgGroup, 0, nil)
	lease := "soak-failover"
	setHolder := holdLease(t, w, "kube-system", lease, "replica-a")
	cfg := failoverConfig(w, clouds, novaGroup, rgGroup, asgGroup, maxSize)
	start := func(identity string) *framework.Provider {
		return framework.StartProvider(t, cfg, "--kubeconfig", w.Env["KUBECONFIG"],
			"--autoscaler-lease", "kube-system/"+lease, "--identity", identity)
	}
	var mu sync.Mutex
	replicas := map[string]*framework.Provider{"replica-a": start("replica-a"), "replica-b": start("replica-b")}
	leaderName := "replica-a"
	driver := func() *autoscaler.Driver {
		mu.Lock()
		defer mu.Unlock()
		return &autoscaler.Driver{Client: replicas[leaderName].Client, Kube: w.Kube}
	}
	other := func(name string) string {
		if name == "replica-a" {
			return "replica-b"
		}
		return "replica-a"
	}
	failovers, kills := map[string]int{}, map[string]int{}
	var kind string
	chaos := func(moment string) {
		switch moment {
		case "scaled-up": // the autoscaler that asked loses the Lease; the other leads now
			mu.Lock()
			leaderName = other(leaderName)
			next := leaderName
			mu.Unlock()
			setHolder(next)
			failovers[kind]++
		case "deleted": // a crash right after the answer, the leader's and the standby's in turn
			mu.Lock()
			victim := leaderName
			if kills[kind]%2 == 1 {
				victim = other(leaderName)
			}
			p := replicas[victim]
			mu.Unlock()
			p.Kill()
			p.Restart(t)
			kills[kind]++
		}
	}
	// The invariants on every server of the project, whatever the product thinks of them.
	names := startNameWatch(t, w)
	proxy.Decide = faultproxy.RandomFaults(0.15, rng.Uint64(), faultproxy.Faults...)
	var results []string
	kinds := []string{novaGroup, rgGroup, asgGroup}
	for i, group := range kinds {
		kind = group
		before := proxy.Injected()
		// Each kind gets its share of the time, so that every kind runs.
		share := started.Add(deadline.Sub(started) * time.Duration(i+1) / time.Duration(len(kinds)))
		res := soak(t, w, soakHooks{driver: driver, chaos: chaos}, group, maxSize, cycles, share, rng)
		injected := proxy.Injected() - before
		results = append(results, fmt.Sprintf("%s: %d cycles, %d faults injected, %d failovers, %d kills, %d failed DeleteNodes and %d failed IncreaseSize calls (nothing done), %d leaks, %d wrong deletions, %d times above maxSize",
			group, res.cycles, injected, failovers[group], kills[group], res.failedDeletions, res.failedScaleUps, res.leaks, res.wrongDeletions, res.aboveMax))
		// The soak did its work: a run that cycled, failed over or killed nothing checked nothing.
		if res.cycles < min(cycles, 1) || failovers[group] < 1 || kills[group] < 1 || injected < 1 {
			t.Errorf("%s: %d cycles, %d failovers, %d kills, %d faults: below the floor (1 each)", group, res.cycles, failovers[group], kills[group], injected)
		}
	}
	proxy.Decide = nil
	results = append(results, fmt.Sprintf("two live servers with one name (two kubelets, one Node) seen %d times", names()))
	t.Logf("failover soak results:\n  %s\n  faults by kind: %s", strings.Join(results, "\n  "), proxy)
}

// startNameWatch lists every server of the project each second until the test
// ends, and counts the times two live servers carried one name: two kubelets would register as
// one Node. The returned function stops it and gives the counts.
func startNameWatch(t *testing.T, w *framework.World) (stop func() (servers int)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var dupServers int
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if pages, err := servers.List(w.Project.Compute, servers.ListOpts{}).AllPages(ctx); err == nil {
				all, _ := servers.ExtractServers(pages)
				seen := map[string]string{}
				for _, s := range all {
					if s.Status == "DELETED" || s.Status == "SOFT_DELETED" || s.TaskState == "deleting" || strings.HasSuffix(s.Name, membership.ReplacedSuffix) {
						continue
					}
					if id, dup := seen[s.Name]; dup {
						dupServers++
						t.Errorf("two servers named %s: %s and %s", s.Name, id, s.ID)
					}
					seen[s.Name] = s.ID
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	stopped := false
	stopFn := func() int {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
		return dupServers
	}
	t.Cleanup(func() { stopFn() })
	return stopFn
}
