// Package loadgen is the local world's load generator: it holds real TCP connections open to pod
// sandboxes, spreading a total over the pods behind a selector the way a Service's load
// balancer spreads clients, and rebalancing as pods come and go.
package loadgen

import (
	"context"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"
)

// Holder keeps a number of connections open per target address ("ip:port").
type Holder struct {
	// Source is the local address connections come from (empty: the kernel chooses).
	Source string

	mu    sync.Mutex
	conns map[string][]net.Conn
}

// Set opens or closes connections so exactly n are held to target.
func (h *Holder) Set(ctx context.Context, target string, n int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conns == nil {
		h.conns = map[string][]net.Conn{}
	}
	held := h.conns[target]
	for len(held) > n {
		_ = held[len(held)-1].Close()
		held = held[:len(held)-1]
	}
	dialer := net.Dialer{Timeout: 3 * time.Second}
	if h.Source != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(h.Source)}
	}
	var err error
	for len(held) < n {
		var c net.Conn
		if c, err = dialer.DialContext(ctx, "tcp", target); err != nil {
			err = fmt.Errorf("connecting to %s: %w", target, err)
			break
		}
		held = append(held, c)
	}
	if len(held) == 0 {
		delete(h.conns, target)
	} else {
		h.conns[target] = held
	}
	return err
}

// Counts returns how many connections are held per target.
func (h *Holder) Counts() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for t, c := range h.conns {
		out[t] = len(c)
	}
	return out
}

// Spread sets total connections over targets as evenly as possible (the first total%len
// targets in sorted order get one more) and closes those to targets no longer listed.
func (h *Holder) Spread(ctx context.Context, targets []string, total int) error {
	sort.Strings(targets)
	want := map[string]int{}
	for i, t := range targets {
		want[t] = total / len(targets)
		if i < total%len(targets) {
			want[t]++
		}
	}
	for t := range h.Counts() {
		if _, ok := want[t]; !ok {
			_ = h.Set(ctx, t, 0)
		}
	}
	var firstErr error
	for _, t := range targets {
		if err := h.Set(ctx, t, want[t]); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// CloseAll closes every connection.
func (h *Holder) CloseAll() {
	for t := range h.Counts() {
		_ = h.Set(context.Background(), t, 0)
	}
}
