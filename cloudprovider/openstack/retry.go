package openstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
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

	// sleep waits d or until ctx ends; nil is the real clock (tests record the waits instead).
	sleep func(ctx context.Context, d time.Duration) error
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
// are used up, or ctx ends. A 429 or 503 with Retry-After is retried after the time it names
// instead of the exponential wait, or returned at once if that is after ctx's deadline. op
// names the call in logs.
func (b Backoff) Retry(ctx context.Context, op string, call func(context.Context) error) error {
	wait := b.Initial
	var err error
	for attempt := 1; ; attempt++ {
		if err = call(ctx); err == nil || !Retryable(err) || attempt >= b.Attempts {
			return err
		}
		next := wait
		if after, ok := retryAfter(err, time.Now()); ok {
			// OpenStack said when it will take calls again: an earlier try only adds to its load,
			// and one after the caller's deadline is of no use to the caller.
			if deadline, ok := ctx.Deadline(); ok && time.Now().Add(after).After(deadline) {
				return fmt.Errorf("%w (OpenStack asks to retry in %s, after the call's deadline)", err, after.Round(time.Second))
			}
			next = after
		}
		klog.V(2).InfoS("retrying OpenStack call", "op", op, "attempt", attempt, "in", next, "err", err)
		if serr := b.wait(ctx, next); serr != nil {
			return errors.Join(err, serr)
		}
		wait = min(2*wait, b.Max)
	}
}

// retryAfter is how long a 429 or 503 asks the caller to wait (Retry-After in seconds or as an
// HTTP-date, RFC 9110 10.2.3); ok is false when it does not say.
func retryAfter(err error, now time.Time) (d time.Duration, ok bool) {
	var unexpected gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &unexpected) || (unexpected.Actual != http.StatusTooManyRequests && unexpected.Actual != http.StatusServiceUnavailable) {
		return 0, false
	}
	value := strings.TrimSpace(unexpected.ResponseHeader.Get("Retry-After"))
	if value == "" {
		return 0, false
	}
	if seconds, err := strconv.ParseUint(value, 10, 32); err == nil {
		return time.Duration(seconds) * time.Second, true
	}
	if at, err := http.ParseTime(value); err == nil {
		return max(at.Sub(now), 0), true
	}
	return 0, false
}

func (b Backoff) wait(ctx context.Context, d time.Duration) error {
	if b.sleep != nil {
		return b.sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
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
