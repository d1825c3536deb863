// Package store keeps a short window of connection samples per pod and computes the served
// values from it: averages over the window (the seeds' sliding window), the maximum, and the
// rate of new connections. A series whose agent stopped reporting is withdrawn after a TTL: a
// stale number is never served as fresh.
//
// Two clocks meet here. Freshness is the adapter's: a series is fresh while the adapter received
// its newest sample within the TTL, whatever the agent's clock says. The agent's clock only spans
// the window (averages and rates are differences of its own timestamps, exact whatever its
// offset) and stamps the served value. A sample stamped further than the TTL from its receipt
// is refused: its node's clock is off (or its agent's scrape is stuck), and its timestamp would
// be a lie.
package store

import (
	"fmt"
	"sync"
	"time"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/report"
)

// Values are what is served for one pod.
type Values struct {
	Connections    float64 // inbound, averaged over the window
	ConnectionsMax float64
	// NewPerSecond is the rate of accepted connections over RateWindow; HasRate is false until
	// two readings of the counter exist.
	NewPerSecond float64
	HasRate      bool
	RateWindow   time.Duration
	SynBacklog   float64
	// HasSynBacklog is false when a sample of the window did not count half-open handshakes.
	HasSynBacklog bool
	Outbound      float64
	ByPort        map[uint16]float64
	// Time of the newest sample (the agent's clock, off the adapter's by less than the TTL), and
	// the span of the samples averaged (0 for a single sample).
	Time   time.Time
	Window time.Duration
	// Withheld says why the pod has no values, when its node's agent reported it (its runtime
	// is not measured, its samples are stale or stamped by a clock that is off).
	Withheld string
}

type sample struct {
	at                    int64 // unix nanoseconds
	inbound, out, synRecv int32
	passiveOpens          uint64
	hasPassive            bool // the counter was read
	synUncounted          bool
	ports                 []portCount
}

type portCount struct {
	port  uint16
	count int32
}

type series struct {
	samples []sample // oldest first, within the window
	// received is when the adapter received the newest sample; seen, when it last received a
	// report naming the pod (taken or refused); both unix nanoseconds of the adapter's clock.
	received, seen int64
	// skew is how far the last report naming the pod stamped it from its receipt, when that
	// was more than the TTL (the sample was refused); 0 once a sample is taken.
	skew        time.Duration
	unsupported string
}

// Key names a pod, with its UID: a pod recreated under the same name (a StatefulSet's web-0)
// is another series and never inherits the old one's window.
type Key struct{ Namespace, Name, UID string }

// Store is safe for concurrent use.
type Store struct {
	Window time.Duration
	TTL    time.Duration

	mu     sync.RWMutex
	series map[Key]*series
}

// New makes a store.
func New(window, ttl time.Duration) *Store {
	return &Store{Window: window, TTL: ttl, series: map[Key]*series{}}
}

// Add records a node's report, received by the adapter at received (its clock): that receipt,
// not the agent's timestamp, keeps the pod's values fresh. A sample stamped no later than the
// pod's newest adds nothing (a report pulled twice is not news); one stamped earlier means the
// agent's clock stepped back, and the window starts afresh on the new clock. A sample stamped
// more than the TTL from its receipt is refused and counted in skewed.
func (s *Store) Add(r report.Report, received time.Time) (skewed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rcv := received.UnixNano()
	for _, p := range r.Pods {
		key := Key{p.Namespace, p.Name, p.UID}
		ser := s.series[key]
		if ser == nil {
			ser = &series{}
			s.series[key] = ser
		}
		ser.seen = max(ser.seen, rcv)
		if skew := p.Time.Sub(received); skew > s.TTL || skew < -s.TTL {
			ser.skew = skew
			skewed++
			continue
		}
		ser.skew = 0
		ser.unsupported = p.Unsupported
		at := p.Time.UnixNano()
		if n := len(ser.samples); n > 0 {
			if at == ser.samples[n-1].at {
				continue
			}
			if at < ser.samples[n-1].at {
				ser.samples = ser.samples[:0] // the agent's clock stepped back
			}
		}
		ser.received = max(ser.received, rcv)
		smp := sample{at: at, inbound: int32(p.Inbound), out: int32(p.Outbound), synRecv: int32(p.SynRecv), synUncounted: p.SynRecvUncounted}
		if p.PassiveOpens != nil {
			smp.passiveOpens, smp.hasPassive = *p.PassiveOpens, true
		}
		if len(p.InboundByPort) > 0 {
			smp.ports = make([]portCount, 0, len(p.InboundByPort))
			for port, c := range p.InboundByPort {
				smp.ports = append(smp.ports, portCount{port, int32(c)})
			}
		}
		ser.samples = append(ser.samples, smp)
		cut := at - s.Window.Nanoseconds()
		drop := 0
		for drop < len(ser.samples)-1 && ser.samples[drop].at < cut {
			drop++
		}
		if drop > 0 {
			ser.samples = append(ser.samples[:0], ser.samples[drop:]...)
		}
	}
	return skewed
}

// Expire removes the series of pods no report has named within the TTL (by the adapter's clock).
func (s *Store) Expire(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, ser := range s.series {
		if now.Sub(time.Unix(0, ser.seen)) > s.TTL {
			delete(s.series, key)
		}
	}
}

// Len is the number of series held.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.series)
}

// Get computes a pod's values at now (the adapter's clock); ok is false when the adapter has not
// received a sample of it within the TTL, and Withheld then says why when a report named it.
func (s *Store) Get(key Key, now time.Time) (Values, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ser := s.series[key]
	if ser == nil {
		return Values{}, false
	}
	if ser.skew != 0 {
		way := "ahead of"
		if ser.skew < 0 {
			way = "behind"
		}
		return Values{Withheld: fmt.Sprintf("its node's connection-agent stamps its samples %s %s their receipt, more than the TTL (%s): they are refused (the node's clock is off, or the agent's scrape is stuck)",
			ser.skew.Abs().Round(time.Second), way, s.TTL)}, false
	}
	if len(ser.samples) == 0 {
		return Values{Withheld: "no sample of it was taken"}, false
	}
	if age := now.Sub(time.Unix(0, ser.received)); age > s.TTL {
		return Values{Withheld: fmt.Sprintf("its newest sample was received %s ago, more than the TTL (%s): its node's connection-agent has not reported it since",
			age.Round(time.Second), s.TTL)}, false
	}
	if ser.unsupported != "" {
		return Values{Withheld: "it is not measured: " + ser.unsupported}, false
	}
	newest := ser.samples[len(ser.samples)-1]
	v := Values{Time: time.Unix(0, newest.at), ByPort: map[uint16]float64{}, HasSynBacklog: true}
	var in, out, syn float64
	for _, smp := range ser.samples {
		in += float64(smp.inbound)
		out += float64(smp.out)
		syn += float64(smp.synRecv)
		v.HasSynBacklog = v.HasSynBacklog && !smp.synUncounted
		v.ConnectionsMax = max(v.ConnectionsMax, float64(smp.inbound))
		for _, pc := range smp.ports {
			v.ByPort[pc.port] += float64(pc.count)
		}
	}
	n := float64(len(ser.samples))
	v.Connections, v.Outbound, v.SynBacklog = in/n, out/n, syn/n
	for p := range v.ByPort {
		v.ByPort[p] /= n
	}
	v.Window = time.Duration(newest.at - ser.samples[0].at)
	v.NewPerSecond, v.RateWindow, v.HasRate = rate(ser.samples)
	return v, true
}

// rate is the rate of a counter over the samples that read it, with Prometheus' counter-reset
// rule: a reading below the one before means the counter restarted from 0 (the pod's network
// namespace was made anew), so the increase is the reading itself. Samples whose read failed
// are skipped; fewer than two readings give no rate.
func rate(samples []sample) (perSecond float64, window time.Duration, ok bool) {
	var first, prev *sample
	var increase uint64
	for i := range samples {
		smp := &samples[i]
		if !smp.hasPassive {
			continue
		}
		switch {
		case prev == nil:
			first = smp
		case smp.passiveOpens >= prev.passiveOpens:
			increase += smp.passiveOpens - prev.passiveOpens
		default:
			increase += smp.passiveOpens
		}
		prev = smp
	}
	if first == nil || prev == first {
		return 0, 0, false
	}
	window = time.Duration(prev.at - first.at)
	return float64(increase) / window.Seconds(), window, true
}
