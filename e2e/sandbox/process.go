package sandbox

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// Process is the body of a sandbox's processes (run as "<binary> sandbox-process"): it first
// moves itself into its container cgroup (whose cgroup.procs it inherits as fd 3), then either holds the namespace ("pause") or accepts
// connections on the pod's ports and keeps each open until the peer closes it ("app").
func Process(args []string) error {
	var role, ports string
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "--role":
			role = args[i+1]
		case "--ports":
			ports = args[i+1]
		}
	}
	procs := os.NewFile(3, "cgroup.procs")
	if _, err := procs.Write([]byte(strconv.Itoa(os.Getpid()))); err != nil {
		return fmt.Errorf("joining the container cgroup (fd 3): %w", err)
	}
	procs.Close()
	if role == "pause" {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		return nil
	}
	errs := make(chan error, 1)
	for _, p := range strings.Split(ports, ",") {
		if p == "" {
			continue
		}
		// ":port" is a dual-stack socket: IPv4 clients show up as v4-mapped IPv6 sockets, as
		// they do for most servers on real nodes.
		l, err := net.Listen("tcp", ":"+p)
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					errs <- err
					return
				}
				go func() { _, _ = io.Copy(io.Discard, c); _ = c.Close() }()
			}
		}()
	}
	return <-errs
}
