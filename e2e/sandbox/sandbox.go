// Package sandbox is test infrastructure of the local world: it gives a kwok pod what a real
// node's container runtime would, as far as the connection agent can tell. Each sandbox is a
// real network namespace holding the pod's IP, wired to the host by a veth pair, with a "pause"
// process and an app process that listens on the pod's ports, both placed in cgroups laid out
// the way the kubelet lays them out (…/kubepods…/pod<UID>/<container>), so /proc/<pid>/cgroup
// maps them to the pod exactly as on a node.
package sandbox

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// NetnsPrefix starts the name of every network namespace the sandboxes create, so leftovers
// of a crashed run can be found and removed (and nothing else touched).
const NetnsPrefix = "osa-pod-"

// Layout is how the kubelet names pod cgroups.
type Layout string

const (
	// SystemdV2 is the systemd cgroup driver on cgroup v2 (the default on current nodes):
	// 0::/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<UID_>.slice/cri-containerd-<id>.scope
	SystemdV2 Layout = "systemd-v2"
	// CgroupfsV1 is the cgroupfs driver on cgroup v1: N:pids:/kubepods/<qos>/pod<UID>/<id>
	CgroupfsV1 Layout = "cgroupfs-v1"
)

// Spec describes the pod a sandbox is made for.
type Spec struct {
	PodUID string
	PodIP  string
	Ports  []int
	// QOSClass is the pod's status.qosClass: Guaranteed, Burstable or BestEffort.
	QOSClass string
}

// Sandbox is a running pod sandbox.
type Sandbox struct {
	Spec
	Netns    string
	HostVeth string
	Cgroups  []string // cgroup directories created, innermost last
	procs    []*exec.Cmd
}

// PIDs of the sandbox's processes (pause first).
func (s *Sandbox) PIDs() []int {
	var pids []int
	for _, p := range s.procs {
		pids = append(pids, p.Process.Pid)
	}
	return pids
}

// Manager creates and destroys sandboxes.
type Manager struct {
	// Binary is an executable that runs Process when started with the argument "sandbox-process".
	Binary string
	// HostIP is the host address the pods' traffic comes from and returns to (on lo).
	HostIP string
	Layout Layout
	// CgroupRoot is the hierarchy pod cgroups go in: the cgroup v2 mount for SystemdV2, the
	// v1 "pids" controller mount for CgroupfsV1. Empty means detected.
	CgroupRoot string
}

// DetectCgroupRoot finds where the layout's hierarchy is mounted on this host.
func DetectCgroupRoot(layout Layout) (string, error) {
	var candidates []string
	if layout == CgroupfsV1 {
		candidates = []string{"/sys/fs/cgroup/pids"}
	} else {
		candidates = []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}
	}
	for _, dir := range candidates {
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err == nil {
			if layout == CgroupfsV1 || fileExists(filepath.Join(dir, "cgroup.controllers")) {
				return dir, nil
			}
		}
	}
	return "", fmt.Errorf("no cgroup hierarchy for layout %s under /sys/fs/cgroup", layout)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// PodCgroup returns the pod's cgroup path (relative to the hierarchy root) and the name of a
// container's cgroup inside it, as the kubelet and containerd would name them.
func PodCgroup(layout Layout, qos, podUID, containerID string) (pod, container string) {
	q := strings.ToLower(qos)
	if layout == CgroupfsV1 {
		if q == "guaranteed" {
			return filepath.Join("kubepods", "pod"+podUID), containerID
		}
		return filepath.Join("kubepods", q, "pod"+podUID), containerID
	}
	uid := strings.ReplaceAll(podUID, "-", "_")
	if q == "guaranteed" {
		return filepath.Join("kubepods.slice", "kubepods-pod"+uid+".slice"), "cri-containerd-" + containerID + ".scope"
	}
	return filepath.Join("kubepods.slice", "kubepods-"+q+".slice", "kubepods-"+q+"-pod"+uid+".slice"),
		"cri-containerd-" + containerID + ".scope"
}

// NetnsName is the network namespace name of a pod's sandbox.
func NetnsName(podUID string) string { return NetnsPrefix + podUID }

func vethName(podUID string) string {
	sum := sha1.Sum([]byte(podUID))
	return "osa" + hex.EncodeToString(sum[:])[:11] // with the peer's "p": 15 bytes, the limit
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Create makes the network namespace, the veth pair, the cgroups and the processes.
func (m *Manager) Create(spec Spec) (_ *Sandbox, err error) {
	if spec.PodIP == "" || spec.PodUID == "" {
		return nil, fmt.Errorf("pod %s: a sandbox needs the pod's UID and IP", spec.PodUID)
	}
	sb := &Sandbox{Spec: spec, Netns: NetnsName(spec.PodUID), HostVeth: vethName(spec.PodUID)}
	defer func() {
		if err != nil {
			m.Destroy(sb)
		}
	}()
	peer := sb.HostVeth + "p"
	steps := [][]string{
		{"ip", "netns", "add", sb.Netns},
		{"ip", "link", "add", sb.HostVeth, "type", "veth", "peer", "name", peer},
		{"ip", "link", "set", peer, "netns", sb.Netns},
		{"ip", "-n", sb.Netns, "link", "set", peer, "name", "eth0"},
		{"ip", "-n", sb.Netns, "link", "set", "lo", "up"},
		{"ip", "-n", sb.Netns, "addr", "add", spec.PodIP + "/32", "dev", "eth0"},
		{"ip", "-n", sb.Netns, "link", "set", "eth0", "up"},
		// Everything leaves through eth0; the host answers ARP for its own addresses on the veth.
		{"ip", "-n", sb.Netns, "route", "add", "default", "dev", "eth0", "scope", "link"},
		{"ip", "link", "set", sb.HostVeth, "up"},
		{"ip", "route", "replace", spec.PodIP + "/32", "dev", sb.HostVeth, "src", m.HostIP},
	}
	for _, step := range steps {
		if err := run(step...); err != nil {
			return sb, err
		}
	}
	root := m.CgroupRoot
	if root == "" {
		if root, err = DetectCgroupRoot(m.Layout); err != nil {
			return sb, err
		}
	}
	ports := make([]string, len(spec.Ports))
	for i, p := range spec.Ports {
		ports[i] = strconv.Itoa(p)
	}
	for _, role := range []string{"pause", "app"} {
		podDir, containerDir := PodCgroup(m.Layout, spec.QOSClass, spec.PodUID, randomID())
		dir := filepath.Join(root, podDir, containerDir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return sb, err
		}
		sb.Cgroups = append(sb.Cgroups, dir)
		// `ip netns exec` mounts a fresh /sys for the namespace, hiding the cgroup mounts: the
		// process gets its cgroup.procs file opened here, as fd 3, and joins through it.
		procs, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY, 0)
		if err != nil {
			return sb, err
		}
		cmd := exec.Command("ip", "netns", "exec", sb.Netns, m.Binary, "sandbox-process",
			"--role", role, "--ports", strings.Join(ports, ","))
		// Its own process group, ended by the kernel if the sandbox daemon dies first.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.ExtraFiles = []*os.File{procs}
		err = cmd.Start()
		procs.Close()
		if err != nil {
			return sb, err
		}
		sb.procs = append(sb.procs, cmd)
		if err := waitInCgroup(dir, cmd.Process.Pid); err != nil {
			return sb, err
		}
	}
	return sb, nil
}

// waitInCgroup waits until the process has moved itself into its cgroup (and so is ready).
func waitInCgroup(dir string, pid int) error {
	want := strconv.Itoa(pid)
	for i := 0; i < 100; i++ {
		raw, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, line := range strings.Fields(string(raw)) {
			if line == want {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("sandbox process %d did not enter cgroup %s", pid, dir)
}

func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Destroy ends the processes (by PID), and removes the cgroups, the veth and the namespace.
// It is safe on a partly created sandbox.
func (m *Manager) Destroy(sb *Sandbox) {
	for _, p := range sb.procs {
		_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
		_, _ = p.Process.Wait()
	}
	sb.procs = nil
	for i := len(sb.Cgroups) - 1; i >= 0; i-- {
		removeCgroupUpwards(sb.Cgroups[i])
	}
	_ = run("ip", "link", "del", sb.HostVeth) // also removes the peer inside the namespace
	_ = run("ip", "netns", "del", sb.Netns)
}

// removeCgroupUpwards removes a container cgroup and the pod (and QoS) cgroups above it that are
// left empty, stopping at the kubepods level shared with other pods.
func removeCgroupUpwards(dir string) {
	for d := dir; strings.Contains(filepath.Base(d), "pod") || strings.HasPrefix(filepath.Base(d), "cri-") ||
		len(filepath.Base(d)) == 64; d = filepath.Dir(d) {
		if os.Remove(d) != nil {
			return
		}
	}
}

// CleanupStale removes the namespaces (and veths) an earlier run left behind; call it before
// making any sandbox.
func (m *Manager) CleanupStale() error {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		uid, ok := strings.CutPrefix(e.Name(), NetnsPrefix)
		if !ok {
			continue
		}
		_ = run("ip", "link", "del", vethName(uid))
		_ = run("ip", "netns", "del", e.Name())
	}
	return nil
}
