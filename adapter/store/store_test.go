package store

import (
	"runtime"
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

// failedRead is a sample whose TCP counters could not be read.
func failedRead(at time.Duration, inbound int) report.Report {
	r := pod(at, inbound, nil, 0)
	r.Pods[0].PassiveOpens = nil
	return r
}

func TestWindowAverageMaxAndRate(t *testing.T) {
	s := New(30*time.Second, 60*time.Second)
	s.Add(pod(0, 10, map[uint16]int{8080: 10}, 100))
	s.Add(pod(10*time.Second, 20, map[uint16]int{8080: 15, 9090: 5}, 150))
	s.Add(pod(10*time.Second, 99, nil, 999)) // the same scrape pulled again: ignored
	s.Add(pod(20*time.Second, 30, map[uint16]int{8080: 20, 9090: 10}, 300))
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
	s.Add(pod(45*time.Second, 40, nil, 400))
	v, _ = s.Get(web1, t0.Add(45*time.Second))
	if v.Connections != 35 || v.Window != 25*time.Second {
		t.Errorf("after sliding: average %v over %s, want 35 over 25s", v.Connections, v.Window)
	}
}

func TestStaleSeriesAreWithdrawn(t *testing.T) {
	s := New(30*time.Second, 15*time.Second)
	s.Add(pod(0, 10, nil, 0))
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
	s.Add(report.Report{Pods: []report.Pod{{Namespace: "a", Name: "sandboxed", UID: "u", Time: t0, Unsupported: "runtime class \"gvisor\""}}})
	if v, ok := s.Get(Key{"a", "sandboxed", "u"}, t0); ok || v.Unsupported == "" {
		t.Errorf("unsupported pod: %+v %v; want no value and the reason", v, ok)
	}
	s.Add(pod(0, 10, nil, 0))
	s.Add(report.Report{Pods: []report.Pod{{Namespace: "web", Name: "web-1", UID: "u2", Time: t0.Add(time.Second), Inbound: 2}}})
	if v, _ := s.Get(Key{"web", "web-1", "u2"}, t0.Add(time.Second)); v.Connections != 2 {
		t.Errorf("a recreated pod (new UID) inherited the old samples: %+v", v)
	}
}

// A StatefulSet's web-0 is recreated: until its agent reports the new pod, the new pod has no
// value (the old pod's window is not served under its name).
func TestRecreatedPodNeverInheritsTheOldWindow(t *testing.T) {
	s := New(30*time.Second, 60*time.Second)
	s.Add(pod(0, 50, nil, 100))
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
				s.Add(r)
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
	s.Add(pod(0, 7, nil, 0))
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
		s.Add(r)
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
	s.Add(pod(0, 10, nil, 100))
	if v, _ := s.Get(web1, t0.Add(time.Second)); !v.HasSynBacklog || v.SynBacklog != 1 {
		t.Fatalf("counted: %+v", v)
	}
	r := pod(10*time.Second, 10, nil, 110)
	r.Pods[0].SynRecv, r.Pods[0].SynRecvUncounted = 0, true
	s.Add(r)
	v, ok := s.Get(web1, t0.Add(11*time.Second))
	if !ok || v.HasSynBacklog || v.Connections != 10 {
		t.Errorf("with an uncounted sample: ok %v, %+v; want values without a SYN backlog", ok, v)
	}
}
