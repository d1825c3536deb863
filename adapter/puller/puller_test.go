package puller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/report"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/store"
)

var now = time.Now()

// agentServing answers with a report of these pods (node n).
func agentServing(t *testing.T, node string, pods ...report.Pod) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(report.Report{Node: node, Time: now, Pods: pods})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func sample(ns, name, uid string) report.Pod {
	return report.Pod{Namespace: ns, Name: name, UID: uid, Time: now, Inbound: 3}
}

// newPuller pulls on a fake clock standing at now: no test here depends on wall-clock speed.
func newPuller(static ...string) *Puller {
	return &Puller{Client: &http.Client{Transport: NewTransport(nil)}, Store: store.New(30*time.Second, time.Minute),
		Interval: 5 * time.Second, Timeout: time.Second, Static: static, Clock: clocktesting.NewFakeClock(now)}
}

// pullAll pulls every agent once, one after the other.
func pullAll(p *Puller) {
	for _, a := range p.Agents() {
		_ = p.Pull(context.Background(), a)
	}
}

// waitFor waits for the goroutines under test to reach cond (the deadline only bounds a
// failure: nothing here is timed by the wall clock).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after 30 s", what)
		}
	}
}

func has(p *Puller, ns, name, uid string) bool {
	_, ok := p.Store.Get(store.Key{Namespace: ns, Name: name, UID: uid}, now)
	return ok
}

// An answer larger than the limit is refused whole; the other agents are still taken.
func TestAnswerAboveTheLimitIsRefused(t *testing.T) {
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"node": "n1", "pods": [` + strings.Repeat(`{"namespace": "x", "name": "y"},`, 10_000)))
	}))
	defer big.Close()
	small := agentServing(t, "n2", sample("web", "web-1", "u1"))
	p := newPuller(big.URL, small.URL)
	p.MaxBody = 64 << 10
	pullAll(p)
	if !has(p, "web", "web-1", "u1") || p.Store.Len() != 1 {
		t.Errorf("store holds %d series; want only web-1 (the oversized answer refused)", p.Store.Len())
	}
}

// A pull that gets no answer ends at its Timeout, on the puller's clock, counted as a timeout.
func TestHungPullEndsAtItsTimeout(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(hang.Close)
	p := newPuller()
	p.Metrics = NewMetrics(prometheus.NewRegistry(), func() float64 { return 0 })
	fc := p.Clock.(*clocktesting.FakeClock)
	done := make(chan error, 1)
	go func() { done <- p.Pull(context.Background(), Agent{URL: hang.URL}) }()
	waitFor(t, "the pull's timeout to be set", fc.HasWaiters)
	fc.Step(p.Timeout)
	timeouts := func() float64 { return testutil.ToFloat64(p.Metrics.Errors.WithLabelValues("timeout")) }
	if err := <-done; !errors.Is(err, errTimeout) || timeouts() != 1 {
		t.Errorf("hung pull ended with %v, timeouts counted %v; want the timeout, counted once", err, timeouts())
	}
}

func sliceLister(slices ...*discoveryv1.EndpointSlice) discoverylisters.EndpointSliceLister {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, s := range slices {
		_ = idx.Add(s)
	}
	return discoverylisters.NewEndpointSliceLister(idx)
}

// Agents come from the ready endpoints of their Service, each once although a dual-stack
// Service lists it in two slices, with the node each endpoint names.
func TestAgentsFromEndpointSlices(t *testing.T) {
	labels := map[string]string{discoveryv1.LabelServiceName: "connection-agent"}
	ports := []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(10250))}, {Name: ptr.To("metrics"), Port: ptr.To(int32(9090))}}
	agentPod := func(name string) *corev1.ObjectReference {
		return &corev1.ObjectReference{Kind: "Pod", Namespace: "osa", Name: name}
	}
	v4 := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "osa", Name: "agents-v4", Labels: labels},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: ports, Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"198.51.100.21"}, NodeName: ptr.To("n1"), TargetRef: agentPod("agent-a"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"198.51.100.22"}, NodeName: ptr.To("n2"), TargetRef: agentPod("agent-b"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		}}
	v6 := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "osa", Name: "agents-v6", Labels: labels},
		AddressType: discoveryv1.AddressTypeIPv6, Ports: ports, Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"2001:db8::21"}, NodeName: ptr.To("n1"), TargetRef: agentPod("agent-a"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
		}}
	p := &Puller{Slices: sliceLister(v6, v4), Namespace: "osa", Service: "connection-agent", Port: "https"}
	got := p.Agents()
	want := []Agent{{URL: "https://198.51.100.21:10250", Node: "n1"}}
	if len(got) != 1 || got[0] != want[0] {
		t.Errorf("agents = %+v, want %+v (once, the ready one, IPv4 first, with its node)", got, want)
	}
}

// An agent can only report its own node's pods: a sample for a pod of another node, or for a
// pod the adapter does not know under that UID, is refused.
func TestAgentReportsOnlyItsNodesPods(t *testing.T) {
	pods := map[string][2]string{"web/web-1": {"n1", "u1"}, "web/web-2": {"n2", "u2"}, "web/web-3": {"n1", "u3-new"}}
	p := newPuller()
	p.PodNode = func(ns, name string) (string, string, bool) {
		v, ok := pods[ns+"/"+name]
		return v[0], v[1], ok
	}
	r := report.Report{Node: "n1", Time: now, Pods: []report.Pod{sample("web", "web-1", "u1"), sample("web", "web-2", "u2"),
		sample("web", "web-3", "u3-old"), sample("web", "ghost", "u9")}}
	p.Store.Add(p.checked(Agent{URL: "https://198.51.100.21:10250", Node: "n1"}, r), now)
	if !has(p, "web", "web-1", "u1") || p.Store.Len() != 1 {
		t.Errorf("store holds %d series, want only web-1 (web-2 is on n2, web-3 has another UID, ghost is unknown)", p.Store.Len())
	}
}

// The first pulls of agents found at once (the adapter's start) are spread over the period.
func TestFirstPullsAreSpreadOverThePeriod(t *testing.T) {
	const period = 5 * time.Second
	var quarters [4]int
	for i := 0; i < 100; i++ {
		ph := phase(Agent{URL: fmt.Sprintf("https://10.0.%d.%d:10250", i/250, i%250+1)}, period)
		if ph < 0 || ph >= period {
			t.Fatalf("phase %s outside the period", ph)
		}
		quarters[ph*4/period]++
	}
	for q, n := range quarters {
		if n < 10 {
			t.Errorf("%d of 100 first pulls in quarter %d of the period (%v), want ≥ 10 in each", n, q, quarters)
		}
	}
}

// Every agent's connection is kept alive between pulls, whatever the number of agents (the
// default transport keeps 100 idle connections in all).
func TestConnectionsAreKeptAliveForEveryAgent(t *testing.T) {
	const agents = 150
	var mu sync.Mutex
	newConns := 0
	var urls []string
	for i := 0; i < agents; i++ {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_ = json.NewEncoder(w).Encode(report.Report{})
		}))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				mu.Lock()
				newConns++
				mu.Unlock()
			}
		}
		srv.Start()
		defer srv.Close()
		urls = append(urls, srv.URL)
	}
	p := newPuller(urls...)
	pullAll(p)
	pullAll(p)
	mu.Lock()
	defer mu.Unlock()
	if newConns != agents {
		t.Errorf("%d connections made for two pulls of %d agents, want %d (one each, kept alive)", newConns, agents, agents)
	}
}

// agentAt answers as an agent whose clock reads the fake clock's time plus ahead, reporting
// pod web-<n> of node n<n>, over HTTPS as agents do (trusted by tlsClient).
func agentAt(t *testing.T, fc *clocktesting.FakeClock, ahead time.Duration, n int) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		at := fc.Now().Add(ahead)
		_ = json.NewEncoder(w).Encode(report.Report{Node: fmt.Sprintf("n%d", n), Time: at,
			Pods: []report.Pod{{Namespace: "web", Name: fmt.Sprintf("web-%d", n), UID: fmt.Sprintf("u%d", n), Time: at, Inbound: 3}}})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// tlsClient trusts the HTTPS test servers, with the agents' transport.
func tlsClient(srv *httptest.Server) *http.Client {
	return &http.Client{Transport: NewTransport(srv.Client().Transport.(*http.Transport).TLSClientConfig)}
}

// Freshness is the adapter's receipt, not the agent's clock: an agent whose clock is 10 minutes
// ahead (or 20 s, less than the TTL) stops reporting; a TTL after the adapter received its last
// report, its values are withheld. Samples stamped further than the TTL from their receipt are
// refused outright and counted.
func TestClockAheadAgentIsWithheldAfterTheTTL(t *testing.T) {
	for _, tc := range []struct {
		ahead   time.Duration
		refused float64
	}{{10 * time.Minute, 1}, {20 * time.Second, 0}} {
		p := newPuller()
		p.Metrics = NewMetrics(prometheus.NewRegistry(), func() float64 { return 0 })
		fc := p.Clock.(*clocktesting.FakeClock)
		srv := agentAt(t, fc, tc.ahead, 1)
		p.Client = tlsClient(srv)
		if err := p.Pull(context.Background(), Agent{URL: srv.URL}); err != nil {
			t.Fatal(err)
		}
		srv.Close() // the agent stops reporting
		fc.Step(p.Store.TTL + time.Second)
		if v, ok := p.Store.Get(store.Key{Namespace: "web", Name: "web-1", UID: "u1"}, fc.Now()); ok || v.Withheld == "" {
			t.Errorf("agent %s ahead stopped reporting: a TTL after its last report, ok %v, %+v; want withheld, saying why", tc.ahead, ok, v)
		}
		if got := testutil.ToFloat64(p.Metrics.Refused.WithLabelValues("clock_skew")); got != tc.refused {
			t.Errorf("agent %s ahead: %v samples refused for clock skew, want %v", tc.ahead, got, tc.refused)
		}
	}
}

// agentSlice is the EndpointSlice of one agent (its pod agent-<n> on node n<n>) at srv.
func agentSlice(t *testing.T, n int, srv *httptest.Server) *discoveryv1.EndpointSlice {
	host, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	pn, _ := strconv.Atoi(port)
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "osa", Name: fmt.Sprintf("agents-%d", n),
		Labels: map[string]string{discoveryv1.LabelServiceName: "connection-agent"}},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(pn))}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{host}, NodeName: ptr.To(fmt.Sprintf("n%d", n)),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "osa", Name: fmt.Sprintf("agent-%d", n)}}}}
}

// Three agents; the third answers once, then hangs forever (its pull outlasts the test: the
// timeout is an hour). The two others' values stay fresh period after period (each received at
// the period's time), the third's are withheld once the TTL has passed; when the third's node
// leaves the agents' list, its loop stops (its hung pull is cancelled and its goroutine returns)
// and it is pulled no more.
func TestHungAgentDelaysOnlyItsOwnNode(t *testing.T) {
	p := newPuller()
	p.Store = store.New(30*time.Second, 30*time.Second)
	p.Interval, p.Timeout = 5*time.Second, time.Hour
	p.Metrics = NewMetrics(prometheus.NewRegistry(), func() float64 { return 0 })
	fc := p.Clock.(*clocktesting.FakeClock)
	var hungPulls, hungInFlight atomic.Int32
	hung := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hungPulls.Add(1) == 1 {
			_ = json.NewEncoder(w).Encode(report.Report{Node: "n3", Time: fc.Now(),
				Pods: []report.Pod{{Namespace: "web", Name: "web-3", UID: "u3", Time: fc.Now(), Inbound: 3}}})
			return
		}
		hungInFlight.Add(1)
		defer hungInFlight.Add(-1)
		<-r.Context().Done() // hangs until the puller gives up
	}))
	t.Cleanup(hung.Close)
	p.Client = tlsClient(hung)
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	_ = idx.Add(agentSlice(t, 1, agentAt(t, fc, 0, 1)))
	_ = idx.Add(agentSlice(t, 2, agentAt(t, fc, 0, 2)))
	hungSlice := agentSlice(t, 3, hung)
	_ = idx.Add(hungSlice)
	p.Slices, p.Namespace, p.Service, p.Port = discoverylisters.NewEndpointSliceLister(idx), "osa", "connection-agent", "https"
	p.PodNode = func(ns, name string) (string, string, bool) {
		return "n" + name[len("web-"):], "u" + name[len("web-"):], true
	}
	key := func(n int) store.Key {
		return store.Key{Namespace: "web", Name: fmt.Sprintf("web-%d", n), UID: fmt.Sprintf("u%d", n)}
	}
	receivedNow := func(n int) bool {
		v, ok := p.Store.Get(key(n), fc.Now())
		return ok && v.Time.Equal(fc.Now())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.Sync(ctx)
	if p.Running() != 3 {
		t.Fatalf("%d pull loops, want 3", p.Running())
	}
	for period := 1; period <= 10; period++ { // 50 s: past the TTL of web-3's only sample
		fc.Step(p.Interval)
		waitFor(t, fmt.Sprintf("web-1 and web-2 pulled in period %d", period), func() bool { return receivedNow(1) && receivedNow(2) })
	}
	if v, ok := p.Store.Get(key(3), fc.Now()); ok || v.Withheld == "" {
		t.Errorf("web-3 (its agent hung since the first pull): ok %v, %+v; want withheld, saying why", ok, v)
	}

	waitFor(t, "a hung pull in flight", func() bool { return hungInFlight.Load() == 1 })
	_ = idx.Delete(hungSlice) // node n3 goes
	p.Sync(ctx)
	waitFor(t, "the hung agent's loop to return", func() bool { return p.Running() == 2 })
	if n := testutil.ToFloat64(p.Metrics.Agents); n != 2 {
		t.Errorf("connection_adapter_agents = %v after n3 went, want 2", n)
	}
	waitFor(t, "the hung pull to be cancelled", func() bool { return hungInFlight.Load() == 0 })
	pulls := hungPulls.Load()
	for period := 1; period <= 3; period++ {
		fc.Step(p.Interval)
		waitFor(t, "web-1 and web-2 pulled after n3 went", func() bool { return receivedNow(1) && receivedNow(2) })
	}
	if hungPulls.Load() != pulls {
		t.Errorf("the gone agent was pulled %d more times", hungPulls.Load()-pulls)
	}
	cancel()
	waitFor(t, "every loop to return once the context ends", func() bool { return p.Running() == 0 })
}

// Run stops every loop and waits for them when its context ends: no goroutine is left behind.
func TestRunLeavesNoLoopBehind(t *testing.T) {
	fc := clocktesting.NewFakeClock(now)
	a1, a2 := agentAt(t, fc, 0, 1), agentAt(t, fc, 0, 2)
	p := newPuller(a1.URL, a2.URL)
	p.Clock, p.Client = fc, tlsClient(a1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	waitFor(t, "two pull loops", func() bool { return p.Running() == 2 })
	cancel()
	<-done
	if p.Running() != 0 {
		t.Errorf("%d pull loops left after Run returned", p.Running())
	}
}
