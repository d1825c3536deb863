// Package sockdiag counts a network namespace's TCP connections with NETLINK_SOCK_DIAG
// (inet_diag): one dump of LISTEN, ESTABLISHED and SYN_RECV sockets, parsed in place from a
// reused buffer with no allocation per socket. Inbound connections are ESTABLISHED sockets whose
// local port is a LISTEN port of the same namespace (IPv4 and IPv6 together: dual-stack
// listeners see IPv4 clients as v4-mapped IPv6 sockets); the rest are outbound.
package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Kernel constants (linux/inet_diag.h, linux/sock_diag.h, include/net/tcp_states.h).
const (
	tcpdiagGetsock    = 18 // legacy request: one walk of the TCP tables for IPv4 and IPv6
	sockDiagByFamily  = 20 // v2 request, one per address family
	stateEstablished  = 1
	stateSynRecv      = 3
	stateListen       = 10
	wantedStates      = 1<<stateEstablished | 1<<stateSynRecv | 1<<stateListen
	nlmsgHdrLen       = 16
	inetDiagMsgLen    = 72
	legacyReqLen      = 60
	v2ReqLen          = 56
	nlmDumpIntrupted  = 0x10
	nlmsgError        = 2
	nlmsgDone         = 3
	maxPort           = 1 << 16
	defaultBufferSize = 256 << 10
)

// Counts are one namespace's TCP connections.
type Counts struct {
	// Inbound is the number of ESTABLISHED connections whose local port is listening.
	Inbound int
	// InboundByPort splits Inbound by listening port.
	InboundByPort map[uint16]int
	// Outbound is the number of other ESTABLISHED connections.
	Outbound int
	// SynRecv is the number of handshakes waiting to complete (the accept backlog's first half).
	SynRecv int
	// Listening ports (IPv4 and IPv6 merged).
	Listening []uint16
	// ListenersByPort is the number of LISTEN sockets on each port (an IPv4 and an IPv6
	// listener, or SO_REUSEPORT groups, make more than one).
	ListenersByPort map[uint16]int
}

// Options change what is counted.
type Options struct {
	// IncludeLoopbackPeers counts connections whose peer is 127.0.0.0/8 or ::1; by default they
	// are left out (a mesh sidecar in the pod would otherwise double every connection).
	IncludeLoopbackPeers bool
}

// Counter holds the buffers one worker reuses for every namespace.
type Counter struct {
	Options Options
	buf     []byte
	byPort  [maxPort]uint32
	touched []uint16
	listen  [maxPort / 64]uint64
	lports  []uint16
	// listeners holds the port of every LISTEN socket, repeats included.
	listeners []uint16
	synRecv   int
	// legacyUnsupported is set once the kernel refuses the single-walk request.
	legacyUnsupported bool
}

// NewCounter makes a counter with its buffers.
func NewCounter(opts Options) *Counter {
	return &Counter{Options: opts, buf: make([]byte, defaultBufferSize), touched: make([]uint16, 0, 1024)}
}

// ErrInterrupted means the socket tables changed during the dump (NLM_F_DUMP_INTR) twice in a row.
var ErrInterrupted = errors.New("sock_diag dump interrupted twice by concurrent changes")

// Count dumps the TCP sockets visible through fd, a NETLINK_SOCK_DIAG socket created in the
// namespace to count (see package netns). The fd is not closed.
func (c *Counter) Count(fd int) (Counts, error) {
	for attempt := 0; attempt < 2; attempt++ {
		c.reset()
		var interrupted bool
		var err error
		if !c.legacyUnsupported {
			interrupted, err = c.dump(fd, c.legacyRequest())
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOENT) {
				c.legacyUnsupported = true
				c.reset()
			} else if err != nil {
				return Counts{}, err
			}
		}
		if c.legacyUnsupported {
			for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
				intr, err := c.dump(fd, c.v2Request(family))
				if err != nil {
					return Counts{}, err
				}
				interrupted = interrupted || intr
			}
		}
		if !interrupted {
			return c.result(), nil
		}
	}
	return Counts{}, ErrInterrupted
}

func (c *Counter) reset() {
	for _, p := range c.touched {
		c.byPort[p] = 0
	}
	c.touched = c.touched[:0]
	c.synRecv = 0
	for _, p := range c.lports {
		c.listen[p/64] = 0
	}
	c.lports = c.lports[:0]
	c.listeners = c.listeners[:0]
}

var seq uint32

func header(b []byte, msgType uint16, length int) {
	seq++
	binary.NativeEndian.PutUint32(b[0:], uint32(length))
	binary.NativeEndian.PutUint16(b[4:], msgType)
	binary.NativeEndian.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(b[8:], seq)
	binary.NativeEndian.PutUint32(b[12:], 0)
}

// legacyRequest: struct inet_diag_req { family, src_len, dst_len, ext; sockid (48); states; dbs }.
func (c *Counter) legacyRequest() []byte {
	b := make([]byte, nlmsgHdrLen+legacyReqLen)
	header(b, tcpdiagGetsock, len(b))
	b[nlmsgHdrLen] = unix.AF_INET // ignored: the kernel dumps both families in one walk
	binary.NativeEndian.PutUint32(b[nlmsgHdrLen+4+48:], wantedStates)
	return b
}

// v2Request: struct inet_diag_req_v2 { family, protocol, ext, pad; states; sockid (48) }.
func (c *Counter) v2Request(family uint8) []byte {
	b := make([]byte, nlmsgHdrLen+v2ReqLen)
	header(b, sockDiagByFamily, len(b))
	b[nlmsgHdrLen] = family
	b[nlmsgHdrLen+1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[nlmsgHdrLen+4:], wantedStates)
	return b
}

// dump sends one request and tallies every socket of the reply.
func (c *Counter) dump(fd int, req []byte) (interrupted bool, err error) {
	sa := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	if err := unix.Sendto(fd, req, 0, sa); err != nil {
		return false, fmt.Errorf("sock_diag request: %w", err)
	}
	for {
		n, err := unix.Read(fd, c.buf)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return interrupted, fmt.Errorf("sock_diag read: %w", err)
		}
		for off := 0; off+nlmsgHdrLen <= n; {
			length := int(binary.NativeEndian.Uint32(c.buf[off:]))
			msgType := binary.NativeEndian.Uint16(c.buf[off+4:])
			flags := binary.NativeEndian.Uint16(c.buf[off+6:])
			if length < nlmsgHdrLen || off+length > n {
				return interrupted, fmt.Errorf("sock_diag: malformed message (length %d at %d of %d)", length, off, n)
			}
			if flags&nlmDumpIntrupted != 0 {
				interrupted = true
			}
			switch msgType {
			case nlmsgDone:
				return interrupted, nil
			case nlmsgError:
				if length >= nlmsgHdrLen+4 {
					if errno := -int32(binary.NativeEndian.Uint32(c.buf[off+nlmsgHdrLen:])); errno != 0 {
						return interrupted, syscall.Errno(errno)
					}
				}
				return interrupted, nil
			default:
				if length >= nlmsgHdrLen+inetDiagMsgLen {
					c.tally(c.buf[off+nlmsgHdrLen : off+length])
				}
			}
			off += (length + 3) &^ 3
		}
	}
}

// tally reads one struct inet_diag_msg: family, state, timer, retrans, then the socket id
// (sport, dport big-endian; src[16]; dst[16]; …).
func (c *Counter) tally(m []byte) {
	family, state := m[0], m[1]
	sport := uint16(m[4])<<8 | uint16(m[5])
	if state == stateListen {
		c.listeners = append(c.listeners, sport)
		if c.listen[sport/64]&(1<<(sport%64)) == 0 {
			c.listen[sport/64] |= 1 << (sport % 64)
			c.lports = append(c.lports, sport)
		}
		return
	}
	if !c.Options.IncludeLoopbackPeers && loopback(family, m[24:40]) {
		return
	}
	switch state {
	case stateSynRecv:
		c.synRecv++
	case stateEstablished:
		if c.byPort[sport] == 0 {
			c.touched = append(c.touched, sport)
		}
		c.byPort[sport]++
	}
}

func loopback(family uint8, dst []byte) bool {
	switch family {
	case unix.AF_INET:
		return dst[0] == 127
	case unix.AF_INET6:
		for i := 0; i < 10; i++ {
			if dst[i] != 0 {
				return false
			}
		}
		if dst[10] == 0xff && dst[11] == 0xff { // v4-mapped
			return dst[12] == 127
		}
		if dst[10] != 0 || dst[11] != 0 || dst[12] != 0 || dst[13] != 0 || dst[14] != 0 {
			return false
		}
		return dst[15] == 1 // ::1
	}
	return false
}

func (c *Counter) result() Counts {
	out := Counts{InboundByPort: map[uint16]int{}, Listening: append([]uint16(nil), c.lports...), SynRecv: c.synRecv,
		ListenersByPort: make(map[uint16]int, len(c.lports))}
	for _, p := range c.listeners {
		out.ListenersByPort[p]++
	}
	for _, p := range c.touched {
		estab := int(c.byPort[p])
		if c.listen[p/64]&(1<<(p%64)) != 0 {
			out.Inbound += estab
			out.InboundByPort[p] += estab
		} else {
			out.Outbound += estab
		}
	}
	for _, p := range c.lports {
		if _, ok := out.InboundByPort[p]; !ok {
			out.InboundByPort[p] = 0
		}
	}
	return out
}
