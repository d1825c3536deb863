// Package puller fetches every connection-agent's latest report concurrently, on an interval,
// each with its own timeout, and feeds the store. Agents are listed statically or found through
// the EndpointSlices of their Service.
package puller

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/report"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/store"
)

// Defaults of the pull's bounds.
const (
	// DefaultConcurrency bounds the pulls in flight at once.
	DefaultConcurrency = 64
	// DefaultMaxBody bounds one agent's answer: 110 pods with a dozen ports each take ~60 KiB.
	DefaultMaxBody = 4 << 20
)

// Puller pulls agents into a store.
type Puller struct {
	Client   *http.Client // with the adapter's client certificate (see NewTransport)
	Store    *store.Store
	Interval time.Duration
	Timeout  time.Duration
	// Concurrency bounds the pulls in flight (DefaultConcurrency when 0).
	Concurrency int
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
}

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
}

// NewMetrics registers the puller's metrics; series reports the store's size.
func NewMetrics(reg prometheus.Registerer, series func() float64) *Metrics {
	m := &Metrics{
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "connection_adapter_pull_duration_seconds",
			Help: "Time to pull one agent's report.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"result"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "connection_adapter_pull_errors_total",
			Help: "Failed pulls by reason (connect, status, too_large, decode)."}, []string{"reason"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "connection_adapter_samples_refused_total",
			Help: "Pod samples an agent sent and the adapter did not take, by reason (other_node: the pod is not on the agent's node; unknown_pod)."}, []string{"reason"}),
		Series: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "connection_adapter_series",
			Help: "Pod series held (fresh or within their TTL)."}, series),
	}
	reg.MustRegister(m.Latency, m.Errors, m.Refused, m.Series)
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

// Run pulls until ctx ends.
func (p *Puller) Run(ctx context.Context) {
	ticker := time.NewTicker(p.Interval)
	defer ticker.Stop()
	for {
		p.PullAll(ctx)
		p.Store.Expire(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
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

// PullAll pulls every agent, at most Concurrency at once, and waits for all (each bounded by
// Timeout).
func (p *Puller) PullAll(ctx context.Context) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, cmp.Or(p.Concurrency, DefaultConcurrency))
	for _, agent := range p.Agents() {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			start := time.Now()
			r, reason, err := p.pull(ctx, agent.URL)
			result := "ok"
			if err != nil {
				result = "error"
				if p.Metrics != nil {
					p.Metrics.Errors.WithLabelValues(reason).Inc()
				}
				klog.V(2).InfoS("pulling agent", "agent", agent.URL, "node", agent.Node, "err", err)
			} else {
				p.Store.Add(p.checked(agent, r))
			}
			if p.Metrics != nil {
				p.Metrics.Latency.WithLabelValues(result).Observe(time.Since(start).Seconds())
			}
		}()
	}
	wg.Wait()
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

func (p *Puller) pull(ctx context.Context, agent string) (r report.Report, reason string, err error) {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, agent+report.Path, nil)
	if err != nil {
		return r, "connect", err
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return r, "connect", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return r, "status", fmt.Errorf("%s: HTTP %d", agent, resp.StatusCode)
	}
	limit := cmp.Or(p.MaxBody, DefaultMaxBody)
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return r, "connect", fmt.Errorf("%s: %w", agent, err)
	}
	if int64(len(body)) > limit {
		return r, "too_large", fmt.Errorf("%s: answer larger than %d bytes: refused", agent, limit)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, "decode", fmt.Errorf("%s: %w", agent, err)
	}
	return r, "", nil
}
