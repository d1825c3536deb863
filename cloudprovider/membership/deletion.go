package membership

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
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

// markTimeout bounds the marking: DeleteNodes answers within the autoscaler's gRPC timeout
// (5 s by default).
const markTimeout = 3 * time.Second

// MarkDeletion records on each server that its removal was accepted, in parallel. A server
// that cannot be marked in time is still removed by this process; only a restart before its
// removal would forget it, which is logged.
func MarkDeletion(compute *gophercloud.ServiceClient, backoff openstack.Backoff, serverIDs []string) {
	for id, err := range Mark(compute, backoff, serverIDs, DeletionKey, time.Now().UTC().Format(time.RFC3339)) {
		klog.ErrorS(err, "could not record the accepted removal on the server; it is removed all the same unless the provider restarts first", "server", id)
	}
}

// Mark sets key=value in each server's metadata, in parallel, within markTimeout; it returns the
// errors by server (a server already gone is no error).
func Mark(compute *gophercloud.ServiceClient, backoff openstack.Backoff, serverIDs []string, key, value string) map[string]error {
	errs := map[string]error{}
	if len(serverIDs) == 0 {
		return errs
	}
	ctx, cancel := context.WithTimeout(context.Background(), markTimeout)
	defer cancel()
	opts := servers.MetadataOpts{key: value}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range serverIDs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := backoff.Retry(ctx, "mark server", func(ctx context.Context) error {
				_, err := servers.UpdateMetadata(ctx, compute, id, opts).Extract()
				if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
					return nil // already gone
				}
				return err
			})
			if err != nil {
				mu.Lock()
				errs[id] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}
