// Package store keeps a short window of connection samples per pod and computes the served
// values from it: averages over the window (the seeds' sliding window), the maximum, and the
// rate of new connections. A series whose agent stopped reporting is withdrawn after a TTL: a
// stale number is never served as fresh.
package store

import (
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
	// Time of the newest sample, and the span of the samples averaged (0 for a single sample).
	Time   time.Time
	Window time.Duration
	// Unsupported says why the pod has no values (its runtime).
	Unsupported string
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
	samples     []sample // oldest first, within the window
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

// Add records a node's report; samples older than the pod's newest are ignored (a report
// pulled twice adds nothing).
func (s *Store) Add(r report.Report) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range r.Pods {
		key := Key{p.Namespace, p.Name, p.UID}
		ser := s.series[key]
		if ser == nil {
			ser = &series{}
			s.series[key] = ser
		}
		ser.unsupported = p.Unsupported
		at := p.Time.UnixNano()
		if n := len(ser.samples); n > 0 && at <= ser.samples[n-1].at {
			continue
		}
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
}

// Expire removes series with no sample newer than the TTL.
func (s *Store) Expire(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, ser := range s.series {
		if n := len(ser.samples); n == 0 || now.Sub(time.Unix(0, ser.samples[n-1].at)) > s.TTL {
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

// Get computes a pod's values; ok is false when there is no fresh sample.
func (s *Store) Get(key Key, now time.Time) (Values, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ser := s.series[key]
	if ser == nil || len(ser.samples) == 0 {
		return Values{}, false
	}
	newest := ser.samples[len(ser.samples)-1]
	if now.Sub(time.Unix(0, newest.at)) > s.TTL {
		return Values{}, false
	}
	if ser.unsupported != "" {
		return Values{Unsupported: ser.unsupported}, false
	}
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
