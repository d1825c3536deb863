package sockdiag

import (
	"encoding/binary"
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

// scrapeWorld is 110 pod namespaces, the first holding bigConns inbound connections and the
// others smallConns each, all from one client namespace standing in for off-node clients (with a
// private TCP table, so its own sockets are not walked by the pods' dumps).
type scrapeWorld struct {
	pods  []string
	pids  []int
	conns []net.Conn
	names []string
}

func ns(t testing.TB, args ...string) {
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

func newScrapeWorld(b *testing.B, pods, smallConns, bigConns int, privateEhash bool) *scrapeWorld {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	w := &scrapeWorld{}
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
	withEhash(b, 65536, func() { ns(b, "ip", "netns", "add", clients) })
	ns(b, "ip", "-n", clients, "link", "set", "lo", "up")
	// 50,000 connections from one address to one address and port need that many source ports.
	ns(b, "ip", "netns", "exec", clients, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535")
	ns(b, "ip", "-n", clients, "addr", "add", "198.51.100.254/32", "dev", "lo")
	makePod := func(i int) {
		name := fmt.Sprintf("osa-bench-pod%d-%s", i, id)
		veth := fmt.Sprintf("osab%d", i)
		ip := fmt.Sprintf("198.51.100.%d", i+1)
		ns(b, "ip", "netns", "add", name)
		w.names = append(w.names, name)
		ns(b, "ip", "link", "add", veth+"p", "netns", name, "type", "veth", "peer", "name", veth+"c", "netns", clients)
		ns(b, "ip", "-n", name, "link", "set", "lo", "up")
		ns(b, "ip", "-n", name, "addr", "add", ip+"/32", "dev", veth+"p")
		ns(b, "ip", "-n", name, "link", "set", veth+"p", "up")
		ns(b, "ip", "-n", name, "route", "add", "default", "dev", veth+"p", "scope", "link")
		ns(b, "ip", "-n", clients, "link", "set", veth+"c", "up")
		ns(b, "ip", "-n", clients, "route", "add", ip+"/32", "dev", veth+"c", "src", "198.51.100.254")
		w.pods = append(w.pods, name)
	}
	for i := 0; i < pods; i++ {
		if privateEhash {
			size := 4096
			if i == 0 {
				size = 65536
			}
			withEhash(b, size, func() { makePod(i) })
		} else {
			makePod(i)
		}
	}
	for i, pod := range w.pods {
		// The connections are left unaccepted: ESTABLISHED in a large accept queue, they are
		// counted like accepted ones and cost this process no file descriptors.
		ns(b, "ip", "netns", "exec", pod, "sysctl", "-qw", "net.core.somaxconn=65535")
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
		w.pids = append(w.pids, cmd.Process.Pid)
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

func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// One op = a full scrape of all 110 namespaces. Reports CPU per scrape.
func benchmarkScrape(b *testing.B, privateEhash bool) {
	if os.Getenv("OSA_BENCH_SCRAPE") != "1" {
		b.Skip("set OSA_BENCH_SCRAPE=1: builds 110 namespaces with 52,000 connections (about a minute, as root)")
	}
	w := newScrapeWorld(b, 110, 20, 50000, privateEhash)
	want := 50000 + 109*20
	b.Run("sockdiag", func(b *testing.B) {
		c := NewCounter(Options{})
		start := cpuTime()
		for i := 0; i < b.N; i++ {
			total := 0
			for _, pid := range w.pids {
				fd, err := netns.DiagSocket(netns.ProcPath(pid), 0)
				if err != nil {
					b.Fatal(err)
				}
				got, err := c.Count(fd)
				unix.Close(fd)
				if err != nil {
					b.Fatal(err)
				}
				total += got.Inbound
			}
			if total != want {
				b.Fatalf("counted %d inbound, want %d", total, want)
			}
		}
		b.ReportMetric(float64((cpuTime()-start).Milliseconds())/float64(b.N), "cpu-ms/scrape")
	})
	// The kernel's part alone: the same request, its replies read and thrown away unparsed.
	// What this costs is the floor of any sock_diag scrape, whatever the parser does.
	b.Run("floor-kernel-dump-only", func(b *testing.B) {
		c := NewCounter(Options{})
		start := cpuTime()
		for i := 0; i < b.N; i++ {
			for _, pid := range w.pids {
				fd, err := netns.DiagSocket(netns.ProcPath(pid), 0)
				if err != nil {
					b.Fatal(err)
				}
				err = dumpDiscarding(fd, c.legacyRequest(), c.buf)
				unix.Close(fd)
				if err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64((cpuTime()-start).Milliseconds())/float64(b.N), "cpu-ms/scrape")
	})
	b.Run("baseline-proc-net-tcp", func(b *testing.B) {
		start := cpuTime()
		for i := 0; i < b.N; i++ {
			total := 0
			for _, pid := range w.pids {
				in, _, err := procNetTCP(pid)
				if err != nil {
					b.Fatal(err)
				}
				total += in
			}
			if total != want {
				b.Fatalf("counted %d inbound, want %d", total, want)
			}
		}
		b.ReportMetric(float64((cpuTime()-start).Milliseconds())/float64(b.N), "cpu-ms/scrape")
	})
}

func BenchmarkScrape110Pods50kConnectionsSharedTable(b *testing.B)   { benchmarkScrape(b, false) }
func BenchmarkScrape110Pods50kConnectionsPrivateTables(b *testing.B) { benchmarkScrape(b, true) }

// TestScrapeBenchDialer is the benchmark's helper process, not a test: with OSA_BENCH_DIAL set
// it opens that many connections, says "dialed", and holds them until killed.
func TestScrapeBenchDialer(t *testing.T) {
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

// dumpDiscarding sends req and reads the replies until the dump is done, looking only at each
// message's type.
func dumpDiscarding(fd int, req, buf []byte) error {
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return err
		}
		for off := 0; off+nlmsgHdrLen <= n; {
			length := int(binary.NativeEndian.Uint32(buf[off:]))
			if t := binary.NativeEndian.Uint16(buf[off+4:]); t == nlmsgDone || t == nlmsgError {
				return nil
			}
			if length < nlmsgHdrLen {
				return fmt.Errorf("malformed message")
			}
			off += (length + 3) &^ 3
		}
	}
}
