// Package agent is the node side of the connection metrics: it finds the network namespaces of
// the pods of its node and counts their TCP connections on every scrape.
package agent

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/klog/v2"

	"golang.org/x/sys/unix"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/netns"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/podns"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/report"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/sockdiag"
)

// Scraper counts the connections of the pods its lister returns.
type Scraper struct {
	Node     string
	Pods     corelisters.PodLister // pods of this node (an informer filtered on spec.nodeName)
	ProcRoot string
	Counter  *sockdiag.Counter
	// RescanEvery bounds how old the pod → namespace map may get; it is also rebuilt when a
	// pod is not in it.
	RescanEvery time.Duration
	// UnsupportedRuntimeClasses names RuntimeClasses whose pods keep their sockets outside the
	// node's kernel (gVisor, Kata).
	UnsupportedRuntimeClasses map[string]bool
	Metrics                   *Metrics

	mu       sync.Mutex
	scan     *podns.Scan
	scanned  time.Time
	latest   report.Report
	hasScrap bool
}

// Metrics of the agent itself.
type Metrics struct {
	Duration   prometheus.Histogram
	Namespaces prometheus.Gauge
	Errors     *prometheus.CounterVec
}

// NewMetrics registers the agent's metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "connection_agent_scrape_duration_seconds",
			Help: "Time to count the connections of every pod namespace of the node.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		Namespaces: prometheus.NewGauge(prometheus.GaugeOpts{Name: "connection_agent_namespaces",
			Help: "Pod network namespaces counted in the last scrape."}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "connection_agent_errors_total",
			Help: "Pods whose connections could not be counted, by stage."}, []string{"stage"}),
	}
	reg.MustRegister(m.Duration, m.Namespaces, m.Errors)
	return m
}

// Latest returns the last report, and false before the first scrape.
func (s *Scraper) Latest() (report.Report, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest, s.hasScrap
}

// Scrape counts every pod of the node once and keeps the report.
func (s *Scraper) Scrape() report.Report {
	start := time.Now()
	pods, err := s.Pods.List(labels.Everything())
	if err != nil {
		klog.ErrorS(err, "listing pods")
	}
	out := report.Report{Node: s.Node, Time: start}
	rescanned := false
	for _, pod := range pods {
		if pod.Spec.HostNetwork || pod.Status.Phase != corev1.PodRunning {
			continue // a hostNetwork pod's sockets are the node's
		}
		sample := report.Pod{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}
		if rc := pod.Spec.RuntimeClassName; rc != nil && s.UnsupportedRuntimeClasses[*rc] {
			sample.Time = time.Now()
			sample.Unsupported = fmt.Sprintf("runtime class %q keeps sockets outside the node's kernel", *rc)
			out.Pods = append(out.Pods, sample)
			continue
		}
		ns := s.namespaceOf(CgroupUID(pod), &rescanned)
		if ns == nil {
			continue // no process yet (starting), or not on this host
		}
		if err := s.count(ns, &sample); err != nil {
			klog.V(2).InfoS("counting connections", "pod", pod.Namespace+"/"+pod.Name, "err", err)
			continue
		}
		out.Pods = append(out.Pods, sample)
	}
	if s.Metrics != nil {
		s.Metrics.Duration.Observe(time.Since(start).Seconds())
		s.Metrics.Namespaces.Set(float64(len(out.Pods)))
	}
	s.mu.Lock()
	s.latest, s.hasScrap = out, true
	s.mu.Unlock()
	return out
}

// MirrorAnnotation is set by the kubelet on the API's mirror of a static pod: its value is the
// static pod's own UID (its config hash), which names the pod's cgroup.
const MirrorAnnotation = "kubernetes.io/config.mirror"

// CgroupUID is the UID a pod's cgroups carry: a static pod's is its config hash, not the UID of
// the mirror pod the API shows (whose name and UID the report uses).
func CgroupUID(pod *corev1.Pod) string {
	if hash := pod.Annotations[MirrorAnnotation]; hash != "" {
		return hash
	}
	return string(pod.UID)
}

// namespaceOf looks the pod up in the last /proc scan, scanning again (at most once per
// scrape) when it is missing or the scan is old.
func (s *Scraper) namespaceOf(uid string, rescanned *bool) *podns.Namespace {
	s.mu.Lock()
	scan, age := s.scan, time.Since(s.scanned)
	s.mu.Unlock()
	if scan != nil && age < s.RescanEvery {
		if ns := scan.Pods[uid]; ns != nil {
			return ns
		}
	}
	if *rescanned {
		if scan == nil {
			return nil
		}
		return scan.Pods[uid]
	}
	*rescanned = true
	fresh, err := podns.ScanProc(s.ProcRoot)
	if err != nil {
		s.error("discovery", err)
		return nil
	}
	s.mu.Lock()
	s.scan, s.scanned = fresh, time.Now()
	s.mu.Unlock()
	return fresh.Pods[uid]
}

// count tries the namespace's processes in turn (one may have exited since the scan): the
// namespace is entered by a PID whose namespace inode is checked, so a reused PID cannot
// lead into another pod.
func (s *Scraper) count(ns *podns.Namespace, sample *report.Pod) error {
	var lastErr error
	for _, pid := range ns.PIDs {
		fd, err := netns.DiagSocket(netns.ProcPath(pid), ns.Inode)
		if err != nil {
			lastErr = err
			continue
		}
		counts, err := s.Counter.Count(fd)
		unix.Close(fd)
		if err != nil {
			s.error("sock_diag", err)
			return err
		}
		sample.Time = time.Now()
		sample.Inbound, sample.Outbound, sample.SynRecv = counts.Inbound, counts.Outbound, counts.SynRecv
		sample.InboundByPort = counts.InboundByPort
		// A counter that cannot be read is left out, not sent as 0 (which would read as a
		// counter reset and then a burst of new connections).
		if tcp, err := sockdiag.ReadTCPCounters(pid); err == nil {
			sample.PassiveOpens = &tcp.PassiveOpens
		} else {
			s.error("tcp_counters", err)
		}
		return nil
	}
	s.error("enter_namespace", lastErr)
	return lastErr
}

func (s *Scraper) error(stage string, err error) {
	if s.Metrics != nil {
		s.Metrics.Errors.WithLabelValues(stage).Inc()
	}
	klog.V(2).InfoS("scrape error", "stage", stage, "err", err)
}
