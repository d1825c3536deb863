package main

import (
	"context"
	"strings"
	"testing"
)

// TLS without a client CA would let anyone who reaches the port create and delete servers: it
// is refused unless the operator says so explicitly.
func TestTLSWithoutClientCAIsRefusedUnlessExplicit(t *testing.T) {
	for _, tc := range []struct {
		flags tlsFlags
		want  string
	}{
		{tlsFlags{cert: "tls.crt", key: "tls.key"}, "--tls-client-ca is missing"},
		{tlsFlags{cert: "tls.crt"}, "--tls-cert and --tls-key go together"},
		{tlsFlags{cert: "tls.crt", key: "tls.key", clientCA: "ca.crt", anyClient: true}, "contradict each other"},
		{tlsFlags{cert: "missing.crt", key: "missing.key", anyClient: true}, "--tls-cert/--tls-key"},
	} {
		_, err := serverTLS(context.Background(), tc.flags)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error containing %q", tc.flags, err, tc.want)
		}
	}
}

// Plaintext gRPC lets whoever reaches the port create and delete servers: it is served only on
// loopback unless TLS is configured or the operator says so by name.
func TestPlaintextGRPCOnlyOnLoopback(t *testing.T) {
	withTLS := tlsFlags{cert: "tls.crt", key: "tls.key", clientCA: "ca.crt"}
	for _, tc := range []struct {
		listen  string
		tls     tlsFlags
		allow   bool
		refused bool
	}{
		{"127.0.0.1:8086", tlsFlags{}, false, false},
		{"127.3.2.1:8086", tlsFlags{}, false, false},
		{"[::1]:8086", tlsFlags{}, false, false},
		{"localhost:8086", tlsFlags{}, false, false},
		{":8086", tlsFlags{}, false, true}, // every interface, as a pod's port would be
		{"0.0.0.0:8086", tlsFlags{}, false, true},
		{"[::]:8086", tlsFlags{}, false, true},
		{"10.0.0.5:8086", tlsFlags{}, false, true},
		{"[::ffff:10.0.0.5]:8086", tlsFlags{}, false, true},
		{"provider.example:8086", tlsFlags{}, false, true}, // a name may resolve anywhere
		{":8086", withTLS, false, false},
		{"10.0.0.5:8086", tlsFlags{}, true, false},
	} {
		err := checkPlaintextGRPC(tc.listen, tc.tls, tc.allow)
		if !tc.refused && err != nil {
			t.Errorf("--listen %s (TLS %v, allowed %v): refused: %v", tc.listen, tc.tls.set(), tc.allow, err)
		}
		if tc.refused && (err == nil || !strings.Contains(err.Error(), "--"+allowPlaintextFlag) ||
			!strings.Contains(err.Error(), "--tls-cert") || !strings.Contains(err.Error(), "127.0.0.1")) {
			t.Errorf("--listen %s without TLS: %v; want a refusal naming --tls-cert, 127.0.0.1 and --%s", tc.listen, err, allowPlaintextFlag)
		}
	}
}
