package sockdiag

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/netns"
)

// testNet is a pair of network namespaces made by the test, "pod" (198.51.100.33) and "peer"
// (198.51.100.34), joined by a veth pair; both are removed when the test ends.
type testNet struct {
	pod, peer string
	conns     []net.Conn
	mu        sync.Mutex
}

func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newTestNet(t testing.TB) *testNet {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	id := fmt.Sprintf("%d", time.Now().UnixNano()%1000000)
	n := &testNet{pod: "osa-test-pod-" + id, peer: "osa-test-peer-" + id}
	t.Cleanup(func() {
		n.mu.Lock()
		for _, c := range n.conns {
			c.Close()
		}
		n.mu.Unlock()
		_ = exec.Command("ip", "netns", "del", n.pod).Run()
		_ = exec.Command("ip", "netns", "del", n.peer).Run()
	})
	veth := "osat" + id
	for _, step := range [][]string{
		{"ip", "netns", "add", n.pod}, {"ip", "netns", "add", n.peer},
		{"ip", "link", "add", veth + "a", "netns", n.pod, "type", "veth", "peer", "name", veth + "b", "netns", n.peer},
		{"ip", "-n", n.pod, "addr", "add", "198.51.100.33/24", "dev", veth + "a"},
		{"ip", "-n", n.peer, "addr", "add", "198.51.100.34/24", "dev", veth + "b"},
		{"ip", "-n", n.pod, "addr", "add", "fd00:5::33/64", "dev", veth + "a", "nodad"},
		{"ip", "-n", n.peer, "addr", "add", "fd00:5::34/64", "dev", veth + "b", "nodad"},
		{"ip", "-n", n.pod, "link", "set", veth + "a", "up"}, {"ip", "-n", n.peer, "link", "set", veth + "b", "up"},
		{"ip", "-n", n.pod, "link", "set", "lo", "up"}, {"ip", "-n", n.peer, "link", "set", "lo", "up"},
	} {
		run(t, step...)
	}
	return n
}

func nsPath(name string) string { return "/run/netns/" + name }

// inNamespace starts a process that sleeps in the namespace until the test ends.
func inNamespace(t testing.TB, ns string) int {
	cmd := exec.Command("ip", "netns", "exec", ns, "sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; i < 100; i++ { // until `ip` has entered the namespace and exec'd sleep
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)); strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cmd.Process.Pid
}

// listen opens a listener inside the namespace and accepts (and holds) every connection.
func (n *testNet) listen(t testing.TB, ns, network, addr string) {
	t.Helper()
	var l net.Listener
	if err := netns.Do(nsPath(ns), 0, func() (err error) { l, err = net.Listen(network, addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.mu.Lock()
			n.conns = append(n.conns, c)
			n.mu.Unlock()
		}
	}()
}

// dial opens count connections from inside the namespace.
func (n *testNet) dial(t testing.TB, ns, addr string, count int) {
	t.Helper()
	for i := 0; i < count; i++ {
		var c net.Conn
		if err := netns.Do(nsPath(ns), 0, func() (err error) { c, err = net.Dial("tcp", addr); return err }); err != nil {
			t.Fatal(err)
		}
		n.mu.Lock()
		n.conns = append(n.conns, c)
		n.mu.Unlock()
	}
}

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
	n.listen(t, n.pod, "tcp4", "0.0.0.0:8080") // IPv4 only
	n.listen(t, n.pod, "tcp", ":9090")         // dual stack: IPv4 clients appear in the IPv6 table
	n.listen(t, n.pod, "tcp6", "[::]:7070")    // IPv6 only
	n.listen(t, n.peer, "tcp", ":5432")        // something the pod calls out to
	n.dial(t, n.peer, "198.51.100.33:8080", 5)
	n.dial(t, n.peer, "198.51.100.33:9090", 3)
	n.dial(t, n.peer, "[fd00:5::33]:9090", 2)
	n.dial(t, n.peer, "[fd00:5::33]:7070", 4)
	n.dial(t, n.pod, "198.51.100.34:5432", 6) // outbound
	n.dial(t, n.pod, "127.0.0.1:8080", 7)     // loopback: a sidecar's own connections
	n.dial(t, n.pod, "[::1]:9090", 1)         // loopback over IPv6
	time.Sleep(100 * time.Millisecond)        // let the accept loops take them

	got := count(t, n.pod, Options{})
	want := map[uint16]int{8080: 5, 9090: 5, 7070: 4}
	if got.Inbound != 14 || got.Outbound != 6 || fmt.Sprint(got.InboundByPort) != fmt.Sprint(want) {
		t.Errorf("without loopback peers: inbound %d (%v), outbound %d; want 14 (%v), 6", got.Inbound, got.InboundByPort, got.Outbound, want)
	}
	if len(got.Listening) != 3 {
		t.Errorf("listening ports = %v, want 8080, 9090, 7070", got.Listening)
	}
	// With loopback peers, both ends of each loopback connection are in the namespace: the
	// server side is inbound, the client side outbound.
	all := count(t, n.pod, Options{IncludeLoopbackPeers: true})
	if all.Inbound != 22 || all.Outbound != 14 || all.InboundByPort[8080] != 12 || all.InboundByPort[9090] != 6 {
		t.Errorf("with loopback peers: inbound %d (%v), outbound %d; want 22 (8080:12, 9090:6), 14", all.Inbound, all.InboundByPort, all.Outbound)
	}
	// The peer namespace sees its own side only.
	peer := count(t, n.peer, Options{})
	if peer.Inbound != 6 || peer.Outbound != 14 {
		t.Errorf("peer: inbound %d, outbound %d; want 6, 14", peer.Inbound, peer.Outbound)
	}
}

func TestCountAfterConnectionsCloseAndV2Fallback(t *testing.T) {
	n := newTestNet(t)
	n.listen(t, n.pod, "tcp", ":8080")
	n.dial(t, n.peer, "198.51.100.33:8080", 3)
	time.Sleep(50 * time.Millisecond)
	fd, err := netns.DiagSocket(nsPath(n.pod), 0)
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
	n.mu.Lock()
	for _, conn := range n.conns {
		conn.Close()
	}
	n.conns = nil
	n.mu.Unlock()
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
	n.listen(t, n.pod, "tcp4", "0.0.0.0:7777")
	n.listen(t, n.pod, "tcp4", "0.0.0.0:8080")
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("OSA_REQUIRE_TOOLS") == "1" {
			t.Fatal("nft not found: install Debian's nftables (make deps)")
		}
		t.Skip("nft not installed (make deps installs nftables)")
	}
	run(t, "ip", "netns", "exec", n.peer, "nft", "add table inet osa; add chain inet osa out { type filter hook output priority 0 ; } ; "+
		"add rule inet osa out tcp dport 7777 tcp flags == ack drop")
	n.dial(t, n.peer, "198.51.100.33:7777", 3) // the client thinks it is connected; the server never hears the ACK
	n.dial(t, n.peer, "198.51.100.33:8080", 2) // complete handshakes on another port
	time.Sleep(100 * time.Millisecond)
	got := count(t, n.pod, Options{})
	if got.SynRecv != 3 || got.Inbound != 2 || got.InboundByPort[7777] != 0 {
		t.Errorf("counts = %+v; want 3 SYN_RECV, 2 inbound (8080), none established on 7777", got)
	}
}

// A scrape survives the pod going away under it: a socket made in the namespace keeps the
// namespace alive until it is closed; a namespace entered by a PID that is gone (or reused by
// another namespace) is refused, not mistaken.
func TestScrapeWhileProcessesAndNamespacesGo(t *testing.T) {
	n := newTestNet(t)
	n.listen(t, n.pod, "tcp4", "0.0.0.0:8080")
	n.dial(t, n.peer, "198.51.100.33:8080", 2)
	time.Sleep(50 * time.Millisecond)
	pid := inNamespace(t, n.pod)
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
	run(t, "ip", "netns", "del", n.pod)
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
	other := inNamespace(t, n.peer)
	if _, err := netns.DiagSocket(netns.ProcPath(other), ino); err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("entering through a reused PID: %v; want a refusal", err)
	}
}
