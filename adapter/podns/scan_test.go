package podns

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// fakeProc builds a /proc-shaped directory: per pid a cgroup file, a comm file and a ns/net link.
func fakeProc(t *testing.T, procs map[int][3]string) string {
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		_ = os.WriteFile(filepath.Join(dir, "cgroup"), []byte(p[0]), 0o644)
		_ = os.WriteFile(filepath.Join(dir, "comm"), []byte(p[1]+"\n"), 0o644)
		if err := os.Symlink("net:["+p[2]+"]", filepath.Join(dir, "ns", "net")); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestScanProc(t *testing.T) {
	const a = "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod11111111_2222_3333_4444_555555555555.slice/cri-containerd-"
	const b = "0::/kubepods/besteffort/pod99999999-8888-7777-6666-555555555555/"
	const hostNet = "0::/kubepods.slice/kubepods-pod77777777_0000_0000_0000_000000000000.slice/cri-containerd-"
	root := fakeProc(t, map[int][3]string{
		1:   {"0::/init.scope\n", "systemd", "4026531840"},
		100: {a + "app1.scope\n", "nginx", "4026532001"},
		90:  {a + "pause1.scope\n", "pause", "4026532001"},
		101: {a + "app2.scope\n", "envoy", "4026532001"},
		200: {b + "c1\n", "redis-server", "4026532002"},
		300: {hostNet + "c2.scope\n", "node-exporter", "4026531840"},
		400: {"0::/system.slice/containerd.service\n", "containerd", "4026531840"},
	})
	scan, err := ScanProc(root)
	if err != nil {
		t.Fatal(err)
	}
	if scan.HostInode != 4026531840 {
		t.Errorf("host inode = %d", scan.HostInode)
	}
	podA := scan.Pods["11111111-2222-3333-4444-555555555555"]
	if podA == nil || podA.Inode != 4026532001 || len(podA.PIDs) != 3 || podA.PIDs[0] != 90 {
		t.Errorf("pod A = %+v, want inode 4026532001 with 3 processes, pause (90) first", podA)
	}
	if podB := scan.Pods["99999999-8888-7777-6666-555555555555"]; podB == nil || podB.PIDs[0] != 200 {
		t.Errorf("pod B = %+v", podB)
	}
	if !scan.HostNetwork["77777777-0000-0000-0000-000000000000"] || scan.Pods["77777777-0000-0000-0000-000000000000"] != nil {
		t.Errorf("the hostNetwork pod must be set apart, not counted: %+v", scan)
	}
	if len(scan.Pods) != 2 {
		t.Errorf("pods = %v, want 2", scan.Pods)
	}
}

// A container of the pod runs in a network namespace of its own with more processes than the
// sandbox (a build or Docker-in-Docker container): the pod's namespace is still the sandbox's.
func TestPodNamespaceIsTheSandboxs(t *testing.T) {
	const pod = "0::/kubepods/burstable/pod12121212-3434-5656-7878-909090909090/"
	root := fakeProc(t, map[int][3]string{
		1:  {"0::/init.scope\n", "systemd", "4026531840"},
		10: {pod + "sandbox\n", "pause", "4026532100"},
		11: {pod + "app\n", "java", "4026532100"},
		20: {pod + "dind\n", "dockerd", "4026532200"},
		21: {pod + "dind\n", "containerd", "4026532200"},
		22: {pod + "dind\n", "make", "4026532200"},
	})
	scan, err := ScanProc(root)
	if err != nil {
		t.Fatal(err)
	}
	if ns := scan.Pods["12121212-3434-5656-7878-909090909090"]; ns == nil || ns.Inode != 4026532100 || ns.PIDs[0] != 10 {
		t.Errorf("pod namespace %+v, want the sandbox's (4026532100, pause first)", ns)
	}
}
