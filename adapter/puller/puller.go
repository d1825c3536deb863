// Package puller pulls every connection-agent's latest report into the store: one loop per
// agent, each on its own period and with its own timeout, so that an agent that hangs delays
// only its own node's values. Agents are listed statically or found through the EndpointSlices
// of their Service; loops start and stop as that list changes. Every sample is stamped with the
// adapter's time of receipt, which keeps it fresh (not the agent's clock).
package puller

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/report"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/store"
)

// DefaultMaxBody bounds one agent's answer: 110 pods with a dozen ports each take ~60 KiB.
const DefaultMaxBody = 4 << 20

// Puller pulls agents into a store.
type Puller struct {
	Client   *http.Client // with the adapter's client certificate (see NewTransport)
	Store    *store.Store
	Interval time.Duration // each agent's period, and how often the agents are listed again
	Timeout  time.Duration // of one pull
	// Clock times the pulls and their timeouts, and stamps every sample with its receipt
	// (clock.RealClock when nil).
	Clock clock.WithTickerAndDelayedExecution
	// MaxBody bounds one agent's answer in bytes (DefaultMaxBody when 0).
	MaxBody int64
	// Static agent base URLs (https://host:port).
	Static []string
	// Slices, when set, lists the EndpointSlices of the agents' Service (Namespace, Service,
	// and the port's Name).
	Slices                   discoverylisters.EndpointSliceLister
	Namespace, Service, Port string
	// PodNode, when set, says on which node a pod runs (its spec.nodeName), and its UID. An
	// agent whose endpoint names its node has only that node's pods taken: no agent can drive
	// the HPAs of another node's pods.
	PodNode func(namespace, name string) (node, uid string, ok bool)
	Metrics *Metrics

	mu      sync.Mutex
	loops   map[Agent]*pullLoop // the running loops (Sync)
	wg      sync.WaitGroup
	running atomic.Int64 // loop goroutines not yet returned
}

// pullLoop is one agent's loop.
type pullLoop struct{ stop context.CancelFunc }

// Agent is one agent to pull: its base URL and, when its endpoint says it, its node.
type Agent struct {
	URL  string
	Node string
}

// Metrics of the pulls. Their labels are bounded: no agent address or node name.
type Metrics struct {
	Latency *prometheus.HistogramVec
	Errors  *prometheus.CounterVec
	Refused *prometheus.CounterVec
	Series  prometheus.GaugeFunc
	Agents  prometheus.Gauge
}

// NewMetrics registers the puller's metrics; series reports the store's size.
func NewMetrics(reg prometheus.Registerer, series func() float64) *Metrics {
	m := &Metrics{
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "connection_adapter_pull_duration_seconds",
			Help: "Time to pull one agent's report.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"result"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "connection_adapter_pull_errors_total",
			Help: "Failed pulls by reason (connect, timeout, status, too_large, decode)."}, []string{"reason"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "connection_adapter_samples_refused_total",
			Help: "Pod samples an agent sent and the adapter did not take, by reason (other_node: the pod is not on the agent's node; unknown_pod; clock_skew: stamped further than the TTL from their receipt, as by a node whose clock is off)."}, []string{"reason"}),
		Series: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "connection_adapter_series",
			Help: "Pod series held (fresh or within their TTL)."}, series),
		Agents: prometheus.NewGauge(prometheus.GaugeOpts{Name: "connection_adapter_agents",
			Help: "Agents being pulled (one pull loop each)."}),
	}
	reg.MustRegister(m.Latency, m.Errors, m.Refused, m.Series, m.Agents)
	return m
}

// NewTransport is the agents' HTTP transport: one kept-alive connection per agent, however
// many agents there are (the default transport keeps 100 idle connections in all, so at 1,000
// nodes most pulls would make a new TLS handshake).
func NewTransport(tlsConfig *tls.Config) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = tlsConfig
	t.MaxIdleConns = 0 // no limit in all
	t.MaxIdleConnsPerHost = 1
	t.IdleConnTimeout = 5 * time.Minute
	return t
}

func (p *Puller) clock() clock.WithTickerAndDelayedExecution {
	if p.Clock == nil {
		return clock.RealClock{}
	}
	return p.Clock
}

// Run keeps one pull loop per listed agent, lists the agents again and expires stale series
// every Interval, until ctx ends; it returns when every loop has.
func (p *Puller) Run(ctx context.Context) {
	defer p.stopAll()
	t := p.clock().NewTicker(p.Interval)
	defer t.Stop()
	for {
		p.Sync(ctx)
		p.Store.Expire(p.clock().Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// Sync starts a pull loop for each listed agent that has none and stops the loops of agents no
// longer listed (an agent whose address or node changed is another agent). A loop lives until
// it is stopped or ctx ends.
func (p *Puller) Sync(ctx context.Context) {
	want := map[Agent]bool{}
	for _, a := range p.Agents() {
		want[a] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.loops == nil {
		p.loops = map[Agent]*pullLoop{}
	}
	for a, l := range p.loops {
		if !want[a] {
			l.stop()
			delete(p.loops, a)
			klog.V(2).InfoS("agent gone: its pulls stop", "agent", a.URL, "node", a.Node)
		}
	}
	for a := range want {
		if _, ok := p.loops[a]; ok || ctx.Err() != nil {
			continue
		}
		loopCtx, stop := context.WithCancel(ctx)
		l := &pullLoop{stop: stop}
		p.loops[a] = l
		// The first pull comes after a phase of the period that depends on the agent, so that
		// the agents found at once (at the adapter's start) are not all pulled at once; the
		// timer is set here, before the loop runs, and each next one before its pull.
		timer := p.clock().NewTimer(phase(a, p.Interval))
		p.wg.Add(1)
		p.running.Add(1)
		if p.Metrics != nil {
			p.Metrics.Agents.Inc()
		}
		go p.loop(loopCtx, a, l, timer)
	}
}

// Running is the number of pull loops not yet returned.
func (p *Puller) Running() int {
	return int(p.running.Load())
}

// stopAll stops every loop and waits for them.
func (p *Puller) stopAll() {
	p.mu.Lock()
	for a, l := range p.loops {
		l.stop()
		delete(p.loops, a)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// loop pulls one agent every Interval until ctx ends; a pull that hangs holds up only this loop
// (for its Timeout at most), and a period it overran is skipped.
func (p *Puller) loop(ctx context.Context, a Agent, l *pullLoop, timer clock.Timer) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		if p.loops[a] == l { // ended with ctx, not stopped by Sync: a later Sync starts another
			delete(p.loops, a)
		}
		p.mu.Unlock()
		p.running.Add(-1)
		if p.Metrics != nil {
			p.Metrics.Agents.Dec()
		}
	}()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		}
		timer.Reset(p.Interval)
		_ = p.Pull(ctx, a)
	}
}

// phase is where in the period an agent's first pull falls.
func phase(a Agent, period time.Duration) time.Duration {
	if period <= 0 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(a.URL))
	return time.Duration(h.Sum64() % uint64(period))
}

// Agents lists the agents: the static ones, and the ready endpoints of the agents' Service,
// each once (a dual-stack Service lists every agent in two slices).
func (p *Puller) Agents() []Agent {
	var out []Agent
	for _, u := range p.Static {
		out = append(out, Agent{URL: u})
	}
	if p.Slices == nil {
		return out
	}
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: p.Service})
	slices, err := p.Slices.EndpointSlices(p.Namespace).List(sel)
	if err != nil {
		klog.ErrorS(err, "listing agent endpoints")
		return out
	}
	sort.Slice(slices, func(i, j int) bool { return slices[i].AddressType < slices[j].AddressType }) // IPv4 first
	seen := map[string]bool{}
	for _, s := range slices {
		var port int32
		for _, sp := range s.Ports {
			if sp.Name != nil && *sp.Name == p.Port && sp.Port != nil {
				port = *sp.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if (e.Conditions.Ready != nil && !*e.Conditions.Ready) || len(e.Addresses) == 0 {
				continue
			}
			agent := Agent{URL: "https://" + net.JoinHostPort(e.Addresses[0], strconv.Itoa(int(port))), Node: ptr.Deref(e.NodeName, "")}
			id := agent.URL
			if e.TargetRef != nil {
				id = e.TargetRef.Namespace + "/" + e.TargetRef.Name
			}
			if seen[id] {
				continue
			}
			seen[id] = true
			out = append(out, agent)
		}
	}
	return out
}

// Pull pulls one agent (bounded by Timeout) into the store, each sample stamped with the
// adapter's time of receipt.
func (p *Puller) Pull(ctx context.Context, agent Agent) error {
	clk := p.clock()
	start := clk.Now()
	r, reason, err := p.pull(ctx, agent.URL)
	received := clk.Now()
	if err != nil && ctx.Err() != nil {
		return err // the loop was stopped: not the agent's failure
	}
	result := "ok"
	if err != nil {
		result = "error"
		if p.Metrics != nil {
			p.Metrics.Errors.WithLabelValues(reason).Inc()
		}
		klog.V(2).InfoS("pulling agent", "agent", agent.URL, "node", agent.Node, "err", err)
	} else if skewed := p.Store.Add(p.checked(agent, r), received); skewed > 0 {
		if p.Metrics != nil {
			p.Metrics.Refused.WithLabelValues("clock_skew").Add(float64(skewed))
		}
		klog.V(1).InfoS("samples refused: stamped further than the TTL from their receipt (is the node's clock off?)", "agent", agent.URL,
			"node", agent.Node, "samples", skewed, "agentTime", r.Time, "received", received, "ttl", p.Store.TTL)
	}
	if p.Metrics != nil {
		p.Metrics.Latency.WithLabelValues(result).Observe(received.Sub(start).Seconds())
	}
	return err
}

// checked keeps the samples of pods on the agent's node, under their current UID.
func (p *Puller) checked(agent Agent, r report.Report) report.Report {
	if p.PodNode == nil || agent.Node == "" {
		return r
	}
	kept := r.Pods[:0]
	for _, pod := range r.Pods {
		node, uid, ok := p.PodNode(pod.Namespace, pod.Name)
		reason := ""
		switch {
		case !ok || uid != pod.UID:
			reason = "unknown_pod"
		case node != agent.Node:
			reason = "other_node"
		}
		if reason != "" {
			if p.Metrics != nil {
				p.Metrics.Refused.WithLabelValues(reason).Inc()
			}
			klog.V(2).InfoS("sample refused", "agent", agent.URL, "node", agent.Node, "pod", pod.Namespace+"/"+pod.Name, "reason", reason)
			continue
		}
		kept = append(kept, pod)
	}
	r.Pods = kept
	return r
}

// errTimeout ends a pull that took longer than its Timeout.
var errTimeout = errors.New("no answer within the pull timeout")

func (p *Puller) pull(ctx context.Context, agent string) (r report.Report, reason string, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timeout := p.clock().AfterFunc(p.Timeout, func() { cancel(fmt.Errorf("%w (%s)", errTimeout, p.Timeout)) })
	defer timeout.Stop()
	connectErr := func(err error) (report.Report, string, error) {
		if cause := context.Cause(ctx); errors.Is(cause, errTimeout) {
			return r, "timeout", fmt.Errorf("%s: %w", agent, cause)
		}
		return r, "connect", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, agent+report.Path, nil)
	if err != nil {
		return r, "connect", err
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return connectErr(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return r, "status", fmt.Errorf("%s: HTTP %d", agent, resp.StatusCode)
	}
	limit := cmp.Or(p.MaxBody, DefaultMaxBody)
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return connectErr(fmt.Errorf("%s: %w", agent, err))
	}
	if int64(len(body)) > limit {
		return r, "too_large", fmt.Errorf("%s: answer larger than %d bytes: refused", agent, limit)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, "decode", fmt.Errorf("%s: %w", agent, err)
	}
	return r, "", nil
}
