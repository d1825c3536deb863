package loadgen

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// listener accepts real TCP connections on loopback and counts the open ones.
func listener(t *testing.T) (addr string, open *atomic.Int64) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	open = &atomic.Int64{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			open.Add(1)
			go func() {
				buf := make([]byte, 1)
				_, _ = c.Read(buf) // returns when the client closes
				open.Add(-1)
				c.Close()
			}()
		}
	}()
	return l.Addr().String(), open
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never happened", what)
}

func TestSpreadRebalancesOverTargets(t *testing.T) {
	a, openA := listener(t)
	b, openB := listener(t)
	h := &Holder{}
	defer h.CloseAll()
	ctx := context.Background()
	if err := h.Spread(ctx, []string{a}, 7); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "7 connections on a", func() bool { return openA.Load() == 7 })
	// A second pod appears: the total is spread, 4 and 3.
	if err := h.Spread(ctx, []string{b, a}, 7); err != nil {
		t.Fatal(err)
	}
	counts := h.Counts()
	if counts[a]+counts[b] != 7 || counts[a]-counts[b] > 1 || counts[b]-counts[a] > 1 {
		t.Errorf("counts after spreading over two = %v", counts)
	}
	waitFor(t, "server side sees the spread", func() bool { return openA.Load()+openB.Load() == 7 && openB.Load() >= 3 })
	// The first pod goes away: its connections are closed and all go to the other.
	if err := h.Spread(ctx, []string{b}, 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a drained, b holds 2", func() bool { return openA.Load() == 0 && openB.Load() == 2 })
	h.CloseAll()
	waitFor(t, "all closed", func() bool { return openB.Load() == 0 })
	if len(h.Counts()) != 0 {
		t.Errorf("counts after CloseAll = %v", h.Counts())
	}
}

func TestSetReportsUnreachableTarget(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there any more
	h := &Holder{}
	if err := h.Set(context.Background(), addr, 1); err == nil {
		t.Error("connecting to a closed port succeeded")
	}
}
