// Package agent is the node side of the connection metrics: it finds the network namespaces of
// the pods of its node and counts their TCP connections on every scrape.
package agent

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/klog/v2"

	"golang.org/x/sys/unix"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/bpfcount"
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
	// Events, when set, counts from kernel events (package bpfcount): sock_diag then counts a
	// namespace only when it is first seen and every CheckEvery (5 minutes when 0), to measure
	// and correct drift.
	Events     *bpfcount.Program
	CheckEvery time.Duration
	tracker    *bpfcount.Tracker
	checked    map[uint32]time.Time // when sock_diag last counted each namespace
	owner      map[uint32]string    // the pod UID each namespace inode was counted for
	swept      time.Time            // when entries of uncounted namespaces were last deleted

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
	// Checks counts sock_diag checks of event counts (taken while no connection came or went);
	// Drift the connections by which they disagreed.
	Checks prometheus.Counter
	Drift  prometheus.Counter
	// Lost mirrors the program's count of events it could not record (a map full).
	Lost prometheus.Gauge
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
		Checks: prometheus.NewCounter(prometheus.CounterOpts{Name: "connection_agent_event_checks_total",
			Help: "Periodic sock_diag counts of a namespace compared with its kernel-event counts."}),
		Drift: prometheus.NewCounter(prometheus.CounterOpts{Name: "connection_agent_event_drift_connections_total",
			Help: "Connections by which the kernel-event counts differed from a periodic sock_diag count (then corrected)."}),
	}
	m.Lost = prometheus.NewGauge(prometheus.GaugeOpts{Name: "connection_agent_event_lost_total",
		Help: "Kernel events the BPF program could not record because a map was full (corrected at the next sock_diag check)."})
	reg.MustRegister(m.Duration, m.Namespaces, m.Errors, m.Checks, m.Drift, m.Lost)
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
	var events map[uint32]*bpfcount.Events
	if s.Events != nil {
		if events, err = s.Events.Snapshot(); err != nil {
			s.error("bpf_read", err) // this scrape counts with sock_diag alone
		}
	}
	seen := map[uint32]bool{}
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
		seen[uint32(ns.Inode)] = true
		if events != nil {
			err = s.countEvents(ns, &sample, events)
		} else {
			err = s.count(ns, &sample)
		}
		if err != nil {
			klog.V(2).InfoS("counting connections", "pod", pod.Namespace+"/"+pod.Name, "err", err)
			continue
		}
		out.Pods = append(out.Pods, sample)
	}
	if events != nil {
		s.forgetGone(seen, events, start)
		if lost, err := s.Events.Lost(); err == nil && s.Metrics != nil {
			s.Metrics.Lost.Set(float64(lost))
		}
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

// count counts the namespace with sock_diag.
func (s *Scraper) count(ns *podns.Namespace, sample *report.Pod) error {
	counts, pid, err := s.diag(ns)
	if err != nil {
		return err
	}
	sample.Time = time.Now()
	sample.Inbound, sample.Outbound, sample.SynRecv = counts.Inbound, counts.Outbound, counts.SynRecv
	sample.InboundByPort = counts.InboundByPort
	s.passiveOpens(sample, pid)
	return nil
}

// diag tries the namespace's processes in turn (one may have exited since the scan): the
// namespace is entered by a PID whose namespace inode is checked, so a reused PID cannot
// lead into another pod. It returns the PID that worked.
func (s *Scraper) diag(ns *podns.Namespace) (sockdiag.Counts, int, error) {
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
			return counts, 0, err
		}
		return counts, pid, nil
	}
	s.error("enter_namespace", lastErr)
	return sockdiag.Counts{}, 0, lastErr
}

// passiveOpens reads the namespace's counter of accepted connections through the first of pids
// that answers. A counter that cannot be read is left out, not sent as 0 (which would read as a
// counter reset and then a burst of new connections).
func (s *Scraper) passiveOpens(sample *report.Pod, pids ...int) {
	var err error
	for _, p := range pids {
		var tcp sockdiag.TCPCounters
		if tcp, err = sockdiag.ReadTCPCounters(p); err == nil {
			sample.PassiveOpens = &tcp.PassiveOpens
			return
		}
	}
	s.error("tcp_counters", err)
}

// checkEvery is CheckEvery, 5 minutes when unset.
func (s *Scraper) checkEvery() time.Duration {
	if s.CheckEvery == 0 {
		return 5 * time.Minute
	}
	return s.CheckEvery
}

// countEvents counts the namespace from the kernel events; sock_diag counts it when it is new
// to the tracker and every CheckEvery, and a difference found then is counted as drift and
// corrected. Half-open handshakes are not counted in this mode.
func (s *Scraper) countEvents(ns *podns.Namespace, sample *report.Pod, events map[uint32]*bpfcount.Events) error {
	ino := uint32(ns.Inode)
	if s.tracker == nil {
		s.tracker, s.checked, s.owner = bpfcount.NewTracker(), map[uint32]time.Time{}, map[uint32]string{}
	}
	every := s.checkEvery()
	if owner, ok := s.owner[ino]; ok && owner != sample.UID {
		// The inode of a namespace that is gone, reused by another pod's: start afresh.
		s.tracker.Forget(ino)
		delete(s.checked, ino)
	}
	s.owner[ino] = sample.UID
	sample.SynRecvUncounted = true
	if last, ok := s.checked[ino]; ok && time.Since(last) < every {
		c, _ := s.tracker.Counts(ino, events[ino])
		sample.Time = time.Now()
		sample.Inbound, sample.Outbound, sample.InboundByPort = c.Inbound, c.Outbound, c.InboundByPort
		s.passiveOpens(sample, ns.PIDs...)
		return nil
	}
	counts, pid, err := s.diag(ns)
	if err != nil {
		return err
	}
	sample.Time = time.Now()
	sample.Inbound, sample.Outbound, sample.InboundByPort = counts.Inbound, counts.Outbound, counts.InboundByPort
	s.passiveOpens(sample, pid)
	// The namespace's events at the scrape's start are its state at the dump only if nothing
	// was recorded for it since: else the two counts cannot be compared (nor the dump taken as
	// the seed), and the check is tried again later (a busy namespace: 30 s later, its event
	// counts served meanwhile).
	var before uint64
	if ev := events[ino]; ev != nil {
		before = ev.Changes
	}
	after, err := s.Events.Changes(ino)
	if err != nil {
		s.error("bpf_read", err)
		return nil
	}
	if after != before {
		if s.tracker.Seeded(ino) {
			s.checked[ino] = time.Now().Add(30*time.Second - every)
		}
		return nil
	}
	if s.tracker.Seeded(ino) {
		c, _ := s.tracker.Counts(ino, events[ino])
		if s.Metrics != nil {
			s.Metrics.Checks.Inc()
		}
		if d := drift(c, counts); d > 0 {
			if s.Metrics != nil {
				s.Metrics.Drift.Add(float64(d))
			}
			klog.V(2).InfoS("event counts drifted from sock_diag's; corrected", "namespaceInode", ino, "connections", d,
				"events", fmt.Sprintf("in %d out %d", c.Inbound, c.Outbound), "sockDiag", fmt.Sprintf("in %d out %d", counts.Inbound, counts.Outbound))
		}
	}
	checked := time.Now()
	if !s.tracker.Seeded(ino) {
		// Spread the namespaces' checks over the period, not all in one scrape.
		checked = checked.Add(-time.Duration(rand.Int64N(int64(every))))
	}
	s.tracker.Seed(ino, counts, events[ino])
	s.checked[ino] = checked
	return nil
}

// drift is how many connections two counts of a namespace disagree on, port by port.
func drift(c bpfcount.Counts, d sockdiag.Counts) int {
	abs := func(x int) int { return max(x, -x) }
	n := abs(c.Outbound - d.Outbound)
	for p, v := range d.InboundByPort {
		n += abs(c.InboundByPort[p] - v)
	}
	for p, v := range c.InboundByPort {
		if _, ok := d.InboundByPort[p]; !ok {
			n += abs(v)
		}
	}
	return n
}

// forgetGone drops the namespaces not seen for two check periods: their events are deleted
// from the program's maps (a namespace's inode may be reused once it is freed). Once a minute it
// also deletes the entries of namespaces that are not pods' being counted (the host's, pods'
// that went before they were seeded): they would fill the maps, and a namespace seeded later is
// seeded against whatever its entries are then.
func (s *Scraper) forgetGone(seen map[uint32]bool, events map[uint32]*bpfcount.Events, now time.Time) {
	every := s.checkEvery()
	forget := func(ino uint32) {
		if err := s.Events.Forget(ino); err != nil {
			s.error("bpf_forget", err)
		}
	}
	for ino, last := range s.checked {
		if seen[ino] || now.Sub(last) < 2*every {
			continue
		}
		s.tracker.Forget(ino)
		delete(s.checked, ino)
		delete(s.owner, ino)
		forget(ino)
	}
	if now.Sub(s.swept) < time.Minute {
		return
	}
	s.swept = now
	for ino := range events {
		if !seen[ino] && (s.tracker == nil || !s.tracker.Seeded(ino)) {
			forget(ino)
		}
	}
}

func (s *Scraper) error(stage string, err error) {
	if s.Metrics != nil {
		s.Metrics.Errors.WithLabelValues(stage).Inc()
	}
	klog.V(2).InfoS("scrape error", "stage", stage, "err", err)
}
