// Package puller fetches every connection-agent's latest report concurrently, on an interval,
// each with its own timeout, and feeds the store. Agents are listed statically or found through
// the EndpointSlices of their Service.
package puller

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/report"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/store"
)

// Puller pulls agents into a store.
type Puller struct {
	Client   *http.Client // with the adapter's client certificate
	Store    *store.Store
	Interval time.Duration
	Timeout  time.Duration
	// Static agent base URLs (https://host:port).
	Static []string
	// Slices, when set, lists the EndpointSlices of the agents' Service (Namespace, Service,
	// and the port's Name).
	Slices                   discoverylisters.EndpointSliceLister
	Namespace, Service, Port string
	Metrics                  *Metrics
}

// Metrics of the pulls.
type Metrics struct {
	Latency *prometheus.HistogramVec
	Errors  *prometheus.CounterVec
	Series  prometheus.GaugeFunc
}

// NewMetrics registers the puller's metrics; series reports the store's size.
func NewMetrics(reg prometheus.Registerer, series func() float64) *Metrics {
	m := &Metrics{
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "connection_adapter_pull_duration_seconds",
			Help: "Time to pull one agent's report.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"result"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "connection_adapter_pull_errors_total",
			Help: "Failed pulls by agent."}, []string{"agent"}),
		Series: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "connection_adapter_series",
			Help: "Pod series held (fresh or within their TTL)."}, series),
	}
	reg.MustRegister(m.Latency, m.Errors, m.Series)
	return m
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

// Agents lists the agents' base URLs.
func (p *Puller) Agents() []string {
	out := append([]string(nil), p.Static...)
	if p.Slices == nil {
		return out
	}
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: p.Service})
	slices, err := p.Slices.EndpointSlices(p.Namespace).List(sel)
	if err != nil {
		klog.ErrorS(err, "listing agent endpoints")
		return out
	}
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
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, addr := range e.Addresses {
				out = append(out, "https://"+net.JoinHostPort(addr, strconv.Itoa(int(port))))
			}
		}
	}
	return out
}

// PullAll pulls every agent at once and waits for all (each bounded by Timeout).
func (p *Puller) PullAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, agent := range p.Agents() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			r, err := p.pull(ctx, agent)
			result := "ok"
			if err != nil {
				result = "error"
				if p.Metrics != nil {
					p.Metrics.Errors.WithLabelValues(agent).Inc()
				}
				klog.V(2).InfoS("pulling agent", "agent", agent, "err", err)
			} else {
				p.Store.Add(r)
			}
			if p.Metrics != nil {
				p.Metrics.Latency.WithLabelValues(result).Observe(time.Since(start).Seconds())
			}
		}()
	}
	wg.Wait()
}

func (p *Puller) pull(ctx context.Context, agent string) (report.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, agent+report.Path, nil)
	if err != nil {
		return report.Report{}, err
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return report.Report{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return report.Report{}, fmt.Errorf("%s: HTTP %d", agent, resp.StatusCode)
	}
	var r report.Report
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return report.Report{}, fmt.Errorf("%s: %w", agent, err)
	}
	return r, nil
}
