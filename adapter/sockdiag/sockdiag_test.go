package sockdiag

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/netns"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/netns/netnstest"
)

type testNet = netnstest.Net

var (
	newTestNet  = netnstest.New
	nsPath      = netnstest.Path
	inNamespace = netnstest.Hold
	run         = netnstest.Run
)

func count(t *testing.T, ns string, opts Options) Counts {
	t.Helper()
	fd, err := netns.DiagSocket(nsPath(ns), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	c, err := NewCounter(opts).Count(fd)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCountsInboundOutboundPerPortAndLoopback(t *testing.T) {
	n := newTestNet(t)
	n.Listen(t, n.Pod, "tcp4", "0.0.0.0:8080") // IPv4 only
	n.Listen(t, n.Pod, "tcp", ":9090")         // dual stack: IPv4 clients appear in the IPv6 table
	n.Listen(t, n.Pod, "tcp6", "[::]:7070")    // IPv6 only
	n.Listen(t, n.Peer, "tcp", ":5432")        // something the pod calls out to
	n.Dial(t, n.Peer, "198.51.100.33:8080", 5)
	n.Dial(t, n.Peer, "198.51.100.33:9090", 3)
	n.Dial(t, n.Peer, "[fd00:5::33]:9090", 2)
	n.Dial(t, n.Peer, "[fd00:5::33]:7070", 4)
	n.Dial(t, n.Pod, "198.51.100.34:5432", 6) // outbound
	n.Dial(t, n.Pod, "127.0.0.1:8080", 7)     // loopback: a sidecar's own connections
	n.Dial(t, n.Pod, "[::1]:9090", 1)         // loopback over IPv6
	time.Sleep(100 * time.Millisecond)        // let the accept loops take them

	got := count(t, n.Pod, Options{})
	want := map[uint16]int{8080: 5, 9090: 5, 7070: 4}
	if got.Inbound != 14 || got.Outbound != 6 || fmt.Sprint(got.InboundByPort) != fmt.Sprint(want) {
		t.Errorf("without loopback peers: inbound %d (%v), outbound %d; want 14 (%v), 6", got.Inbound, got.InboundByPort, got.Outbound, want)
	}
	if len(got.Listening) != 3 {
		t.Errorf("listening ports = %v, want 8080, 9090, 7070", got.Listening)
	}
	// One socket each: 8080 IPv4 only, 9090 dual-stack (one IPv6 socket), 7070 IPv6 only.
	if fmt.Sprint(got.ListenersByPort) != fmt.Sprint(map[uint16]int{8080: 1, 9090: 1, 7070: 1}) {
		t.Errorf("listeners by port = %v", got.ListenersByPort)
	}
	// With loopback peers, both ends of each loopback connection are in the namespace: the
	// server side is inbound, the client side outbound.
	all := count(t, n.Pod, Options{IncludeLoopbackPeers: true})
	if all.Inbound != 22 || all.Outbound != 14 || all.InboundByPort[8080] != 12 || all.InboundByPort[9090] != 6 {
		t.Errorf("with loopback peers: inbound %d (%v), outbound %d; want 22 (8080:12, 9090:6), 14", all.Inbound, all.InboundByPort, all.Outbound)
	}
	// The peer namespace sees its own side only.
	peer := count(t, n.Peer, Options{})
	if peer.Inbound != 6 || peer.Outbound != 14 {
		t.Errorf("peer: inbound %d, outbound %d; want 6, 14", peer.Inbound, peer.Outbound)
	}
}

func TestCountAfterConnectionsCloseAndV2Fallback(t *testing.T) {
	n := newTestNet(t)
	n.Listen(t, n.Pod, "tcp", ":8080")
	n.Dial(t, n.Peer, "198.51.100.33:8080", 3)
	time.Sleep(50 * time.Millisecond)
	fd, err := netns.DiagSocket(nsPath(n.Pod), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	c := NewCounter(Options{})
	first, err := c.Count(fd)
	if err != nil || first.Inbound != 3 {
		t.Fatalf("count = %+v, %v; want 3 inbound", first, err)
	}
	// The per-family requests (used when a kernel lacks the single-walk one) agree.
	c.legacyUnsupported = true
	v2, err := c.Count(fd)
	if err != nil || v2.Inbound != 3 || v2.InboundByPort[8080] != 3 {
		t.Fatalf("v2 count = %+v, %v; want 3 inbound on 8080", v2, err)
	}
	n.CloseAll()
	time.Sleep(50 * time.Millisecond)
	after, err := c.Count(fd)
	if err != nil || after.Inbound != 0 || after.InboundByPort[8080] != 0 {
		t.Errorf("after closing: %+v, %v; want 0 inbound, port 8080 still listed", after, err)
	}
}

// Handshakes whose last ACK never arrives stay SYN_RECV on the server: the peer's ACK-only
// packets to the port are dropped by an nftables rule in the peer namespace.
func TestCountsSynRecv(t *testing.T) {
	n := newTestNet(t)
	n.Listen(t, n.Pod, "tcp4", "0.0.0.0:7777")
	n.Listen(t, n.Pod, "tcp4", "0.0.0.0:8080")
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("OSA_REQUIRE_TOOLS") == "1" {
			t.Fatal("nft not found: install Debian's nftables (make deps)")
		}
		t.Skip("nft not installed (make deps installs nftables)")
	}
	run(t, "ip", "netns", "exec", n.Peer, "nft", "add table inet osa; add chain inet osa out { type filter hook output priority 0 ; } ; "+
		"add rule inet osa out tcp dport 7777 tcp flags == ack drop")
	n.Dial(t, n.Peer, "198.51.100.33:7777", 3) // the client thinks it is connected; the server never hears the ACK
	n.Dial(t, n.Peer, "198.51.100.33:8080", 2) // complete handshakes on another port
	time.Sleep(100 * time.Millisecond)
	got := count(t, n.Pod, Options{})
	if got.SynRecv != 3 || got.Inbound != 2 || got.InboundByPort[7777] != 0 {
		t.Errorf("counts = %+v; want 3 SYN_RECV, 2 inbound (8080), none established on 7777", got)
	}
}

// A scrape survives the pod going away under it: a socket made in the namespace keeps the
// namespace alive until it is closed; a namespace entered by a PID that is gone (or reused by
// another namespace) is refused, not mistaken.
func TestScrapeWhileProcessesAndNamespacesGo(t *testing.T) {
	n := newTestNet(t)
	n.Listen(t, n.Pod, "tcp4", "0.0.0.0:8080")
	n.Dial(t, n.Peer, "198.51.100.33:8080", 2)
	time.Sleep(50 * time.Millisecond)
	pid := inNamespace(t, n.Pod)
	ino, err := netns.Inode(pid)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := netns.DiagSocket(netns.ProcPath(pid), ino)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// The process exits and the namespace's name is removed mid-scrape: the count still completes.
	_ = syscall.Kill(pid, syscall.SIGKILL)
	run(t, "ip", "netns", "del", n.Pod)
	got, err := NewCounter(Options{}).Count(fd)
	if err != nil || got.Inbound != 2 {
		t.Errorf("count after the process and the name went: %+v, %v; want 2 inbound", got, err)
	}
	// Entering by the dead PID fails cleanly.
	time.Sleep(50 * time.Millisecond)
	if _, err := netns.DiagSocket(netns.ProcPath(pid), ino); err == nil {
		t.Error("entering the namespace of an exited process succeeded")
	}
	// A PID whose namespace is not the one discovery recorded (reuse) is refused.
	other := inNamespace(t, n.Peer)
	if _, err := netns.DiagSocket(netns.ProcPath(other), ino); err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("entering through a reused PID: %v; want a refusal", err)
	}
}
