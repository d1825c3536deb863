package framework

import (
	"os"
	"path/filepath"
	"testing"
)

// RunConnectionMetrics builds the agent and the adapter, starts them for the test (see
// StartConnectionMetrics), stops them when it ends and shows the tails of their logs if it failed.
func RunConnectionMetrics(t *testing.T, w *World, window string, opts ...Option) *ConnectionMetrics {
	t.Helper()
	bin := filepath.Dir(Binary(t, "connection-agent"))
	Binary(t, "connection-metrics-adapter")
	dir := t.TempDir()
	logs := func() {
		for _, name := range []string{"connection-agent", "connection-metrics-adapter"} {
			if b, err := os.ReadFile(filepath.Join(dir, name+".log")); err == nil {
				t.Logf("%s log (tail):\n%s", name, Tail(string(b), 3000))
			}
		}
	}
	m, err := StartConnectionMetrics(w, bin, dir, window, opts...)
	if err != nil {
		logs()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			logs()
		}
	})
	return m
}
