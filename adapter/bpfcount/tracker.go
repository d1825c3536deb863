package bpfcount

import (
	"sync"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/sockdiag"
)

// Counts are a namespace's connections as Tracker derives them; the fields mean what
// sockdiag.Counts' do (SynRecv excepted: events do not see half-open handshakes).
type Counts struct {
	Inbound       int
	InboundByPort map[uint16]int
	Outbound      int
	// AcceptedByPort counts connections accepted on each port since the namespace was seeded.
	AcceptedByPort map[uint16]uint64
}

// Tracker keeps, per namespace, what sock_diag counted when the namespace was first seen (the
// connections and listeners that existed before the program saw them) and derives the
// namespace's counts from the program's events.
type Tracker struct {
	mu    sync.Mutex
	seeds map[uint32]*seed
}

// seed is a namespace's state at its first sock_diag count, less what the program had already
// seen of it then.
type seed struct {
	inByPort  map[uint16]int64 // untracked inbound connections
	out       int64            // untracked outbound connections
	listeners map[uint16]int64 // untracked listening sockets
	gone      map[uint16]int64 // the program's departures of untracked sockets until then
	accepted  map[uint16]uint64
}

// NewTracker makes an empty tracker.
func NewTracker() *Tracker { return &Tracker{seeds: map[uint32]*seed{}} }

// Seeded reports whether the namespace has been counted with sock_diag.
func (t *Tracker) Seeded(ino uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seeds[ino] != nil
}

// Seed records a namespace's sock_diag count d against ev, its events at the moment of the dump
// (nil: none yet; see Program.Changes for knowing they did not move during it). Afterwards,
// Counts(ino, ev) is d.
func (t *Tracker) Seed(ino uint32, d sockdiag.Counts, ev *Events) {
	if ev == nil {
		ev = &Events{}
	}
	s := &seed{inByPort: map[uint16]int64{}, listeners: map[uint16]int64{}, gone: map[uint16]int64{}, accepted: map[uint16]uint64{}}
	// sock_diag's inbound ports are the listening ones; connections the program saw accepted on
	// a port no longer listening are outbound to sock_diag, as they are in Counts.
	s.out = int64(d.Outbound) - ev.Outbound
	for p, n := range d.InboundByPort {
		s.inByPort[p] = int64(n) - ev.InboundByPort[p]
	}
	for p, n := range ev.InboundByPort {
		if _, listening := d.InboundByPort[p]; !listening {
			s.out -= n
		}
	}
	for p, n := range d.ListenersByPort {
		s.listeners[p] = int64(n) - ev.ListenersByPort[p]
	}
	for p, n := range ev.ListenersByPort {
		if _, ok := d.ListenersByPort[p]; !ok {
			s.listeners[p] = -n
		}
	}
	for p, n := range ev.GoneByPort {
		s.gone[p] = n
	}
	for p, n := range ev.AcceptedByPort {
		s.accepted[p] = n
	}
	t.mu.Lock()
	t.seeds[ino] = s
	t.mu.Unlock()
}

// Forget drops a namespace that is gone.
func (t *Tracker) Forget(ino uint32) {
	t.mu.Lock()
	delete(t.seeds, ino)
	t.mu.Unlock()
}

// Counts derives a namespace's counts from its events (nil: none since it was seeded); false
// when it was never seeded. As sock_diag counts them, inbound connections are those on a port
// that is listening now (accepted there, or older than the seed and on a port listening then);
// the rest are outbound.
func (t *Tracker) Counts(ino uint32, ev *Events) (Counts, bool) {
	t.mu.Lock()
	s := t.seeds[ino]
	t.mu.Unlock()
	if s == nil {
		return Counts{}, false
	}
	if ev == nil {
		ev = &Events{}
	}
	in := map[uint16]int64{}
	for p, n := range s.inByPort {
		in[p] += n
	}
	for p, n := range ev.InboundByPort {
		in[p] += n
	}
	out := s.out + ev.Outbound
	for p, n := range ev.GoneByPort {
		g := n - s.gone[p]
		if g == 0 {
			continue
		}
		if _, wasInbound := s.inByPort[p]; wasInbound {
			in[p] -= g
		} else {
			out -= g
		}
	}
	listening := map[uint16]bool{}
	for p, n := range s.listeners {
		listening[p] = n+ev.ListenersByPort[p] > 0
	}
	for p, n := range ev.ListenersByPort {
		if _, ok := s.listeners[p]; !ok {
			listening[p] = n > 0
		}
	}
	c := Counts{InboundByPort: map[uint16]int{}, AcceptedByPort: map[uint16]uint64{}}
	for p, n := range in {
		if !listening[p] {
			out += n
			continue
		}
		c.InboundByPort[p] = int(max(n, 0))
		c.Inbound += int(max(n, 0))
	}
	for p, l := range listening {
		if _, ok := c.InboundByPort[p]; !ok && l {
			c.InboundByPort[p] = 0
		}
	}
	c.Outbound = int(max(out, 0))
	for p, n := range ev.AcceptedByPort {
		c.AcceptedByPort[p] = n - s.accepted[p]
	}
	return c, true
}
