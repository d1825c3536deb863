//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"

	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/autoscaler"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/faultproxy"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

// proxiedClouds starts a fault proxy in front of the world's OpenStack and writes a clouds.yaml
// whose "world" cloud authenticates (and so reaches every service) through it.
func proxiedClouds(t *testing.T, w *framework.World) (*faultproxy.Proxy, string) {
	t.Helper()
	return writeProxiedClouds(t, w, false)
}

// writeProxiedClouds is proxiedClouds, with Keystone over TLS (and clouds.yaml's cacert naming
// the proxy's own CA) when tls is set.
func writeProxiedClouds(t *testing.T, w *framework.World, tls bool) (*faultproxy.Proxy, string) {
	t.Helper()
	raw, err := os.ReadFile(w.Env["OS_CLIENT_CONFIG_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	var clouds map[string]map[string]map[string]any
	if err := json.Unmarshal(raw, &clouds); err != nil {
		t.Fatalf("the world's clouds.yaml: %v", err)
	}
	dir := t.TempDir()
	auth := clouds["clouds"]["world"]["auth"].(map[string]any)
	var proxy *faultproxy.Proxy
	if tls {
		var ca []byte
		proxy, ca, err = faultproxy.StartTLS(auth["auth_url"].(string))
		caFile := filepath.Join(dir, "keystone-ca.pem")
		if werr := os.WriteFile(caFile, ca, 0o600); werr != nil {
			t.Fatal(werr)
		}
		clouds["clouds"]["world"]["cacert"] = caFile
	} else {
		proxy, err = faultproxy.Start(auth["auth_url"].(string))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	auth["auth_url"] = proxy.KeystoneURL()
	out, _ := json.Marshal(clouds)
	path := filepath.Join(dir, "clouds.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return proxy, path
}

// Keystone over TLS with a private CA named by clouds.yaml's cacert: `validate` and the running
// provider (whose transport also counts every call) both reach the cloud.
func TestProviderReachesKeystoneOverTLSWithTheCloudsCA(t *testing.T) {
	w := framework.Connect(t)
	_, clouds := writeProxiedClouds(t, w, true)
	cfg := withClouds(novaConfig(w, "tls-keystone", 0, 2), w, clouds)
	path := filepath.Join(t.TempDir(), "provider.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(framework.ProviderBinary(t), "validate", "--config", path).CombinedOutput(); err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	p := framework.StartProvider(t, cfg) // fails the test unless it becomes ready
	metrics, err := p.Metrics(context.Background())
	if err != nil || !strings.Contains(metrics, `openstack_autoscaler_openstack_requests_total{operation="POST /auth/tokens",result="2xx",service="identity"}`) {
		t.Errorf("the running provider's authentication over TLS is not counted (%v):\n%s", err, framework.Tail(metrics, 2000))
	}
}

// proxiedNovaGroupUnderTest starts a provider with one nova group (0 to maxSize) whose
// OpenStack calls cross a fault proxy (passing everything until the test says otherwise), and
// removes the group's servers when the test ends.
func proxiedNovaGroupUnderTest(t *testing.T, group string, maxSize int) (*framework.World, *faultproxy.Proxy, *framework.Provider, *autoscaler.Driver) {
	t.Helper()
	w := framework.Connect(t)
	proxy, clouds := proxiedClouds(t, w)
	cleanupGroupServers(t, w, group)
	p := framework.StartProvider(t, withClouds(novaConfig(w, group, 0, maxSize), w, clouds))
	return w, proxy, p, &autoscaler.Driver{Client: p.Client, Kube: w.Kube}
}

// withClouds points a provider configuration at another clouds.yaml.
func withClouds(cfg string, w *framework.World, path string) string {
	return strings.Replace(cfg, w.Env["OS_CLIENT_CONFIG_FILE"], path, 1)
}

// byProviderID is a Node as the autoscaler sends it in DeleteNodes.
func byProviderID(id string) corev1.Node {
	n := corev1.Node{}
	n.Name, n.Spec.ProviderID = id, id
	return n
}

func serverIDs(t *testing.T, w *framework.World, group string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, s := range groupServers(t, w, group) {
		out[s.ID] = s.Status
	}
	return out
}

// Two providers serve the same Heat stack, as the chart's two replicas do. B started when the
// stack held 2 members; A grows it to 5. B is then asked to remove one named node: exactly that
// server goes and the other four stay (a provider that kept the count it read at start would
// write count=1 and Heat would delete three running members).
func TestHeatStandbyReplicaRemovesExactlyTheNamedMember(t *testing.T) {
	w := framework.Connect(t)
	ctx := context.Background()
	const group = "heat-failover"
	createNodeGroupStack(t, w, group, 2, nil)
	cfg := heatConfig(w, group, 0, 6)
	replicaB := framework.StartProvider(t, cfg)
	b := &autoscaler.Driver{Client: replicaB.Client, Kube: w.Kube}
	framework.Eventually(t, 60*time.Second, time.Second, "replica B sees 2 members", func() (bool, error) {
		n, err := b.TargetSize(ctx, group)
		return n == 2, fmt.Errorf("target %d, %v", n, err)
	})
	replicaA := framework.StartProvider(t, cfg)
	a := &autoscaler.Driver{Client: replicaA.Client, Kube: w.Kube}
	if err := a.IncreaseSize(ctx, group, 3); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 180*time.Second, 2*time.Second, "5 ACTIVE servers, known to replica B", func() (bool, error) {
		ids := serverIDs(t, w, group)
		active := 0
		for _, status := range ids {
			if status == "ACTIVE" {
				active++
			}
		}
		instances, err := b.Instances(ctx, group)
		return active == 5 && len(instances) == 5 && err == nil, fmt.Errorf("%d active, B lists %d (%v)", active, len(instances), err)
	})
	before := serverIDs(t, w, group)
	var named string
	for id := range before {
		if named == "" || id < named {
			named = id
		}
	}
	if err := b.DeleteNodes(ctx, group, byProviderID(membership.ProviderID(named))); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 180*time.Second, 2*time.Second, "the named server gone", func() (bool, error) {
		_, still := serverIDs(t, w, group)[named]
		return !still, fmt.Errorf("server %s still there", named)
	})
	time.Sleep(10 * time.Second) // a wrong count would take its time to delete more
	after := serverIDs(t, w, group)
	for id := range before {
		if _, ok := after[id]; !ok && id != named {
			t.Errorf("server %s was deleted without being named", id)
		}
	}
	if len(after) != 4 {
		t.Errorf("%d servers after removing one of 5, want 4", len(after))
	}
}

// The provider answers a scale-up once Nova has accepted the servers; two of the three answers
// are slow (applied, not yet answered) when it is killed. The restarted provider reaches the
// target the autoscaler asked for, with no duplicate.
func TestNovaProviderKilledBeforeCreationsAreAnsweredKnowsEveryServer(t *testing.T) {
	const group = "nova-killed"
	w, proxy, p, d := proxiedNovaGroupUnderTest(t, group, 5)
	ctx := context.Background()
	proxy.Delay = 20 * time.Second
	posts := 0
	proxy.Decide = func(r *http.Request) faultproxy.Fault {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/servers") {
			if posts++; posts > 1 {
				return faultproxy.SlowAnswer
			}
		}
		return faultproxy.Pass
	}
	// IncreaseSize answers OK only once Nova accepted every server: with two answers held 20 s
	// it answers an error at its deadline and deletes what it made (a refresh adopts the two
	// held servers from the listing, by name). The kill lands right after the error, while the
	// answers are still held: whatever the crash let through is all there is, and the restarted
	// provider knows each server Nova has once, no duplicate (a failed scale-up whose servers
	// survive a crash is no loss: the autoscaler sees their nodes register).
	if err := d.IncreaseSizeOnce(ctx, group, 3); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("IncreaseSize(3) with two answers held past the deadline: %v, want DeadlineExceeded", err)
	}
	p.Kill() // two POST answers are still on their way
	proxy.Decide = nil
	p.Restart(t)
	d.Client = p.Client
	framework.Eventually(t, 60*time.Second, time.Second, "the restarted provider's target equals Nova's servers, one instance each", func() (bool, error) {
		servers, size, err := providerMatchesNova(t, w, d, group, 3)
		return err == nil && size == servers, fmt.Errorf("%d servers, target %d (%v)", servers, size, err)
	})
}

// soakResult is what one soak run saw.
type soakResult struct {
	cycles, leaks, wrongDeletions, aboveMax, failedDeletions, failedScaleUps int
}

// soakHooks let a soak act as the autoscaler replica that leads now (driver) and move the Lease
// or kill a provider at a moment of its cycle (chaos: "scaled-up" right after IncreaseSize
// answered, "deleted" right after the DeleteNodes calls answered).
type soakHooks struct {
	driver func() *autoscaler.Driver
	chaos  func(moment string)
}

// soak drives scale-up and scale-down cycles through a provider whose OpenStack calls cross the
// fault proxy, and checks against OpenStack itself (not through the proxy) after every cycle:
// every server of the group is an instance the provider reports (no leak), no server went that
// DeleteNodes did not name, the group never holds more than maxSize servers, and the target
// converges to what was asked.
func soak(t *testing.T, w *framework.World, hooks soakHooks, group string, maxSize, cycles int, deadline time.Time, rng *rand.Rand) soakResult {
	t.Helper()
	ctx := context.Background()
	var res soakResult
	if hooks.chaos == nil {
		hooks.chaos = func(string) {}
	}
	d := hooks.driver()
	named := map[string]bool{}     // providerIDs named by a DeleteNodes call that succeeded
	seen := map[string]time.Time{} // server ID -> first seen
	// A scale-up that answered an error is undone: up to its size of servers first seen after it
	// began may go unnamed.
	type undone struct {
		began time.Time
		left  int
	}
	var undos []*undone
	excused := func(firstSeen time.Time) bool {
		for _, u := range undos {
			if u.left > 0 && !firstSeen.Before(u.began) {
				u.left--
				return true
			}
		}
		return false
	}
	increase := func(n int) error {
		began := time.Now()
		err := d.IncreaseSizeOnce(ctx, group, n)
		if err != nil {
			res.failedScaleUps++
			undos = append(undos, &undone{began: began, left: n})
		}
		return err
	}
	look := func() map[string]string {
		now := serverIDs(t, w, group)
		if len(now) > maxSize {
			res.aboveMax++
			t.Errorf("%d servers in group %s, above maxSize %d", len(now), group, maxSize)
		}
		for id, first := range seen {
			if _, ok := now[id]; !ok {
				if !named[membership.ProviderID(id)] && !excused(first) {
					res.wrongDeletions++
					t.Errorf("server %s of group %s went without being named by DeleteNodes", id, group)
				}
				delete(seen, id)
			}
		}
		for id := range now {
			if _, ok := seen[id]; !ok {
				seen[id] = time.Now()
			}
		}
		return now
	}
	// converge acts as the autoscaler does until the group holds want running servers: failed
	// creations are deleted and asked for again.
	converge := func(want int) {
		framework.Eventually(t, 240*time.Second, 2*time.Second, fmt.Sprintf("group %s converges to %d", group, want), func() (bool, error) {
			d = hooks.driver()
			servers := look()
			// Every loop of the autoscaler starts with Refresh; an error ends that loop.
			if _, err := d.RunLoop(ctx); err != nil {
				return false, fmt.Errorf("loop skipped: %w", err)
			}
			instances, err := d.Instances(ctx, group)
			if err != nil {
				return false, err
			}
			var failed []corev1.Node
			listed := map[string]bool{}
			running := 0
			for _, inst := range instances {
				listed[inst.GetId()] = true
				switch {
				case inst.GetStatus().GetErrorInfo() != nil:
					failed = append(failed, byProviderID(inst.GetId()))
					named[inst.GetId()] = true
				case inst.GetStatus().GetInstanceState() == pb.InstanceStatus_instanceRunning:
					running++
				}
			}
			if len(failed) > 0 {
				for id, err := range d.DeleteNodesAsStock(ctx, group, failed...) {
					if err != nil {
						delete(named, id) // the call failed: this server must stay
						return false, fmt.Errorf("deleting failed creations: %w", err)
					}
				}
			}
			target, err := d.TargetSize(ctx, group)
			if err != nil {
				return false, err
			}
			if target < want {
				if err := increase(want - target); err != nil {
					return false, fmt.Errorf("asking again for %d: %w", want-target, err)
				}
			}
			active := 0
			for id, status := range servers {
				if !listed[membership.ProviderID(id)] {
					return false, fmt.Errorf("server %s is not an instance of the provider (yet)", id)
				}
				if status == "ACTIVE" {
					active++
				}
			}
			return target == want && active == want && len(servers) == want && running == want,
				fmt.Errorf("target %d, %d servers (%d active), %d running instances of %d", target, len(servers), active, running, len(instances))
		})
	}
	for res.cycles < cycles && time.Now().Before(deadline) {
		d = hooks.driver()
		target, err := d.TargetSize(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		up := 1 + rng.IntN(maxSize-target)
		if err := increase(up); err != nil {
			// A scale-up that answers an error made nothing (it is undone); the autoscaler
			// backs the group off and asks again later, as converge does.
			t.Logf("cycle %d: IncreaseSize(%d) from %d failed, nothing made: %v", res.cycles, up, target, err)
		}
		hooks.chaos("scaled-up")
		converge(target + up)
		d = hooks.driver()
		instances, err := d.Instances(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, inst := range instances {
			ids = append(ids, inst.GetId())
		}
		sort.Strings(ids)
		rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		down := 1 + rng.IntN(min(2, len(ids)))
		var nodes []corev1.Node
		for _, id := range ids[:down] {
			nodes = append(nodes, byProviderID(id))
		}
		// One call per node at once, as 1.36.1 sends them; a call that fails deleted nothing
		// (the autoscaler untaints that node and uses it again).
		for id, err := range d.DeleteNodesAsStock(ctx, group, nodes...) {
			if err != nil {
				res.failedDeletions++
				down--
				t.Logf("cycle %d: DeleteNodes(%s) failed: %v", res.cycles, id, err)
				continue
			}
			named[id] = true
		}
		hooks.chaos("deleted")
		converge(target + up - down)
		res.cycles++
		t.Logf("cycle %d of group %s: +%d -%d, at %d", res.cycles, group, up, down, target+up-down)
	}
	// A server the provider does not report is a leak.
	instances, _ := d.Instances(ctx, group)
	listed := map[string]bool{}
	for _, inst := range instances {
		listed[inst.GetId()] = true
	}
	for id := range look() {
		if !listed[membership.ProviderID(id)] {
			res.leaks++
			t.Errorf("leaked server %s: in Nova with the group's metadata, not an instance of the provider", id)
		}
	}
	return res
}

// soakCycles is the number of cycles per group: OSA_SOAK_CYCLES, 3 by default (a few minutes in
// make test); OSA_SOAK_MINUTES bounds the time.
func soakCycles(t *testing.T) (int, time.Time, *rand.Rand) {
	cycles, minutes := 3, 10
	if v, err := strconv.Atoi(os.Getenv("OSA_SOAK_CYCLES")); err == nil && v > 0 {
		cycles = v
	}
	if v, err := strconv.Atoi(os.Getenv("OSA_SOAK_MINUTES")); err == nil && v > 0 {
		minutes = v
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("OSA_SOAK_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("soak: %d cycles per group within %d minutes, seed %d (OSA_SOAK_SEED repeats the run)", cycles, minutes, seed)
	return cycles, time.Now().Add(time.Duration(minutes) * time.Minute), rand.New(rand.NewPCG(seed, seed))
}

// A Nova and a Heat group scale up and down through OpenStack APIs that fail 25% of the time in
// every way a cloud fails: nothing leaks, nothing is deleted that was not named, never above
// maxSize, and the target converges.
func TestSoakThroughOpenStackFaults(t *testing.T) {
	w := framework.Connect(t)
	cycles, deadline, rng := soakCycles(t)
	proxy, clouds := proxiedClouds(t, w)
	proxy.HoldFor, proxy.Delay = 3*time.Second, 500*time.Millisecond
	const novaGroup, heatGroup, maxSize = "soak-nova", "soak-heat", 4
	cleanupGroupServers(t, w, novaGroup)
	createNodeGroupStack(t, w, heatGroup, 0, nil)
	novaProvider := framework.StartProvider(t, withClouds(novaConfig(w, novaGroup, 0, maxSize), w, clouds))
	heatProvider := framework.StartProvider(t, withClouds(heatConfig(w, heatGroup, 0, maxSize), w, clouds))
	proxy.Decide = faultproxy.RandomFaults(0.25, rng.Uint64(), faultproxy.Faults...)

	var results []string
	for _, run := range []struct {
		group    string
		provider *framework.Provider
	}{{novaGroup, novaProvider}, {heatGroup, heatProvider}} {
		before := proxy.Injected()
		d := &autoscaler.Driver{Client: run.provider.Client, Kube: w.Kube}
		res := soak(t, w, soakHooks{driver: func() *autoscaler.Driver { return d }}, run.group, maxSize, cycles, deadline, rng)
		results = append(results, fmt.Sprintf("%s: %d cycles, %d faults injected, %d leaks, %d wrong deletions, %d times above maxSize",
			run.group, res.cycles, proxy.Injected()-before, res.leaks, res.wrongDeletions, res.aboveMax))
	}
	proxy.Decide = nil
	t.Logf("soak results:\n  %s\n  faults by kind: %s", strings.Join(results, "\n  "), proxy)
}

// DeleteNodes is accepted while Nova refuses every DELETE, and the provider is killed before it
// got one through: the provider that starts next deletes exactly the named server.
func TestNovaAcceptedDeletionSurvivesAKill(t *testing.T) {
	const group = "nova-delete-kill"
	w, proxy, p, d := proxiedNovaGroupUnderTest(t, group, 3)
	ctx := context.Background()
	if err := d.IncreaseSize(ctx, group, 2); err != nil {
		t.Fatal(err)
	}
	var named string
	framework.Eventually(t, 60*time.Second, time.Second, "2 ACTIVE servers known to the provider", func() (bool, error) {
		active := []string{}
		for id, status := range serverIDs(t, w, group) {
			if status == "ACTIVE" {
				active = append(active, id)
			}
		}
		instances, err := d.Instances(ctx, group)
		if len(active) == 2 {
			sort.Strings(active)
			named = active[0]
		}
		return len(active) == 2 && len(instances) == 2 && err == nil, fmt.Errorf("%d active, %d instances (%v)", len(active), len(instances), err)
	})
	proxy.Decide = func(r *http.Request) faultproxy.Fault {
		if r.Method == http.MethodDelete {
			return faultproxy.Unavailable
		}
		return faultproxy.Pass
	}
	if err := d.DeleteNodes(ctx, group, byProviderID(membership.ProviderID(named))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // its deletions are refused meanwhile
	p.Kill()
	if _, still := serverIDs(t, w, group)[named]; !still {
		t.Fatal("the server went before the kill: the test proves nothing")
	}
	proxy.Decide = nil
	p.Restart(t)
	framework.Eventually(t, 60*time.Second, time.Second, "the named server deleted by the next provider", func() (bool, error) {
		ids := serverIDs(t, w, group)
		_, still := ids[named]
		return !still && len(ids) == 1, fmt.Errorf("servers %v", ids)
	})
}
