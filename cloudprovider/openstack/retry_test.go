package openstack

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
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
