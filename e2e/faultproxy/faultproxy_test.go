package faultproxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// upstream is a Keystone whose catalog names a compute service on the same server; it counts
// the compute requests it applied.
func upstream(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var applied atomic.Int32
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v3/auth/tokens" {
			w.Header().Set("X-Subject-Token", "t")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"token": {"catalog": [{"type": "compute", "endpoints": [{"interface": "public", "url": "%s/v2.1/p"}]}]}}`, srv.URL)
			return
		}
		applied.Add(1)
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"server": {}}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &applied
}

func computeURL(t *testing.T, p *Proxy) string {
	t.Helper()
	resp, err := http.Post(p.KeystoneURL()+"/auth/tokens", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Token struct {
			Catalog []struct {
				Endpoints []struct{ URL string } `json:"endpoints"`
			} `json:"catalog"`
		} `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return doc.Token.Catalog[0].Endpoints[0].URL
}

// The catalog points through the proxy, and a lost answer is applied upstream while its caller
// sees the connection drop; a 503 never reaches upstream.
func TestProxyRewritesTheCatalogAndLosesAnswers(t *testing.T) {
	srv, applied := upstream(t)
	p, err := Start(srv.URL + "/v3")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	compute := computeURL(t, p)
	if strings.HasPrefix(compute, srv.URL) || !strings.HasSuffix(compute, "/v2.1/p") {
		t.Fatalf("catalog not rewritten: %s", compute)
	}
	for _, tc := range []struct {
		fault       Fault
		wantErr     bool
		wantApplied int32
	}{{Pass, false, 1}, {LostAnswer, true, 2}, {Unavailable, false, 2}, {Reset, true, 2}} {
		p.Decide = func(*http.Request) Fault { return tc.fault }
		resp, err := http.Post(compute+"/servers", "application/json", strings.NewReader("{}"))
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err %v", tc.fault, err)
		}
		if err == nil {
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if tc.fault == Unavailable && resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("%s: status %d", tc.fault, resp.StatusCode)
			}
		}
		if got := applied.Load(); got != tc.wantApplied {
			t.Errorf("after %s: upstream applied %d requests, want %d", tc.fault, got, tc.wantApplied)
		}
	}
	if p.Injected() != 3 {
		t.Errorf("injected %d faults, want 3 (%s)", p.Injected(), p)
	}
}
