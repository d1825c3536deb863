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
