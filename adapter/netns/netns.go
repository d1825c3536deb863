// Package netns enters another process's network namespace for as long as it takes to create a
// socket there. A socket belongs to the namespace it was created in, so the caller can use it
// after this thread has returned home.
package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Inode is the identity of the network namespace pid is in.
func Inode(pid int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(ProcPath(pid), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// Do runs fn on a thread that is in the network namespace at nsPath (/proc/<pid>/ns/net or
// /run/netns/<name>), after checking that its inode is wantIno when wantIno is not 0 (so a
// reused PID cannot lead into another pod's namespace). Sockets fn creates belong to that
// namespace.
func Do(nsPath string, wantIno uint64, fn func() error) error {
	target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(target)
	if wantIno != 0 {
		var st unix.Stat_t
		if err := unix.Fstat(target, &st); err != nil {
			return err
		}
		if st.Ino != wantIno {
			return fmt.Errorf("%s is namespace %d, not %d: the process was replaced", nsPath, st.Ino, wantIno)
		}
	}
	runtime.LockOSThread()
	home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer unix.Close(home)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering %s: %w", nsPath, err)
	}
	fnErr := fn()
	if err := unix.Setns(home, unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and dies with this goroutine: Go discards it rather than
		// letting another goroutine run in the wrong namespace.
		return fmt.Errorf("returning from %s: %w", nsPath, err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// ProcPath is the namespace file of a process.
func ProcPath(pid int) string { return fmt.Sprintf("/proc/%d/ns/net", pid) }

// DiagSocket creates a NETLINK_SOCK_DIAG socket in the network namespace at nsPath.
func DiagSocket(nsPath string, wantIno uint64) (int, error) {
	fd := -1
	err := Do(nsPath, wantIno, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		return err
	})
	return fd, err
}

// SetSysctl writes a sysctl (dotted name, as sysctl(8) takes it) in the network namespace at
// nsPath and reads it back: /proc/sys/net answers for the namespace of the thread that opens
// it. It returns the value it replaced. The agent's init container uses it on the host's
// namespace (/proc/1/ns/net, with hostPID), whose net.ipv4.tcp_child_ehash_entries sizes the
// TCP hash table of every pod namespace created afterwards.
func SetSysctl(nsPath, name, value string) (previous string, err error) {
	if name == "" || strings.Contains(name, "/") || strings.Contains(name, "..") || !strings.HasPrefix(name, "net.") {
		return "", fmt.Errorf("sysctl %q: only net.* sysctls of a network namespace can be set", name)
	}
	path := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
	err = Do(nsPath, 0, func() error {
		old, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		previous = strings.TrimSpace(string(old))
		if err := os.WriteFile(path, []byte(value), 0); err != nil {
			return err
		}
		now, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if got := strings.Join(strings.Fields(string(now)), " "); got != strings.Join(strings.Fields(value), " ") {
			return fmt.Errorf("%s reads %q after writing %q", name, got, value)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("setting %s=%s in %s: %w", name, value, nsPath, err)
	}
	return previous, nil
}

// HostPath finds the host's network namespace under procRoot (a /proc showing the host's
// processes: hostPID): PID 1's, or, where PID 1's cannot be opened (a sandboxed init, as on
// this project's test machine), the kubelet's, which always runs in the host's namespace.
func HostPath(procRoot string) (string, error) {
	first := filepath.Join(procRoot, "1", "ns", "net")
	fd, err := unix.Open(first, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
		return first, nil
	}
	entries, readErr := os.ReadDir(procRoot)
	if readErr != nil {
		return "", fmt.Errorf("%s: %v; listing %s: %w", first, err, procRoot, readErr)
	}
	for _, e := range entries {
		if _, convErr := strconv.Atoi(e.Name()); convErr != nil {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join(procRoot, e.Name(), "comm"))
		if strings.TrimSpace(string(comm)) != "kubelet" {
			continue
		}
		path := filepath.Join(procRoot, e.Name(), "ns", "net")
		if fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			unix.Close(fd)
			return path, nil
		}
	}
	return "", fmt.Errorf("the host's network namespace: %s cannot be opened (%v) and no kubelet process was found in %s (the pod needs hostPID)", first, err, procRoot)
}
