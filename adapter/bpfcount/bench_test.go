package bpfcount

import (
	"net"

	"github.com/cilium/ebpf"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/netns"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/netns/netnstest"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/sockdiag"
)

// TestScrapeBenchDialer is the scrape benchmark's helper process, not a test.
func TestScrapeBenchDialer(t *testing.T) { netnstest.DialerMain(t) }

// One op = a full scrape of 110 pod namespaces (52,180 connections, the kernel's shared TCP
// table): with sock_diag, as the agent's sock_diag counter does it, and from the program's
// events, in the same run. CPU is the process's user + system time per scrape.
func BenchmarkScrape110Pods50kConnectionsSharedTable(b *testing.B) {
	if os.Getenv("OSA_BENCH_SCRAPE") != "1" {
		b.Skip("set OSA_BENCH_SCRAPE=1: builds 110 namespaces with 52,000 connections (about a minute, as root)")
	}
	p := load(b, Options{})
	w := netnstest.NewScrapeWorld(b, 110, 20, 50000, false)
	want := 50000 + 109*20
	inodes := make([]uint32, len(w.PIDs))
	for i, pid := range w.PIDs {
		ino, err := netns.Inode(pid)
		if err != nil {
			b.Fatal(err)
		}
		inodes[i] = uint32(ino)
	}
	b.Run("sockdiag", func(b *testing.B) {
		c := sockdiag.NewCounter(sockdiag.Options{})
		start := netnstest.CPUTime()
		for i := 0; i < b.N; i++ {
			total := 0
			for _, got := range diagAll(b, c, w.PIDs) {
				total += got.Inbound
			}
			if total != want {
				b.Fatalf("counted %d inbound, want %d", total, want)
			}
		}
		b.ReportMetric(float64((netnstest.CPUTime()-start).Microseconds())/1000/float64(b.N), "cpu-ms/scrape")
	})
	b.Run("ebpf", func(b *testing.B) {
		// Seeded as the agent does when it first sees a namespace (not part of a scrape).
		tr := NewTracker()
		all, err := p.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		for i, d := range diagAll(b, sockdiag.NewCounter(sockdiag.Options{}), w.PIDs) {
			tr.Seed(inodes[i], d, all[inodes[i]])
		}
		b.ResetTimer()
		start := netnstest.CPUTime()
		for i := 0; i < b.N; i++ {
			all, err := p.Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			total := 0
			for _, ino := range inodes {
				got, ok := tr.Counts(ino, all[ino])
				if !ok {
					b.Fatal("not seeded")
				}
				total += got.Inbound
			}
			if total != want {
				b.Fatalf("counted %d inbound, want %d", total, want)
			}
		}
		b.ReportMetric(float64((netnstest.CPUTime()-start).Microseconds())/1000/float64(b.N), "cpu-ms/scrape")
	})
}

// diagAll counts the namespace of each of pids with sock_diag.
func diagAll(b *testing.B, c *sockdiag.Counter, pids []int) []sockdiag.Counts {
	out := make([]sockdiag.Counts, len(pids))
	for i, pid := range pids {
		fd, err := netns.DiagSocket(netns.ProcPath(pid), 0)
		if err != nil {
			b.Fatal(err)
		}
		out[i], err = c.Count(fd)
		unix.Close(fd)
		if err != nil {
			b.Fatal(err)
		}
	}
	return out
}

// One op = a connection opened and closed (client in one namespace, server accepting and
// closing in another), without and with the program attached, in the same run: what counting
// from events costs per connection. CPU covers both ends and the kernel's work for them (the
// program runs in the kernel, on the CPU that changes the socket's state).
func BenchmarkConnectAndClose(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	n := netnstest.New(b)
	var l net.Listener
	if err := netns.Do(netnstest.Path(n.Pod), 0, func() (err error) { l, err = net.Listen("tcp4", "198.51.100.33:8080"); return err }); err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	run := func(b *testing.B) {
		start := netnstest.CPUTime()
		err := netns.Do(netnstest.Path(n.Peer), 0, func() error {
			for i := 0; i < b.N; i++ {
				c, err := net.Dial("tcp4", "198.51.100.33:8080")
				if err != nil {
					return err
				}
				// Reset, not FIN: no TIME_WAIT left to exhaust the client's ports over a run.
				_ = c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64((netnstest.CPUTime()-start).Microseconds())/float64(b.N), "cpu-µs/conn")
	}
	b.Run("without-program", run)
	// The kernel's own account of the program: run time and runs (BPF_STATS_RUN_TIME).
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()
	p, err := Load(Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("with-program", func(b *testing.B) {
		before, _ := p.objs.InetSockSetState.Stats()
		run(b)
		after, err := p.objs.InetSockSetState.Stats()
		if err != nil {
			b.Fatal(err)
		}
		runs := after.RunCount - before.RunCount
		if runs > 0 {
			b.ReportMetric(float64(after.Runtime-before.Runtime)/float64(runs), "prog-ns/event")
			b.ReportMetric(float64(runs)/float64(b.N), "events/conn")
		}
	})
	p.Close()
	b.Run("without-program-again", run)
}
