// Package bpfcount counts each network namespace's TCP connections from kernel events instead of
// walking the socket tables: a BPF program on the inet_sock_set_state tracepoint (tp_btf) keeps,
// per namespace (its inode, as /proc/<pid>/ns/net shows it), the ESTABLISHED connections accepted
// on each local port (inbound) and the others (outbound), with how many were opened. A socket's
// direction is kept in socket-local storage from the moment it is established, so its departure
// is taken off the same count. A read costs one walk of two small maps, whatever the number of
// sockets on the node.
//
// Connections established before the program was attached carry no storage: Tracker counts them
// once with sock_diag when it first sees a namespace and takes their departures (which the
// program counts apart, by local port) off that count.
package bpfcount

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// Directions, as the program stores them.
const (
	dirIn      = 1
	dirOut     = 2
	dirListen  = 3
	dirChanges = 4
)

// Options change what is counted.
type Options struct {
	// IncludeLoopbackPeers counts connections whose peer is 127.0.0.0/8 or ::1 (left out by
	// default, as sock_diag's counter does).
	IncludeLoopbackPeers bool
}

// Program is the loaded and attached BPF program and its maps.
type Program struct {
	objs counterObjects
	link link.Link
}

// Load loads the program and attaches it to inet_sock_set_state. It fails on kernels without
// BTF, tp_btf or socket-local storage for tracing programs (before 5.11), or without the
// capabilities to load it (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN).
func Load(opts Options) (*Program, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("memlock limit: %w", err)
	}
	spec, err := loadCounter()
	if err != nil {
		return nil, err
	}
	if opts.IncludeLoopbackPeers {
		if err := spec.Variables["include_loopback_peers"].Set(uint8(1)); err != nil {
			return nil, err
		}
	}
	p := &Program{}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("loading the BPF program: %+v", verr)
		}
		return nil, fmt.Errorf("loading the BPF program: %w", err)
	}
	p.link, err = link.AttachTracing(link.TracingOptions{Program: p.objs.InetSockSetState, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		p.objs.Close()
		return nil, fmt.Errorf("attaching to inet_sock_set_state: %w", err)
	}
	return p, nil
}

// Close detaches the program and frees its maps.
func (p *Program) Close() error {
	return errors.Join(p.link.Close(), p.objs.Close())
}

// Events are one namespace's counts as the program has them.
type Events struct {
	// InboundByPort: connections established by accepting on the port, minus those gone.
	InboundByPort map[uint16]int64
	// AcceptedByPort: connections accepted on the port since the program was attached.
	AcceptedByPort map[uint16]uint64
	// Outbound: other connections established, minus those gone.
	Outbound int64
	// ListenersByPort: sockets that started listening on the port, minus those that stopped.
	ListenersByPort map[uint16]int64
	// Changes counts every event recorded for the namespace (see Program.Changes).
	Changes uint64
	// GoneByPort: departures, by local port, of connections established before the program
	// was attached (whose direction it does not know).
	GoneByPort map[uint16]int64
}

// Snapshot reads every namespace's events: two map walks.
func (p *Program) Snapshot() (map[uint32]*Events, error) {
	out := map[uint32]*Events{}
	get := func(ino uint32) *Events {
		e := out[ino]
		if e == nil {
			e = &Events{InboundByPort: map[uint16]int64{}, AcceptedByPort: map[uint16]uint64{}, GoneByPort: map[uint16]int64{},
				ListenersByPort: map[uint16]int64{}}
			out[ino] = e
		}
		return e
	}
	var k counterKey
	var v counterValue
	it := p.objs.Counts.Iterate()
	for it.Next(&k, &v) {
		est, opened := v.Established, v.Opened
		e := get(k.Netns)
		switch k.Dir {
		case dirIn:
			e.InboundByPort[k.Port] += est
			e.AcceptedByPort[k.Port] += opened
		case dirOut:
			e.Outbound += est
		case dirListen:
			e.ListenersByPort[k.Port] += est
		case dirChanges:
			e.Changes = opened
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading counts: %w", err)
	}
	var gone int64
	it = p.objs.Gone.Iterate()
	for it.Next(&k, &gone) {
		get(k.Netns).GoneByPort[k.Port] += gone
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading departures: %w", err)
	}
	return out, nil
}

// Forget deletes a namespace's entries (the namespace is gone; its inode may be reused).
func (p *Program) Forget(ino uint32) error {
	var errs []error
	for _, m := range []*ebpf.Map{p.objs.Counts, p.objs.Gone} {
		var keys []counterKey
		var prev, k counterKey
		var from any // nil: the first key
		for {
			err := m.NextKey(from, &k)
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				break
			}
			if err != nil {
				errs = append(errs, err)
				break
			}
			if k.Netns == ino {
				keys = append(keys, k)
			}
			prev = k
			from = &prev
		}
		for _, k := range keys {
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Lost is the number of events the program could not record because a map was full (their
// connections are miscounted until the next sock_diag check).
func (p *Program) Lost() (uint64, error) {
	var n uint64
	err := p.objs.Lost.Lookup(uint32(0), &n)
	return n, err
}

// Changes reads one namespace's count of recorded events (one map lookup): equal before and after
// a sock_diag count, nothing the program records happened in the namespace in between.
func (p *Program) Changes(ino uint32) (uint64, error) {
	var v counterValue
	err := p.objs.Counts.Lookup(counterKey{Netns: ino, Dir: dirChanges}, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, nil
	}
	return v.Opened, err
}
