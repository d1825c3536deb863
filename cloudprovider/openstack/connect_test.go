package openstack

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"golang.org/x/time/rate"
)

// keystone is a Keystone v3 over TLS (with httptest's own CA) that issues a token for any
// credentials, counts the requests and keeps the last authentication request's body; its catalog
// has compute at the same address in RegionOne and RegionTwo (public and internal).
func keystone(t *testing.T) (*httptest.Server, *atomic.Int32, *map[string]any) {
	t.Helper()
	var requests atomic.Int32
	var last map[string]any
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.Method != http.MethodPost || r.URL.Path != "/v3/auth/tokens" {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		last = nil
		_ = json.Unmarshal(b, &last)
		w.Header().Set("X-Subject-Token", "tls-token")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"token": map[string]any{
			"methods": []string{"password"}, "expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
			"catalog": []map[string]any{{"type": "compute", "name": "nova", "endpoints": []map[string]string{
				{"interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": srv.URL + "/one/v2.1"},
				{"interface": "internal", "region": "RegionOne", "region_id": "RegionOne", "url": srv.URL + "/one-internal/v2.1"},
				{"interface": "internal", "region": "RegionTwo", "region_id": "RegionTwo", "url": srv.URL + "/two-internal/v2.1"},
				{"interface": "public", "region": "RegionTwo", "region_id": "RegionTwo", "url": srv.URL + "/two/v2.1"}}}},
		}})
	}))
	t.Cleanup(srv.Close)
	return srv, &requests, &last
}

// clouds.yaml's cacert names the private CA of the cloud's endpoints. It is used whether or not
// the caller wraps the transport (the provider wraps it to count calls), as `validate` uses it.
func TestConnectUsesTheCloudsCACert(t *testing.T) {
	srv, requests, _ := keystone(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	clouds := filepath.Join(dir, "clouds.yaml")
	if err := os.WriteFile(clouds, []byte(fmt.Sprintf(`clouds:
  private:
    auth_type: v3applicationcredential
    auth: {auth_url: %s/v3, application_credential_id: id, application_credential_secret: secret}
    region_name: RegionOne
    cacert: %s
`, srv.URL, caFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	var wrapped atomic.Int32
	count := func(next http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) { wrapped.Add(1); return next.RoundTrip(r) })
	}
	for name, wrap := range map[string]func(http.RoundTripper) http.RoundTripper{"as validate does": nil, "as run does": count} {
		clients, err := Connect(context.Background(), CloudRef{CloudsFile: clouds, Cloud: "private"}, wrap)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !strings.HasPrefix(clients.Compute.Endpoint, srv.URL) {
			t.Errorf("%s: compute endpoint %s", name, clients.Compute.Endpoint)
		}
	}
	if requests.Load() != 2 || wrapped.Load() != 1 {
		t.Errorf("keystone saw %d requests, the wrapper %d; want 2 and 1", requests.Load(), wrapped.Load())
	}
}

// A limiter whose tokens are used up makes the next request wait for one; a request whose
// deadline comes before that fails at once without reaching OpenStack (no clock involved: the
// limiter refills one token an hour).
func TestRateLimitedTransport(t *testing.T) {
	var served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) }))
	t.Cleanup(srv.Close)
	limiter := rate.NewLimiter(rate.Every(time.Hour), 3)
	client := &http.Client{Transport: RateLimited(srv.Client().Transport, limiter)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	for range 4 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v2.1/servers/detail", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errs = append(errs, err)
	}
	if served.Load() != 3 || errs[2] != nil || errs[3] == nil || limiter.Tokens() >= 1 {
		t.Errorf("burst 3, 4 calls: %d served, errors %v, %.2f tokens left; want 3 served and the 4th refused", served.Load(), errs, limiter.Tokens())
	}
}

// Connect puts the limiter in front of every call to the cloud, authentication included.
func TestConnectLimitsTheRateOfCalls(t *testing.T) {
	srv, requests, _ := keystone(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	clouds := filepath.Join(dir, "clouds.yaml")
	if err := os.WriteFile(clouds, []byte(fmt.Sprintf(`clouds:
  private:
    auth_type: v3applicationcredential
    auth: {auth_url: %s/v3, application_credential_id: id, application_credential_secret: secret}
    region_name: RegionOne
    cacert: %s
`, srv.URL, caFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	ref := CloudRef{CloudsFile: clouds, Cloud: "private", RateLimit: 1.0 / 3600, Burst: 1}
	clients, err := Connect(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = servers.Get(ctx, clients.Compute, "0b6b2f7e-98b4-4b0e-9d51-5f0b8f1f2c3d").Extract()
	if err == nil || requests.Load() != 1 {
		t.Errorf("1 call an hour, after authenticating: GET server err %v, keystone saw %d requests; want the GET refused before it is sent", err, requests.Load())
	}
}
