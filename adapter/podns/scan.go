package podns

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Namespace is one pod's network namespace and the processes that are in it.
type Namespace struct {
	Inode  uint64
	PodUID string
	// PIDs in the namespace, the sandbox's "pause" process first when there is one (it lives
	// as long as the sandbox, while app containers restart).
	PIDs     []int
	hasPause bool
}

// Scan is what one pass over /proc found.
type Scan struct {
	// Pods by UID. A pod whose processes sit in several namespaces keeps its sandbox's (the
	// namespace of its pause process), or else the one most of them share.
	Pods map[string]*Namespace
	// HostNetwork lists pods whose processes run in the host's namespace: hostNetwork pods,
	// and runtime helpers placed in a pod's cgroup. Their sockets are not the pod's own.
	HostNetwork map[string]bool
	HostInode   uint64
}

// NetnsInode reads a namespace link such as /proc/<pid>/ns/net ("net:[4026532270]").
func NetnsInode(link string) (uint64, error) {
	target, err := os.Readlink(link)
	if err != nil {
		return 0, err
	}
	inner, ok := strings.CutPrefix(target, "net:[")
	if !ok || !strings.HasSuffix(inner, "]") {
		return 0, fmt.Errorf("%s -> %q is not a network namespace", link, target)
	}
	return strconv.ParseUint(strings.TrimSuffix(inner, "]"), 10, 64)
}

// ScanProc walks procRoot (normally /proc, the host's, in a hostPID pod).
func ScanProc(procRoot string) (*Scan, error) {
	host, err := NetnsInode(filepath.Join(procRoot, "1", "ns", "net"))
	if err != nil {
		// Some sandboxes deny PID 1's links; the agent's own namespace is the host's in a
		// hostNetwork DaemonSet.
		if host, err = NetnsInode(filepath.Join(procRoot, "self", "ns", "net")); err != nil {
			return nil, fmt.Errorf("reading the host network namespace: %w", err)
		}
	}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	scan := &Scan{Pods: map[string]*Namespace{}, HostNetwork: map[string]bool{}, HostInode: host}
	byPodInode := map[string]map[uint64]*Namespace{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join(procRoot, e.Name())
		raw, err := os.ReadFile(filepath.Join(dir, "cgroup"))
		if err != nil {
			continue // the process ended
		}
		uid, _, ok := PodOf(string(raw))
		if !ok {
			continue
		}
		ino, err := NetnsInode(filepath.Join(dir, "ns", "net"))
		if err != nil {
			continue
		}
		if ino == host {
			scan.HostNetwork[uid] = true
			continue
		}
		if byPodInode[uid] == nil {
			byPodInode[uid] = map[uint64]*Namespace{}
		}
		ns := byPodInode[uid][ino]
		if ns == nil {
			ns = &Namespace{Inode: ino, PodUID: uid}
			byPodInode[uid][ino] = ns
		}
		if comm, _ := os.ReadFile(filepath.Join(dir, "comm")); strings.TrimSpace(string(comm)) == "pause" {
			ns.PIDs = append([]int{pid}, ns.PIDs...)
			ns.hasPause = true
		} else {
			ns.PIDs = append(ns.PIDs, pid)
		}
	}
	for uid, namespaces := range byPodInode {
		var best *Namespace
		for _, ns := range namespaces {
			if best == nil || sandboxFirst(ns, best) {
				best = ns
			}
		}
		scan.Pods[uid] = best
		delete(scan.HostNetwork, uid)
	}
	for _, ns := range scan.Pods {
		sortKeepFirst(ns)
	}
	return scan, nil
}

// sandboxFirst says whether namespace a is the pod's rather than b: the one holding the
// sandbox's pause process (a container with a namespace of its own, such as a build or
// Docker-in-Docker one, may hold more processes), then the one with more processes.
func sandboxFirst(a, b *Namespace) bool {
	if a.hasPause != b.hasPause {
		return a.hasPause
	}
	return len(a.PIDs) > len(b.PIDs) || (len(a.PIDs) == len(b.PIDs) && a.Inode < b.Inode)
}

// sortKeepFirst orders PIDs for stable output, keeping a leading pause process first.
func sortKeepFirst(ns *Namespace) {
	if len(ns.PIDs) < 3 {
		return
	}
	sort.Ints(ns.PIDs[1:])
}
