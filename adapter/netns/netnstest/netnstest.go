// Package netnstest makes network namespaces for tests that count real TCP connections: a "pod"
// (198.51.100.33, fd00:5::33) and a "peer" (198.51.100.34, fd00:5::34) joined by a veth pair,
// removed when the test ends. It needs root (the tests skip without it).
package netnstest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/netns"
)

// Net is the pair of namespaces and the connections the test holds in them.
type Net struct {
	Pod, Peer string
	conns     []net.Conn
	mu        sync.Mutex
}

// Run runs a command, failing the test with its output if it fails.
func Run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// New makes the namespaces (skipping the test without root).
func New(t testing.TB) *Net {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	id := fmt.Sprintf("%d", time.Now().UnixNano()%1000000)
	n := &Net{Pod: "osa-test-pod-" + id, Peer: "osa-test-peer-" + id}
	t.Cleanup(func() {
		n.CloseAll()
		_ = exec.Command("ip", "netns", "del", n.Pod).Run()
		_ = exec.Command("ip", "netns", "del", n.Peer).Run()
	})
	veth := "osat" + id
	for _, step := range [][]string{
		{"ip", "netns", "add", n.Pod}, {"ip", "netns", "add", n.Peer},
		{"ip", "link", "add", veth + "a", "netns", n.Pod, "type", "veth", "peer", "name", veth + "b", "netns", n.Peer},
		{"ip", "-n", n.Pod, "addr", "add", "198.51.100.33/24", "dev", veth + "a"},
		{"ip", "-n", n.Peer, "addr", "add", "198.51.100.34/24", "dev", veth + "b"},
		{"ip", "-n", n.Pod, "addr", "add", "fd00:5::33/64", "dev", veth + "a", "nodad"},
		{"ip", "-n", n.Peer, "addr", "add", "fd00:5::34/64", "dev", veth + "b", "nodad"},
		{"ip", "-n", n.Pod, "link", "set", veth + "a", "up"}, {"ip", "-n", n.Peer, "link", "set", veth + "b", "up"},
		{"ip", "-n", n.Pod, "link", "set", "lo", "up"}, {"ip", "-n", n.Peer, "link", "set", "lo", "up"},
	} {
		Run(t, step...)
	}
	return n
}

// Path is the bind mount of a namespace `ip netns` made.
func Path(name string) string { return "/run/netns/" + name }

// Hold starts a process that sleeps in the namespace until the test ends and returns its PID.
func Hold(t testing.TB, ns string) int {
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

// Listen opens a listener inside the namespace and accepts (and holds) every connection; it is
// returned for a test that closes it early.
func (n *Net) Listen(t testing.TB, ns, network, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	if err := netns.Do(Path(ns), 0, func() (err error) { l, err = net.Listen(network, addr); return err }); err != nil {
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
	return l
}

// Dial opens count connections from inside the namespace and returns them (held until the test
// ends or CloseAll).
func (n *Net) Dial(t testing.TB, ns, addr string, count int) []net.Conn {
	t.Helper()
	var out []net.Conn
	for i := 0; i < count; i++ {
		var c net.Conn
		if err := netns.Do(Path(ns), 0, func() (err error) { c, err = net.Dial("tcp", addr); return err }); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	n.mu.Lock()
	n.conns = append(n.conns, out...)
	n.mu.Unlock()
	return out
}

// WaitHeld waits (up to 2 s) until the test holds n connections (both ends count: the accept
// loops take the server ends asynchronously).
func (n *Net) WaitHeld(want int) {
	for i := 0; i < 200; i++ {
		n.mu.Lock()
		held := len(n.conns)
		n.mu.Unlock()
		if held >= want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// CloseAll closes every connection held, both ends.
func (n *Net) CloseAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		c.Close()
	}
	n.conns = nil
}
