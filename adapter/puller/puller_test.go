package puller

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
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

func newPuller(static ...string) *Puller {
	return &Puller{Client: &http.Client{Transport: NewTransport(nil)}, Store: store.New(30*time.Second, time.Minute),
		Timeout: time.Second, Static: static}
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
	p.PullAll(context.Background())
	if !has(p, "web", "web-1", "u1") || p.Store.Len() != 1 {
		t.Errorf("store holds %d series; want only web-1 (the oversized answer refused)", p.Store.Len())
	}
}

// A hanging agent costs its own timeout, not the others' values.
func TestHangingAgentTimesOutAlone(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)
	ok := agentServing(t, "n2", sample("web", "web-1", "u1"))
	p := newPuller(hang.URL, ok.URL)
	p.Timeout = 200 * time.Millisecond
	p.PullAll(context.Background())
	if !has(p, "web", "web-1", "u1") {
		t.Error("the responsive agent's pod is missing")
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
	p.Store.Add(p.checked(Agent{URL: "https://198.51.100.21:10250", Node: "n1"}, r))
	if !has(p, "web", "web-1", "u1") || p.Store.Len() != 1 {
		t.Errorf("store holds %d series, want only web-1 (web-2 is on n2, web-3 has another UID, ghost is unknown)", p.Store.Len())
	}
}

// At most Concurrency pulls are in flight.
func TestConcurrencyIsBounded(t *testing.T) {
	var inFlight, peak atomic.Int32
	var urls []string
	for i := 0; i < 12; i++ {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			n := inFlight.Add(1)
			for {
				old := peak.Load()
				if n <= old || peak.CompareAndSwap(old, n) {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
			inFlight.Add(-1)
			_ = json.NewEncoder(w).Encode(report.Report{})
		}))
		defer srv.Close()
		urls = append(urls, srv.URL)
	}
	p := newPuller(urls...)
	p.Concurrency = 3
	p.PullAll(context.Background())
	if peak.Load() > 3 || peak.Load() == 0 {
		t.Errorf("peak pulls in flight %d, want 1..3", peak.Load())
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
	p.PullAll(context.Background())
	p.PullAll(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if newConns != agents {
		t.Errorf("%d connections made for two pulls of %d agents, want %d (one each, kept alive)", newConns, agents, agents)
	}
}
