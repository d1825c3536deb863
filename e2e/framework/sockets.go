package framework

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PodPIDs finds the processes whose cgroup path names the pod (kubelet layouts), the way a
// node agent does. The world's checks use it to look inside a sandbox independently of the
// product's own agent.
func PodPIDs(uid string) []int {
	systemdUID := strings.ReplaceAll(uid, "-", "_")
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil {
			continue
		}
		s := string(raw)
		if strings.Contains(s, "kubepods") && (strings.Contains(s, "pod"+uid) || strings.Contains(s, "pod"+systemdUID)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// EstablishedByLocalPort counts ESTABLISHED TCP sockets by local port in the network namespace
// of pid, from its /proc/<pid>/net/tcp and tcp6 (a slow but independent reading).
func EstablishedByLocalPort(pid int) (map[int]int, error) {
	counts := map[int]int{}
	for _, f := range []string{"tcp", "tcp6"} {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != "01" { // 01 = TCP_ESTABLISHED
				continue
			}
			_, portHex, _ := strings.Cut(fields[1], ":")
			port, err := strconv.ParseInt(portHex, 16, 32)
			if err != nil {
				return nil, fmt.Errorf("pid %d %s: bad local address %q", pid, f, fields[1])
			}
			counts[int(port)]++
		}
	}
	return counts, nil
}
