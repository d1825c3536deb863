package netns

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testNamespace makes a network namespace for the test (root only) and removes it after.
func testNamespace(t *testing.T) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	name := "osa-netns-test"
	_ = exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return "/run/netns/" + name
}

func readIn(t *testing.T, ns, name string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", strings.TrimPrefix(ns, "/run/netns/"), "sysctl", "-n", name).CombinedOutput()
	if err != nil {
		t.Fatalf("reading %s: %v: %s", name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// The sysctl is set in the namespace named, not in the caller's.
func TestSetSysctlWritesTheNamespacesValue(t *testing.T) {
	ns := testNamespace(t)
	const name = "net.ipv4.tcp_child_ehash_entries"
	home, err := os.ReadFile("/proc/sys/net/ipv4/tcp_child_ehash_entries")
	if err != nil {
		t.Skip("this kernel has no net.ipv4.tcp_child_ehash_entries")
	}
	previous, err := SetSysctl(ns, name, "4096")
	if err != nil {
		t.Fatal(err)
	}
	if got := readIn(t, ns, name); got != "4096" {
		t.Errorf("%s in the namespace = %s, want 4096", name, got)
	}
	if previous == "4096" {
		t.Errorf("previous value = %s: it was not read before writing", previous)
	}
	if now, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_child_ehash_entries"); string(now) != string(home) {
		t.Errorf("the caller's namespace changed: %q, was %q", now, home)
	}
}

func TestSetSysctlRefusesWhatIsNotANamespacesSysctl(t *testing.T) {
	for _, name := range []string{"kernel.pid_max", "net/../../kernel/pid_max", "net..ipv4", ""} {
		if _, err := SetSysctl("/proc/self/ns/net", name, "1"); err == nil || !strings.Contains(err.Error(), "net.*") {
			t.Errorf("SetSysctl(%q) = %v, want refused", name, err)
		}
	}
}

// Where PID 1's namespace cannot be opened, the kubelet's is the host's.
func TestHostPathFallsBackToTheKubelet(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to read its own namespace file")
	}
	proc := t.TempDir()
	for pid, comm := range map[string]string{"7": "containerd", "42": "kubelet"} {
		if err := os.MkdirAll(filepath.Join(proc, pid, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, pid, "comm"), []byte(comm+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/proc/self/ns/net", filepath.Join(proc, pid, "ns", "net")); err != nil {
			t.Fatal(err)
		}
	}
	got, err := HostPath(proc)
	if err != nil || got != filepath.Join(proc, "42", "ns", "net") {
		t.Errorf("HostPath = %q, %v; want the kubelet's namespace", got, err)
	}
	if err := os.MkdirAll(filepath.Join(proc, "1", "ns"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/proc/self/ns/net", filepath.Join(proc, "1", "ns", "net")); err != nil {
		t.Fatal(err)
	}
	if got, err := HostPath(proc); err != nil || got != filepath.Join(proc, "1", "ns", "net") {
		t.Errorf("HostPath = %q, %v; want PID 1's namespace when it opens", got, err)
	}
	if _, err := HostPath(t.TempDir()); err == nil || !strings.Contains(err.Error(), "hostPID") {
		t.Errorf("HostPath of an empty /proc = %v, want an error naming hostPID", err)
	}
}
