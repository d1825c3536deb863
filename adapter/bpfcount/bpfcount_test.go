package bpfcount

import (
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/netns"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/netns/netnstest"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/sockdiag"
)

func load(t testing.TB, opts Options) *Program {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
	p, err := Load(opts)
	if err != nil {
		t.Fatalf("loading the BPF counter: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func inode(t testing.TB, ns string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(netnstest.Path(ns), &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

func diag(t testing.TB, ns string, opts sockdiag.Options) sockdiag.Counts {
	t.Helper()
	fd, err := netns.DiagSocket(netnstest.Path(ns), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	c, err := sockdiag.NewCounter(opts).Count(fd)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func events(t testing.TB, p *Program, ino uint32) *Events {
	t.Helper()
	all, err := p.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return all[ino]
}

// same fails the test unless the tracker's counts are sock_diag's.
func same(t *testing.T, what string, got Counts, want sockdiag.Counts) {
	t.Helper()
	if got.Inbound != want.Inbound || got.Outbound != want.Outbound || fmt.Sprint(got.InboundByPort) != fmt.Sprint(want.InboundByPort) {
		t.Errorf("%s: events say inbound %d %v, outbound %d; sock_diag says inbound %d %v, outbound %d", what,
			got.Inbound, got.InboundByPort, got.Outbound, want.Inbound, want.InboundByPort, want.Outbound)
	}
}

// Connections and listeners that existed before the program was loaded are counted once with
// sock_diag; from then on events alone keep the counts, and at rest they equal sock_diag's:
// IPv4 and IPv6, per port, dual-stack listeners, loopback peers left out (or counted, as
// configured), old and new connections closing, a listener opening and one closing.
func TestEventsKeepSockDiagsCounts(t *testing.T) {
	n := netnstest.New(t)
	n.Listen(t, n.Pod, "tcp4", "0.0.0.0:8080") // IPv4 only
	n.Listen(t, n.Pod, "tcp", ":9090")         // dual stack
	n.Listen(t, n.Pod, "tcp6", "[::]:7070")    // IPv6 only
	n.Listen(t, n.Peer, "tcp", ":5432")        // what the pod calls out to
	oldIn := n.Dial(t, n.Peer, "198.51.100.33:8080", 4)
	n.Dial(t, n.Peer, "[fd00:5::33]:9090", 2)
	oldIn7070 := n.Dial(t, n.Peer, "[fd00:5::33]:7070", 3)
	oldOut := n.Dial(t, n.Pod, "198.51.100.34:5432", 5)
	n.Dial(t, n.Pod, "127.0.0.1:8080", 2) // loopback peers
	n.WaitHeld(4 + 2 + 3 + 5 + 2 + 4 + 2 + 3 + 5 + 2)
	time.Sleep(50 * time.Millisecond)

	// The program comes after them (as when the agent starts on a busy node).
	p := load(t, Options{})
	withLoopback := load(t, Options{IncludeLoopbackPeers: true})
	ino := inode(t, n.Pod)
	tr, trAll := NewTracker(), NewTracker()
	tr.Seed(ino, diag(t, n.Pod, sockdiag.Options{}), events(t, p, ino))
	trAll.Seed(ino, diag(t, n.Pod, sockdiag.Options{IncludeLoopbackPeers: true}), events(t, withLoopback, ino))
	check := func(what string) {
		t.Helper()
		time.Sleep(100 * time.Millisecond) // let the closes reach their states
		got, ok := tr.Counts(ino, events(t, p, ino))
		if !ok {
			t.Fatal("namespace not seeded")
		}
		same(t, what, got, diag(t, n.Pod, sockdiag.Options{}))
		gotAll, _ := trAll.Counts(ino, events(t, withLoopback, ino))
		same(t, what+" (loopback peers counted)", gotAll, diag(t, n.Pod, sockdiag.Options{IncludeLoopbackPeers: true}))
	}
	check("at the seed")

	// New connections of every kind, now seen by events.
	newIn := n.Dial(t, n.Peer, "198.51.100.33:9090", 3)
	n.Dial(t, n.Peer, "[fd00:5::33]:8080", 0)
	n.Dial(t, n.Peer, "[fd00:5::33]:7070", 2)
	newOut := n.Dial(t, n.Pod, "[fd00:5::34]:5432", 4)
	n.Dial(t, n.Pod, "[::1]:9090", 3)
	check("after new connections")

	// Old and new ones close, from either side.
	for _, c := range append(append(oldIn[:2], newIn[:1]...), append(oldOut[:3], newOut[:2]...)...) {
		c.Close()
	}
	check("after closing old and new connections")

	// A listener opens; the old connections of another port close.
	n.Listen(t, n.Pod, "tcp4", "0.0.0.0:6060")
	n.Listen(t, n.Pod, "tcp6", "[::]:6061")
	in6060 := n.Dial(t, n.Peer, "198.51.100.33:6060", 2)
	for _, c := range oldIn7070 {
		c.Close()
	}
	check("after a new listener")

	// Every connection of the new port closes: it is still listed, at 0.
	for _, c := range in6060 {
		c.Close()
	}
	check("after a port's connections all closed")

	// A listener closes while its connections stay (a server draining): sock_diag then counts
	// them as outbound, and so do events.
	l5555 := n.Listen(t, n.Pod, "tcp4", "0.0.0.0:5555")
	n.Dial(t, n.Peer, "198.51.100.33:5555", 3)
	check("with a new port's connections")
	l5555.Close()
	check("after its listener closed, its connections open")

	// A listener on a port the kernel chose (bound to :0) closes: the port stops listening.
	auto := n.Listen(t, n.Pod, "tcp4", "0.0.0.0:0")
	check("with a listener on a port the kernel chose")
	auto.Close()
	check("after it closed")

	acc, _ := tr.Counts(ino, events(t, p, ino))
	if acc.AcceptedByPort[9090] != 3 || acc.AcceptedByPort[7070] != 2 || acc.AcceptedByPort[6060] != 2 {
		t.Errorf("accepted since the seed %v, want 9090:3 7070:2 6060:2", acc.AcceptedByPort)
	}
}

// A namespace made after the program was loaded needs no sock_diag count: empty events are its
// state (seeded with zeros), and IPv6 connections in it are counted like IPv4 ones.
func TestANamespaceBornUnderTheProgram(t *testing.T) {
	p := load(t, Options{})
	n := netnstest.New(t)
	ino := inode(t, n.Pod)
	tr := NewTracker()
	tr.Seed(ino, sockdiag.Counts{}, events(t, p, ino))
	n.Listen(t, n.Pod, "tcp6", "[::]:443")
	n.Dial(t, n.Peer, "[fd00:5::33]:443", 7)
	n.WaitHeld(14)
	time.Sleep(50 * time.Millisecond)
	got, _ := tr.Counts(ino, events(t, p, ino))
	same(t, "new namespace", got, diag(t, n.Pod, sockdiag.Options{}))
	if got.InboundByPort[443] != 7 {
		t.Errorf("inbound on 443 = %d, want 7", got.InboundByPort[443])
	}
}

// A namespace that is gone is forgotten: its entries leave the maps (they would fill them as
// pods come and go, and its inode may be reused).
func TestForgetDeletesANamespacesEntries(t *testing.T) {
	p := load(t, Options{})
	n := netnstest.New(t)
	ino := inode(t, n.Pod)
	n.Listen(t, n.Pod, "tcp4", "0.0.0.0:8080")
	n.Dial(t, n.Peer, "198.51.100.33:8080", 3)
	n.WaitHeld(6)
	time.Sleep(50 * time.Millisecond)
	if ev := events(t, p, ino); ev == nil || ev.InboundByPort[8080] != 3 || ev.ListenersByPort[8080] != 1 {
		t.Fatalf("events before: %+v", ev)
	}
	if err := p.Forget(ino); err != nil {
		t.Fatal(err)
	}
	if ev := events(t, p, ino); ev != nil {
		t.Errorf("events after Forget: %+v", ev)
	}
	if ev := events(t, p, inode(t, n.Peer)); ev == nil || ev.Outbound != 3 {
		t.Errorf("the peer's events went too: %+v", ev)
	}
}

// Changes moves with every event of the namespace and only then: read before and after a
// sock_diag count, it tells whether the two can be compared.
func TestChangesMoveWithTheNamespacesEvents(t *testing.T) {
	p := load(t, Options{})
	n := netnstest.New(t)
	ino, peer := inode(t, n.Pod), inode(t, n.Peer)
	n.Listen(t, n.Pod, "tcp4", "0.0.0.0:8080")
	before, err := p.Changes(ino)
	if err != nil || before == 0 {
		t.Fatalf("changes after a listener opened: %d, %v", before, err)
	}
	peerBefore, _ := p.Changes(peer)
	n.Dial(t, n.Peer, "198.51.100.33:8080", 1)
	n.WaitHeld(2)
	time.Sleep(50 * time.Millisecond)
	after, _ := p.Changes(ino)
	peerAfter, _ := p.Changes(peer)
	if after == before || peerAfter == peerBefore {
		t.Errorf("a connection between the two did not move their changes: pod %d → %d, peer %d → %d", before, after, peerBefore, peerAfter)
	}
	if again, _ := p.Changes(ino); again != after {
		t.Errorf("changes moved at rest: %d → %d", after, again)
	}
	if ev := events(t, p, ino); ev.Changes != after {
		t.Errorf("snapshot's changes %d, lookup's %d", ev.Changes, after)
	}
}
