package openstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
)

func httpErr(code int) error {
	return gophercloud.ErrUnexpectedResponseCode{Actual: code, Expected: []int{200}}
}

func TestRetryable(t *testing.T) {
	for code, want := range map[int]bool{
		http.StatusConflict: true, http.StatusTooManyRequests: true, http.StatusInternalServerError: true,
		http.StatusServiceUnavailable: true, http.StatusGatewayTimeout: true,
		http.StatusBadRequest: false, http.StatusForbidden: false, http.StatusNotFound: false,
	} {
		if got := Retryable(httpErr(code)); got != want {
			t.Errorf("Retryable(HTTP %d) = %v, want %v", code, got, want)
		}
	}
	if !Retryable(context.DeadlineExceeded) {
		t.Error("a timed-out call is not retried")
	}
	if Retryable(errors.New("bad template")) || Retryable(nil) {
		t.Error("a plain error or nil is retried")
	}
}

func TestBackoffRetry(t *testing.T) {
	b := Backoff{Attempts: 3, Initial: time.Millisecond, Max: 2 * time.Millisecond}
	calls := 0
	err := b.Retry(context.Background(), "test", func(context.Context) error {
		calls++
		if calls < 3 {
			return httpErr(http.StatusConflict)
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("409, 409, ok: err = %v after %d calls, want success after 3", err, calls)
	}
	calls = 0
	err = b.Retry(context.Background(), "test", func(context.Context) error { calls++; return httpErr(http.StatusForbidden) })
	if calls != 1 || !gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
		t.Errorf("403: %d calls, err %v; want one call and the 403 surfaced", calls, err)
	}
	calls = 0
	err = b.Retry(context.Background(), "test", func(context.Context) error { calls++; return httpErr(http.StatusServiceUnavailable) })
	if calls != 3 || !gophercloud.ResponseCodeIs(err, http.StatusServiceUnavailable) {
		t.Errorf("503 forever: %d calls, err %v; want 3 calls and the 503 surfaced", calls, err)
	}
}

func TestOperationTemplates(t *testing.T) {
	for url, want := range map[string][2]string{
		"http://h:8774/v2.1/servers/0b6b2f7e-98b4-4b0e-9d51-5f0b8f1f2c3d": {"compute", "GET /servers/{id}"},
		"http://h:8774/v2.1/servers/detail?name=x":                        {"compute", "GET /servers/detail"},
		"http://h:8004/v1/5cbb3bf09a3a421f97ed00d280497bad/stacks/prod-workers/0b6b2f7e-98b4-4b0e-9d51-5f0b8f1f2c3d/resources": {
			"orchestration", "GET /{project}/stacks/{name}/{id}/resources"},
		"http://h:9292/v2/images": {"image", "GET /images"},
	} {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		service, op := Operation(req)
		if service != want[0] || op != want[1] {
			t.Errorf("Operation(%s) = %s %q, want %s %q", url, service, op, want[0], want[1])
		}
	}
}

// nova answers each GET of a server with the next of answers (status and Retry-After header,
// "" for none), the last one for good: 429 as Nova's rate limiting (or the proxy in front of
// it) does, 503 as a Nova in maintenance does; 200 with the server.
func nova(t *testing.T, answers ...[2]string) (*gophercloud.ServiceClient, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := answers[min(int(calls.Add(1)), len(answers))-1]
		code, _ := strconv.Atoi(a[0])
		w.Header().Set("Content-Type", "application/json")
		if a[1] != "" {
			w.Header().Set("Retry-After", a[1])
		}
		w.WriteHeader(code)
		switch code {
		case http.StatusOK:
			_, _ = w.Write([]byte(`{"server": {"id": "0b6b2f7e-98b4-4b0e-9d51-5f0b8f1f2c3d", "name": "w-1", "status": "ACTIVE"}}`))
		case http.StatusTooManyRequests:
			_, _ = w.Write([]byte(`{"overLimit": {"code": 429, "message": "This request was rate-limited.", "retryAfter": "` + a[1] + `"}}`))
		default:
			_, _ = fmt.Fprintf(w, `{"computeFault": {"code": %d, "message": "The server is currently unavailable."}}`, code)
		}
	}))
	t.Cleanup(srv.Close)
	provider := &gophercloud.ProviderClient{HTTPClient: *srv.Client()}
	provider.SetToken("token")
	return &gophercloud.ServiceClient{ProviderClient: provider, Endpoint: srv.URL + "/v2.1/", Type: "compute"}, &calls
}

func getServer(compute *gophercloud.ServiceClient) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := servers.Get(ctx, compute, "0b6b2f7e-98b4-4b0e-9d51-5f0b8f1f2c3d").Extract()
		return err
	}
}

// OpenStack's back-pressure: a 429 or 503 with Retry-After (in seconds or as an HTTP-date) is
// retried after that long, not after the exponential wait, which would only add to the load.
func TestRetryWaitsAsRetryAfterSays(t *testing.T) {
	at := time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)
	compute, calls := nova(t, [2]string{"429", "7"}, [2]string{"503", at}, [2]string{"503", "soon"}, [2]string{"200", ""})
	var waits []time.Duration
	b := Backoff{Attempts: 4, Initial: time.Millisecond, Max: time.Second,
		sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }}
	if err := b.Retry(context.Background(), "get server", getServer(compute)); err != nil || calls.Load() != 4 {
		t.Fatalf("429, 503, 503, 200: err %v after %d calls, want success after 4", err, calls.Load())
	}
	if len(waits) != 3 || waits[0] != 7*time.Second || waits[1] < 25*time.Second || waits[1] > 30*time.Second || waits[2] > b.Max {
		t.Errorf("waits %v: want 7s (Retry-After: 7), about 30s (Retry-After: %s), then the exponential wait (Retry-After: soon is not a time)", waits, at)
	}
}

// A Retry-After that ends after the call's deadline cannot be honoured: the error is returned at
// once, without another call that OpenStack said it would refuse.
func TestRetryAfterPastTheDeadlineFailsAtOnce(t *testing.T) {
	for _, answer := range [][2]string{{"429", "120"}, {"503", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}} {
		compute, calls := nova(t, answer, [2]string{"200", ""})
		var waits []time.Duration
		b := Backoff{Attempts: 4, Initial: time.Millisecond, Max: time.Second,
			sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := b.Retry(ctx, "get server", getServer(compute))
		cancel()
		code, _ := strconv.Atoi(answer[0])
		if !gophercloud.ResponseCodeIs(err, code) || calls.Load() != 1 || len(waits) != 0 {
			t.Errorf("%s with Retry-After: %s and 10s left: err %v after %d calls and waits %v; want the %s at once",
				answer[0], answer[1], err, calls.Load(), waits, answer[0])
		}
	}
}
