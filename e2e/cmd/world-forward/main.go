// Command world-forward makes the world's services that listen on 127.0.0.1 (OpenStack's APIs,
// RabbitMQ's management API) reachable from the real node's pods: it listens on the world's
// own address (198.51.100.10) at the same ports and forwards each connection, byte for byte, to
// 127.0.0.1. Keystone's catalog names these addresses as the "internal" endpoints, as a cloud's
// internal API network would be; everything else keeps using the public ones on 127.0.0.1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"k8s.io/klog/v2"
)

func main() {
	listen := flag.String("listen", "198.51.100.10", "address to listen on")
	to := flag.String("to", "127.0.0.1", "address to forward to")
	ports := flag.String("ports", "", "comma-separated ports, each listened on and forwarded to the same port")
	klog.InitFlags(nil)
	flag.Parse()
	if err := run(*listen, *to, *ports); err != nil {
		fmt.Fprintln(os.Stderr, "world-forward:", err)
		os.Exit(1)
	}
}

func run(listen, to, ports string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for _, p := range strings.Split(ports, ",") {
		if _, err := strconv.ParseUint(strings.TrimSpace(p), 10, 16); err != nil {
			return fmt.Errorf("--ports: %q is not a port", p)
		}
		l, err := net.Listen("tcp", net.JoinHostPort(listen, strings.TrimSpace(p)))
		if err != nil {
			return fmt.Errorf("listening: %w (is %s on lo? world.sh up adds it)", err, listen)
		}
		listeners = append(listeners, l)
		target := net.JoinHostPort(to, strings.TrimSpace(p))
		go serve(l, target)
		klog.InfoS("forwarding", "from", l.Addr().String(), "to", target)
	}
	<-ctx.Done()
	return nil
}

func serve(l net.Listener, target string) {
	for {
		c, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				klog.ErrorS(err, "accept", "listener", l.Addr().String())
			}
			return
		}
		go forward(c, target)
	}
}

// forward copies both ways until each side has ended its half.
func forward(c net.Conn, target string) {
	defer func() { _ = c.Close() }()
	up, err := net.Dial("tcp", target)
	if err != nil {
		klog.ErrorS(err, "dial", "from", c.RemoteAddr().String(), "to", target)
		return
	}
	defer func() { _ = up.Close() }()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if tcp, ok := dst.(*net.TCPConn); ok {
			_ = tcp.CloseWrite()
		}
	}
	wg.Add(2)
	go pipe(up, c)
	go pipe(c, up)
	wg.Wait()
}
