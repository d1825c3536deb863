package sockdiag

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/netns"
)

// benchNet is a pod namespace holding conns inbound connections from its peer namespace.
func benchNet(b *testing.B, conns int) *testNet {
	n := newTestNet(b)
	n.Listen(b, n.Pod, "tcp", ":8080")
	n.Dial(b, n.Peer, "198.51.100.33:8080", conns)
	n.WaitHeld(2 * conns)
	return n
}

// The baseline: read /proc/<pid>/net/tcp and tcp6 of a process in the namespace, as cAdvisor
// and node_exporter do, splitting lines and parsing the hex fields.
func procNetTCP(pid int) (inbound, outbound int, err error) {
	listen := map[uint64]bool{}
	estab := map[uint64]int{}
	for _, f := range []string{"tcp", "tcp6"} {
		file, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			return 0, 0, err
		}
		s := bufio.NewScanner(file)
		s.Scan() // header
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) < 4 {
				continue
			}
			_, portHex, _ := strings.Cut(fields[1], ":")
			port, _ := strconv.ParseUint(portHex, 16, 16)
			switch fields[3] {
			case "0A":
				listen[port] = true
			case "01":
				estab[port]++
			}
		}
		file.Close()
	}
	for port, n := range estab {
		if listen[port] {
			inbound += n
		} else {
			outbound += n
		}
	}
	return inbound, outbound, nil
}

func benchmarkBoth(b *testing.B, conns int) {
	n := benchNet(b, conns)
	// A process inside the pod namespace, for the /proc baseline.
	pid := inNamespace(b, n.Pod)
	b.Run("sockdiag", func(b *testing.B) {
		c := NewCounter(Options{})
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			fd, err := netns.DiagSocket(netns.ProcPath(pid), 0)
			if err != nil {
				b.Fatal(err)
			}
			got, err := c.Count(fd)
			unix.Close(fd)
			if err != nil || got.Inbound != conns {
				b.Fatalf("count = %d, %v; want %d", got.Inbound, err, conns)
			}
		}
	})
	b.Run("baseline-proc-net-tcp", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			in, _, err := procNetTCP(pid)
			if err != nil || in != conns {
				b.Fatalf("count = %d, %v; want %d", in, err, conns)
			}
		}
	})
}

func BenchmarkNamespace100Connections(b *testing.B)  { benchmarkBoth(b, 100) }
func BenchmarkNamespace5000Connections(b *testing.B) { benchmarkBoth(b, 5000) }
