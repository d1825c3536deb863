package store

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/report"
)

var t0 = time.Unix(1_800_000_000, 0)

var web1 = Key{"web", "web-1", "u1"}

func pod(at time.Duration, inbound int, ports map[uint16]int, passive uint64) report.Report {
	return report.Report{Node: "n1", Pods: []report.Pod{{Namespace: "web", Name: "web-1", UID: "u1", Time: t0.Add(at),
		Inbound: inbound, InboundByPort: ports, Outbound: 2, SynRecv: 1, PassiveOpens: &passive}}}
}

// inStep adds a report received the instant its agent stamped it (the clocks in step).
func inStep(s *Store, r report.Report) {
	s.Add(r, r.Pods[0].Time)
}

// failedRead is a sample whose TCP counters could not be read.
func failedRead(at time.Duration, inbound int) report.Report {
	r := pod(at, inbound, nil, 0)
	r.Pods[0].PassiveOpens = nil
	return r
}

func TestWindowAverageMaxAndRate(t *testing.T) {
	s := New(30*time.Second, 60*time.Second)
	inStep(s, pod(0, 10, map[uint16]int{8080: 10}, 100))
	inStep(s, pod(10*time.Second, 20, map[uint16]int{8080: 15, 9090: 5}, 150))
	inStep(s, pod(10*time.Second, 99, nil, 999)) // the same scrape pulled again: ignored
	inStep(s, pod(20*time.Second, 30, map[uint16]int{8080: 20, 9090: 10}, 300))
	v, ok := s.Get(web1, t0.Add(21*time.Second))
	if !ok {
		t.Fatal("no values")
	}
	if v.Connections != 20 || v.ConnectionsMax != 30 || v.Outbound != 2 || v.SynBacklog != 1 {
		t.Errorf("values = %+v, want average 20, max 30, outbound 2, backlog 1", v)
	}
	if v.ByPort[8080] != 15 || v.ByPort[9090] != 5 {
		t.Errorf("by port = %v, want 8080: 15, 9090: 5 (absent counts as 0)", v.ByPort)
	}
	if v.NewPerSecond != 10 || !v.HasRate || v.Window != 20*time.Second || !v.Time.Equal(t0.Add(20*time.Second)) {
		t.Errorf("rate %v over %s at %s; want 10/s over 20s at t0+20s", v.NewPerSecond, v.Window, v.Time)
	}
	// 35 s later the first two samples have left the 30 s window.
	inStep(s, pod(45*time.Second, 40, nil, 400))
	v, _ = s.Get(web1, t0.Add(45*time.Second))
	if v.Connections != 35 || v.Window != 25*time.Second {
		t.Errorf("after sliding: average %v over %s, want 35 over 25s", v.Connections, v.Window)
	}
}

func TestStaleSeriesAreWithdrawn(t *testing.T) {
	s := New(30*time.Second, 15*time.Second)
	inStep(s, pod(0, 10, nil, 0))
	if _, ok := s.Get(web1, t0.Add(14*time.Second)); !ok {
		t.Error("a 14 s old sample (TTL 15 s) was not served")
	}
	if _, ok := s.Get(web1, t0.Add(16*time.Second)); ok {
		t.Error("a 16 s old sample (TTL 15 s) was served as fresh")
	}
	s.Expire(t0.Add(16 * time.Second))
	if s.Len() != 0 {
		t.Errorf("series left after expiry: %d", s.Len())
	}
}

func TestUnsupportedAndRecreatedPods(t *testing.T) {
	s := New(30*time.Second, 60*time.Second)
	inStep(s, report.Report{Pods: []report.Pod{{Namespace: "a", Name: "sandboxed", UID: "u", Time: t0, Unsupported: "runtime class \"gvisor\""}}})
	if v, ok := s.Get(Key{"a", "sandboxed", "u"}, t0); ok || v.Withheld == "" {
		t.Errorf("unsupported pod: %+v %v; want no value and the reason", v, ok)
	}
	inStep(s, pod(0, 10, nil, 0))
	inStep(s, report.Report{Pods: []report.Pod{{Namespace: "web", Name: "web-1", UID: "u2", Time: t0.Add(time.Second), Inbound: 2}}})
	if v, _ := s.Get(Key{"web", "web-1", "u2"}, t0.Add(time.Second)); v.Connections != 2 {
		t.Errorf("a recreated pod (new UID) inherited the old samples: %+v", v)
	}
}

// A StatefulSet's web-0 is recreated: until its agent reports the new pod, the new pod has no
// value (the old pod's window is not served under its name).
func TestRecreatedPodNeverInheritsTheOldWindow(t *testing.T) {
	s := New(30*time.Second, 60*time.Second)
	inStep(s, pod(0, 50, nil, 100))
	if _, ok := s.Get(Key{"web", "web-1", "u-new"}, t0.Add(time.Second)); ok {
		t.Error("the recreated pod is served the old pod's values")
	}
}

// Rates follow counter-reset rules, skip failed reads, and need two readings.
func TestRateOfNewConnections(t *testing.T) {
	for _, tc := range []struct {
		name     string
		reports  []report.Report
		wantRate float64
		wantOK   bool
		window   time.Duration
	}{
		// A steady 10/s with a failed read in the middle (it was sent as a counter of 0 and read
		// as 33,345/s once).
		{"failed read skipped", []report.Report{pod(0, 5, nil, 500_000), failedRead(5*time.Second, 5), pod(10*time.Second, 5, nil, 500_100),
			pod(15*time.Second, 5, nil, 500_150)}, 10, true, 15 * time.Second},
		// The failed read is the oldest sample left in the window.
		{"failed read first", []report.Report{failedRead(0, 5), pod(10*time.Second, 5, nil, 500_100), pod(15*time.Second, 5, nil, 500_150)},
			10, true, 5 * time.Second},
		// The namespace is made anew under the same UID: the counter restarts near 0.
		{"counter reset", []report.Report{pod(0, 5, nil, 1000), pod(10*time.Second, 5, nil, 1100), pod(20*time.Second, 5, nil, 100)}, 10, true, 20 * time.Second},
		{"single sample", []report.Report{pod(0, 5, nil, 1000)}, 0, false, 0},
		{"one reading of two samples", []report.Report{pod(0, 5, nil, 1000), failedRead(10*time.Second, 5)}, 0, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(30*time.Second, 60*time.Second)
			for _, r := range tc.reports {
				inStep(s, r)
			}
			v, ok := s.Get(web1, t0.Add(20*time.Second))
			if !ok {
				t.Fatal("no values")
			}
			if v.HasRate != tc.wantOK || v.NewPerSecond != tc.wantRate || v.RateWindow != tc.window {
				t.Errorf("rate %v/s over %s (has %v), want %v/s over %s (has %v)", v.NewPerSecond, v.RateWindow, v.HasRate, tc.wantRate, tc.window, tc.wantOK)
			}
		})
	}
}

// A single sample is averaged over no time at all: its window says so (not the full window).
func TestSingleSampleWindowIsHonest(t *testing.T) {
	s := New(30*time.Second, 60*time.Second)
	inStep(s, pod(0, 7, nil, 0))
	if v, _ := s.Get(web1, t0); v.Window != 0 || v.Connections != 7 {
		t.Errorf("one sample: %v over %s, want 7 over 0s", v.Connections, v.Window)
	}
}

// Memory per series with a full window (6 samples, 2 ports each).
func TestMemoryPerSeries(t *testing.T) {
	const pods = 1000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := New(30*time.Second, 60*time.Second)
	for i := 0; i < 6; i++ {
		r := report.Report{}
		for p := 0; p < pods; p++ {
			r.Pods = append(r.Pods, report.Pod{Namespace: "web", Name: "web-" + string(rune('a'+p%26)) + string(rune('a'+p/26%26)) + string(rune('a'+p/676)),
				UID: "u", Time: t0.Add(time.Duration(i) * 5 * time.Second), Inbound: 10, InboundByPort: map[uint16]int{8080: 8, 9090: 2}})
		}
		inStep(s, r)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perSeries := float64(after.HeapAlloc-before.HeapAlloc) / pods
	t.Logf("%.0f bytes per series", perSeries)
	if perSeries > 2048 {
		t.Errorf("%.0f bytes per series, want ≤ 2 KiB", perSeries)
	}
	runtime.KeepAlive(s)
}

// An agent counting from kernel events does not count half-open handshakes: a window with such a
// sample has no tcp_syn_backlog (not a 0), while its other values are served.
func TestUncountedSynBacklogIsNotServedAsZero(t *testing.T) {
	s := New(30*time.Second, 60*time.Second)
	inStep(s, pod(0, 10, nil, 100))
	if v, _ := s.Get(web1, t0.Add(time.Second)); !v.HasSynBacklog || v.SynBacklog != 1 {
		t.Fatalf("counted: %+v", v)
	}
	r := pod(10*time.Second, 10, nil, 110)
	r.Pods[0].SynRecv, r.Pods[0].SynRecvUncounted = 0, true
	inStep(s, r)
	v, ok := s.Get(web1, t0.Add(11*time.Second))
	if !ok || v.HasSynBacklog || v.Connections != 10 {
		t.Errorf("with an uncounted sample: ok %v, %+v; want values without a SYN backlog", ok, v)
	}
}

// An agent whose clock is 20 s ahead (less than the TTL: its samples are taken) stops
// reporting: its values are withheld once the adapter received nothing for the TTL, not 20 s
// later, and meanwhile they are served with the agent's own timestamp.
func TestFreshnessIsJudgedByReceipt(t *testing.T) {
	s := New(30*time.Second, 30*time.Second)
	if skewed := s.Add(pod(20*time.Second, 10, nil, 0), t0); skewed != 0 {
		t.Fatalf("a sample 20 s ahead (TTL 30 s) was refused")
	}
	if v, ok := s.Get(web1, t0.Add(29*time.Second)); !ok || !v.Time.Equal(t0.Add(20*time.Second)) {
		t.Errorf("29 s after its receipt: ok %v, %+v; want served, stamped t0+20s", ok, v)
	}
	v, ok := s.Get(web1, t0.Add(31*time.Second))
	if ok || !strings.Contains(v.Withheld, "received 31s ago, more than the TTL (30s)") {
		t.Errorf("31 s after its receipt (TTL 30 s): ok %v, withheld %q; want withheld, saying it was received 31s ago", ok, v.Withheld)
	}
	s.Expire(t0.Add(31 * time.Second))
	if s.Len() != 0 {
		t.Errorf("series left after expiry: %d", s.Len())
	}
}

// An agent whose clock is 10 minutes ahead: its samples are refused and counted, and the pod's
// values are withheld with the reason; the series goes when no report named the pod for the TTL.
func TestSampleStampedBeyondTheTTLIsRefused(t *testing.T) {
	s := New(30*time.Second, 30*time.Second)
	inStep(s, pod(0, 10, nil, 0))
	if skewed := s.Add(pod(10*time.Minute+5*time.Second, 10, nil, 0), t0.Add(5*time.Second)); skewed != 1 {
		t.Errorf("%d samples refused, want 1 (stamped 10 min ahead of its receipt)", skewed)
	}
	v, ok := s.Get(web1, t0.Add(6*time.Second))
	if ok || !strings.Contains(v.Withheld, "10m0s ahead of their receipt") {
		t.Errorf("after a sample 10 min ahead: ok %v, withheld %q; want withheld, naming the skew", ok, v.Withheld)
	}
	s.Expire(t0.Add(36 * time.Second))
	if s.Len() != 0 {
		t.Errorf("series left after expiry: %d", s.Len())
	}
}

// The agent's clock was ahead and NTP steps it back: its next scrape is stamped earlier than the
// newest sample held. It is the news: the window starts afresh from it.
func TestAgentClockSteppedBack(t *testing.T) {
	s := New(30*time.Second, 30*time.Second)
	s.Add(pod(20*time.Second, 50, nil, 100), t0) // the node's clock 20 s ahead
	s.Add(pod(5*time.Second, 7, nil, 110), t0.Add(5*time.Second))
	v, ok := s.Get(web1, t0.Add(6*time.Second))
	if !ok || v.Connections != 7 || v.Window != 0 || !v.Time.Equal(t0.Add(5*time.Second)) {
		t.Errorf("after the agent's clock stepped back: ok %v, %+v; want 7 over 0s at t0+5s (the newest scrape alone)", ok, v)
	}
}

// An agent that keeps serving the same scrape (its scraper stuck) does not keep the pod fresh.
func TestTheSameScrapePulledAgainIsNotNews(t *testing.T) {
	s := New(30*time.Second, 30*time.Second)
	inStep(s, pod(0, 10, nil, 0))
	s.Add(pod(0, 10, nil, 0), t0.Add(20*time.Second))
	if _, ok := s.Get(web1, t0.Add(31*time.Second)); ok {
		t.Error("a scrape received at t0 and again at t0+20s is served 31 s after it was first received (TTL 30 s)")
	}
}
