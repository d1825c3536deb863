package openstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"k8s.io/klog/v2"
)

// Backoff is the one retry policy for OpenStack calls.
type Backoff struct {
	Attempts int           // total tries, including the first
	Initial  time.Duration // wait before the second try; doubled each time
	Max      time.Duration
}

// DefaultBackoff: 4 tries over about 3.5 s.
var DefaultBackoff = Backoff{Attempts: 4, Initial: 500 * time.Millisecond, Max: 2 * time.Second}

// Retryable says whether an error may pass if the same call is made again: timeouts and
// network errors, 5xx, 409 (conflict: the resource is busy) and 429 (rate limited). 401 is
// handled inside gophercloud by re-authenticating (AllowReauth).
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return true
	}
	for _, code := range []int{http.StatusConflict, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout} {
		if gophercloud.ResponseCodeIs(err, code) {
			return true
		}
	}
	return false
}

// Retry runs call until it succeeds, fails with an error that is not Retryable, the attempts
// are used up, or ctx ends. op names the call in logs.
func (b Backoff) Retry(ctx context.Context, op string, call func(context.Context) error) error {
	wait := b.Initial
	var err error
	for attempt := 1; ; attempt++ {
		if err = call(ctx); err == nil || !Retryable(err) || attempt >= b.Attempts {
			return err
		}
		klog.V(2).InfoS("retrying OpenStack call", "op", op, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, b.Max)
	}
}

// Brief says what OpenStack answered in one line ("HTTP 409: {...}"), for Events and error infos;
// gophercloud's own message also carries the method, the URL and the expected codes.
func Brief(err error) string {
	var unexpected gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &unexpected) {
		return fmt.Sprintf("HTTP %d: %s", unexpected.Actual, strings.TrimSpace(string(unexpected.Body)))
	}
	return err.Error()
}
