package membership

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack"
)

// DeletionKey marks a server whose removal the autoscaler asked for and the provider accepted.
// It is set before DeleteNodes answers, so a provider that is restarted (or the replica that
// takes over) finishes the removal instead of forgetting it. Its value is when it was asked.
// Nova refuses it on a server in ERROR; such a server is a failed creation, which the
// autoscaler deletes again after a restart.
const DeletionKey = "openstack-autoscaler:delete-requested"

// ReplacedSuffix ends the name of a member's server that node repair is replacing: the server
// is renamed <name>-replaced before the replacement is accepted, its successor takes <name>, and
// the old server is deleted once the successor exists. The name is the record because Nova
// refuses metadata changes on a server in ERROR (409), the state repair replaces most, while
// it accepts a rename in any state; a provider restarted at any point finishes the replacement.
const ReplacedSuffix = "-replaced"

// markParallelism bounds the requests in flight: a scale-down of a hundred nodes must not
// arrive at Nova as a hundred simultaneous calls.
const markParallelism = 10

// Mark sets key=value in each server's metadata, markParallelism at a time, within ctx; it
// returns the errors by server (a server already gone is no error). A server whose state
// refuses metadata (RefusedForState) is not asked again.
func Mark(ctx context.Context, compute *gophercloud.ServiceClient, backoff openstack.Backoff, serverIDs []string, key, value string) map[string]error {
	opts := servers.MetadataOpts{key: value}
	return eachServer(ctx, backoff, serverIDs, "mark server", func(ctx context.Context, id string) error {
		_, err := servers.UpdateMetadata(ctx, compute, id, opts).Extract()
		return err
	})
}

// Unmark deletes key from each server's metadata, as Mark sets it.
func Unmark(ctx context.Context, compute *gophercloud.ServiceClient, backoff openstack.Backoff, serverIDs []string, key string) map[string]error {
	return eachServer(ctx, backoff, serverIDs, "unmark server", func(ctx context.Context, id string) error {
		return servers.DeleteMetadatum(ctx, compute, id, key).ExtractErr()
	})
}

// RefusedForState says whether Nova refused a metadata change for the server's state: it keeps
// no metadata on a server in ERROR or BUILD ("Cannot 'update metadata' instance ... while it
// is in vm_state error"), and asking again does not help while the state lasts.
func RefusedForState(err error) bool {
	var unexpected gophercloud.ErrUnexpectedResponseCode
	return errors.As(err, &unexpected) && unexpected.Actual == http.StatusConflict && strings.Contains(string(unexpected.Body), "vm_state")
}

// eachServer runs call for each server, markParallelism at a time, retrying as backoff says;
// it returns the errors by server (a server already gone is no error).
func eachServer(ctx context.Context, backoff openstack.Backoff, serverIDs []string, op string, call func(context.Context, string) error) map[string]error {
	errs := map[string]error{}
	if len(serverIDs) == 0 {
		return errs
	}
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(markParallelism)
	for _, id := range serverIDs {
		g.Go(func() error {
			var refused error
			err := backoff.Retry(ctx, op, func(ctx context.Context) error {
				err := call(ctx, id)
				switch {
				case gophercloud.ResponseCodeIs(err, http.StatusNotFound):
					return nil // already gone (or, for Unmark, never marked)
				case RefusedForState(err):
					refused = err
					return nil // not retried: the state lasts
				}
				return err
			})
			if err == nil {
				err = refused
			}
			if err != nil {
				mu.Lock()
				errs[id] = err
				mu.Unlock()
			}
			return nil // collected by server in errs
		})
	}
	_ = g.Wait()
	return errs
}

// Recorder records accepted deletions on a group's servers before the call that asked for them
// answers, and takes the marks of a call that failed off again. One per group.
type Recorder struct {
	Compute *gophercloud.ServiceClient
	// Backoff is the group's retry policy (read at each call).
	Backoff *openstack.Backoff
	// Timeout bounds a mark's requests, which outlive the call that sent them.
	Timeout time.Duration

	mu      sync.Mutex
	undoing map[string]int // servers whose marks are being taken off
	// undoneAt is when each server's mark was last taken off: a listing begun before that may
	// still show it.
	undoneAt map[string]time.Time
	inflight sync.WaitGroup
}

// Record marks the servers for deletion before ctx ends. It returns the servers whose state
// refuses metadata (ERROR, BUILD): the caller records those by sending their DELETE, and calls
// Undo(marked) if that fails. On an error nothing stays recorded: the marks are not cancelled
// with ctx (Nova may apply a request whose caller gave up), so each outcome is awaited, in the
// background once ctx has ended, and every mark that landed is taken off. Meanwhile Undoing
// says so, and no refresh may resume those deletions.
func (r *Recorder) Record(ctx context.Context, serverIDs []string) (refused, marked []string, err error) {
	if len(serverIDs) == 0 {
		return nil, nil, nil
	}
	stamp := time.Now().UTC().Format(time.RFC3339)
	done := make(chan map[string]error, 1)
	go func() {
		markCtx, cancel := context.WithTimeout(context.Background(), r.timeout())
		defer cancel()
		done <- Mark(markCtx, r.Compute, *r.Backoff, serverIDs, DeletionKey, stamp)
	}()
	var errs map[string]error
	select {
	case errs = <-done:
	case <-ctx.Done():
		// Every server is unmarked, not only those whose mark is known to have landed: a mark
		// whose answer was lost may have landed too (a 404 from the unmark is no error).
		r.startUndo(serverIDs, func() { <-done })
		return nil, nil, fmt.Errorf("recording the deletion of %d server(s) in Nova did not finish before the call's deadline: %w", len(serverIDs), ctx.Err())
	}
	var failed error
	for _, id := range serverIDs {
		switch err := errs[id]; {
		case err == nil:
			marked = append(marked, id)
		case RefusedForState(err):
			refused = append(refused, id)
		default:
			failed = errors.Join(failed, fmt.Errorf("marking server %s for deletion: %s", id, openstack.Brief(err)))
		}
	}
	if failed != nil {
		var undo []string
		for _, id := range serverIDs {
			if !RefusedForState(errs[id]) {
				undo = append(undo, id) // a failed mark's request may have landed all the same
			}
		}
		r.Undo(undo)
		return nil, nil, failed
	}
	return refused, marked, nil
}

// Undo takes the deletion marks off the servers, in the background.
func (r *Recorder) Undo(serverIDs []string) {
	r.startUndo(serverIDs, nil)
}

// startUndo unmarks the servers in the background, once landed (when given) has returned: the
// marks' own requests must be over first, or one could land after its unmark.
func (r *Recorder) startUndo(serverIDs []string, landed func()) {
	if len(serverIDs) == 0 {
		return
	}
	r.mu.Lock()
	if r.undoing == nil {
		r.undoing = map[string]int{}
	}
	for _, id := range serverIDs {
		r.undoing[id]++
	}
	r.mu.Unlock()
	r.inflight.Add(1)
	go func() {
		defer r.inflight.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 3*r.timeout())
		defer cancel()
		if landed != nil {
			landed()
		}
		for id, err := range Unmark(ctx, r.Compute, *r.Backoff, serverIDs, DeletionKey) {
			klog.ErrorS(err, "could not take off the deletion mark of a call that failed: the server stays a member, but a provider restarted before the mark is gone would delete it", "server", id)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		now := time.Now()
		if r.undoneAt == nil {
			r.undoneAt = map[string]time.Time{}
		}
		for id, at := range r.undoneAt {
			if now.Sub(at) > time.Hour {
				delete(r.undoneAt, id)
			}
		}
		for _, id := range serverIDs {
			if r.undoing[id]--; r.undoing[id] <= 0 {
				delete(r.undoing, id)
				r.undoneAt[id] = now
			}
		}
	}()
}

// Undoing says whether the server's deletion mark is being taken off (a failed call's).
func (r *Recorder) Undoing(serverID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.undoing[serverID] > 0
}

// UndoneSince says whether a listing begun at since may show a mark that a failed call's
// undo is taking off, or took off after since: such a mark must not be resumed.
func (r *Recorder) UndoneSince(serverID string, since time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.undoing[serverID] > 0 || r.undoneAt[serverID].After(since)
}

// Wait blocks until marks being taken off are (for tests and shutdown).
func (r *Recorder) Wait() { r.inflight.Wait() }

func (r *Recorder) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return 30 * time.Second
}
