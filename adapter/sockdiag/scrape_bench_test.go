package sockdiag

import (
	"encoding/binary"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/netns"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/netns/netnstest"
)

// One op = a full scrape of all 110 namespaces. Reports CPU per scrape.
func benchmarkScrape(b *testing.B, privateEhash bool) {
	if os.Getenv("OSA_BENCH_SCRAPE") != "1" {
		b.Skip("set OSA_BENCH_SCRAPE=1: builds 110 namespaces with 52,000 connections (about a minute, as root)")
	}
	w := netnstest.NewScrapeWorld(b, 110, 20, 50000, privateEhash)
	want := 50000 + 109*20
	b.Run("sockdiag", func(b *testing.B) {
		c := NewCounter(Options{})
		start := netnstest.CPUTime()
		for i := 0; i < b.N; i++ {
			total := 0
			for _, pid := range w.PIDs {
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
		b.ReportMetric(float64((netnstest.CPUTime()-start).Milliseconds())/float64(b.N), "cpu-ms/scrape")
	})
	// The kernel's part alone: the same request, its replies read and thrown away unparsed.
	// What this costs is the floor of any sock_diag scrape, whatever the parser does.
	b.Run("floor-kernel-dump-only", func(b *testing.B) {
		c := NewCounter(Options{})
		start := netnstest.CPUTime()
		for i := 0; i < b.N; i++ {
			for _, pid := range w.PIDs {
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
		b.ReportMetric(float64((netnstest.CPUTime()-start).Milliseconds())/float64(b.N), "cpu-ms/scrape")
	})
	b.Run("baseline-proc-net-tcp", func(b *testing.B) {
		start := netnstest.CPUTime()
		for i := 0; i < b.N; i++ {
			total := 0
			for _, pid := range w.PIDs {
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
		b.ReportMetric(float64((netnstest.CPUTime()-start).Milliseconds())/float64(b.N), "cpu-ms/scrape")
	})
}

func BenchmarkScrape110Pods50kConnectionsSharedTable(b *testing.B)   { benchmarkScrape(b, false) }
func BenchmarkScrape110Pods50kConnectionsPrivateTables(b *testing.B) { benchmarkScrape(b, true) }

// TestScrapeBenchDialer is the benchmark's helper process, not a test (netnstest.ScrapeWorld).
func TestScrapeBenchDialer(t *testing.T) { netnstest.DialerMain(t) }

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
