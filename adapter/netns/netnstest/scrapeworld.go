package netnstest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/netns"
)

// ScrapeWorld is pod namespaces, the first holding bigConns inbound connections and the
// others smallConns each, all from one client namespace standing in for off-node clients (with a
// private TCP table, so its own sockets are not walked by the pods' dumps).
type ScrapeWorld struct {
	Pods  []string // namespace names
	PIDs  []int    // a process in each
	conns []net.Conn
	names []string
}

func cmd(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func withEhash(t testing.TB, entries int, fn func()) {
	old, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_child_ehash_entries")
	if err := os.WriteFile("/proc/sys/net/ipv4/tcp_child_ehash_entries", []byte(fmt.Sprint(entries)), 0o644); err != nil {
		t.Fatalf("net.ipv4.tcp_child_ehash_entries: %v (kernel 6.1 or later needed)", err)
	}
	defer os.WriteFile("/proc/sys/net/ipv4/tcp_child_ehash_entries", old, 0o644)
	fn()
}

// NewScrapeWorld makes pods namespaces, the first with bigConns inbound connections on port
// 8080 and the others smallConns; privateEhash gives each namespace a TCP table of its own. The
// test package must have a TestScrapeBenchDialer calling DialerMain.
func NewScrapeWorld(b *testing.B, pods, smallConns, bigConns int, privateEhash bool) *ScrapeWorld {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	w := &ScrapeWorld{}
	id := fmt.Sprint(time.Now().UnixNano() % 100000)
	clients := "osa-bench-clients-" + id
	w.names = append(w.names, clients)
	b.Cleanup(func() {
		for _, c := range w.conns {
			c.Close()
		}
		for _, n := range w.names {
			_ = exec.Command("ip", "netns", "del", n).Run()
		}
	})
	withEhash(b, 65536, func() { cmd(b, "ip", "netns", "add", clients) })
	cmd(b, "ip", "-n", clients, "link", "set", "lo", "up")
	// 50,000 connections from one address to one address and port need that many source ports.
	cmd(b, "ip", "netns", "exec", clients, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535")
	cmd(b, "ip", "-n", clients, "addr", "add", "198.51.100.254/32", "dev", "lo")
	makePod := func(i int) {
		name := fmt.Sprintf("osa-bench-pod%d-%s", i, id)
		veth := fmt.Sprintf("osab%d", i)
		ip := fmt.Sprintf("198.51.100.%d", i+1)
		cmd(b, "ip", "netns", "add", name)
		w.names = append(w.names, name)
		cmd(b, "ip", "link", "add", veth+"p", "netns", name, "type", "veth", "peer", "name", veth+"c", "netns", clients)
		cmd(b, "ip", "-n", name, "link", "set", "lo", "up")
		cmd(b, "ip", "-n", name, "addr", "add", ip+"/32", "dev", veth+"p")
		cmd(b, "ip", "-n", name, "link", "set", veth+"p", "up")
		cmd(b, "ip", "-n", name, "route", "add", "default", "dev", veth+"p", "scope", "link")
		cmd(b, "ip", "-n", clients, "link", "set", veth+"c", "up")
		cmd(b, "ip", "-n", clients, "route", "add", ip+"/32", "dev", veth+"c", "src", "198.51.100.254")
		w.Pods = append(w.Pods, name)
	}
	for i := 0; i < pods; i++ {
		if privateEhash {
			size := 4096
			if i == 0 {
				size = 65536
			}
			withEhash(b, size, func() { makePod(i) })
		} else {
			withEhash(b, 0, func() { makePod(i) }) // the host's table, whatever the sysctl says now
		}
	}
	for i, pod := range w.Pods {
		// The connections are left unaccepted: ESTABLISHED in a large accept queue, they are
		// counted like accepted ones and cost this process no file descriptors.
		cmd(b, "ip", "netns", "exec", pod, "sysctl", "-qw", "net.core.somaxconn=65535")
		var l net.Listener
		if err := netns.Do("/run/netns/"+pod, 0, func() (err error) { l, err = net.Listen("tcp4", "0.0.0.0:8080"); return err }); err != nil {
			b.Fatal(err)
		}
		w.conns = append(w.conns, tcpConn{l})
		count := smallConns
		if i == 0 {
			count = bigConns
		}
		// Client sockets are held by helper processes (at most 15,000 each: the file limit here).
		for count > 0 {
			n := min(count, 15000)
			count -= n
			helper := exec.Command("ip", "netns", "exec", clients, os.Args[0], "-test.run=^TestScrapeBenchDialer$")
			helper.Env = append(os.Environ(), fmt.Sprintf("OSA_BENCH_DIAL=198.51.100.%d:8080,%d", i+1, n))
			out, err := helper.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := helper.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = helper.Process.Kill(); _ = helper.Wait() })
			buf := make([]byte, 64)
			if k, _ := out.Read(buf); !strings.HasPrefix(string(buf[:k]), "dialed") {
				b.Fatalf("dialer helper: %q", buf[:k])
			}
		}
		cmd := exec.Command("ip", "netns", "exec", pod, "sleep", "3600")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		w.PIDs = append(w.PIDs, cmd.Process.Pid)
	}
	time.Sleep(200 * time.Millisecond) // let `ip netns exec` become sleep in every namespace
	return w
}

type tcpConn struct{ net.Listener }

func (tcpConn) Read([]byte) (int, error)         { return 0, nil }
func (tcpConn) Write([]byte) (int, error)        { return 0, nil }
func (c tcpConn) LocalAddr() net.Addr            { return c.Addr() }
func (tcpConn) RemoteAddr() net.Addr             { return nil }
func (tcpConn) SetDeadline(time.Time) error      { return nil }
func (tcpConn) SetReadDeadline(time.Time) error  { return nil }
func (tcpConn) SetWriteDeadline(time.Time) error { return nil }

// DialerMain is the scrape world's helper process (the test binary run again as
// -test.run=^TestScrapeBenchDialer$): with OSA_BENCH_DIAL set it opens that many connections,
// says "dialed", and holds them until killed; otherwise it skips.
func DialerMain(t *testing.T) {
	spec := os.Getenv("OSA_BENCH_DIAL")
	if spec == "" {
		t.Skip("helper process of the scrape benchmark")
	}
	target, n, _ := strings.Cut(spec, ",")
	var count int
	fmt.Sscan(n, &count)
	conns := make([]net.Conn, 0, count)
	for i := 0; i < count; i++ {
		c, err := net.DialTimeout("tcp4", target, 5*time.Second)
		if err != nil {
			fmt.Printf("failed after %d: %v\n", i, err)
			os.Exit(1)
		}
		conns = append(conns, c)
	}
	fmt.Println("dialed")
	time.Sleep(time.Hour)
}

// CPUTime is the user and system time of this process.
func CPUTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
