// Package nodegroup is the provider's domain: node groups as cluster-autoscaler sees them, and
// the manager that keeps their state fresh from OpenStack. Every method the autoscaler's calls
// reach answers from memory; OpenStack is listed in the background, once per interval and once
// per service, and servers are created and deleted in the background.
package nodegroup

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/orchestration/v1/stacks"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
)

// State of an instance, with cluster-autoscaler's numbering.
type State int

const (
	Running  State = 1
	Creating State = 2
	Deleting State = 3
)

// ErrorClass of a failed instance, with cluster-autoscaler's numbering.
type ErrorClass int

const (
	// OutOfResources: quota exhausted, no valid host. The autoscaler backs off the group and
	// tries another.
	OutOfResources ErrorClass = 1
	// OtherError is any other failure.
	OtherError ErrorClass = 99
)

// ErrorInfo describes why an instance failed to be created.
type ErrorInfo struct {
	Code    string
	Message string
	Class   ErrorClass
}

// outOfResources are the phrases of OpenStack failures that another group may not have: Nova's
// quotas and capacity, Cinder's quotas on boot volumes ("exceeded for quota", "exceeds allowed
// gigabytes quota"), Neutron's port quota as Nova reports it.
var outOfResources = []string{"quota exceeded", "exceeded for quota", "exceedsavailablequota", "exceeds allowed",
	"no valid host", "exceeded maximum number of retries", "insufficient",
	"maximum number of ports exceeded", "portlimitexceeded", "volumelimitexceeded"}

// FailureClass classifies an OpenStack failure message for the autoscaler: quota errors and "No
// valid host" are out of resources (it then backs off the group and tries another), anything
// else is other. Both backends use it for failed creations.
func FailureClass(message string) ErrorClass {
	m := strings.ToLower(message)
	for _, phrase := range outOfResources {
		if strings.Contains(m, phrase) {
			return OutOfResources
		}
	}
	return OtherError
}

// FailedCreation says whether a server in ERROR failed to be created (it never ran: Nova has no
// launch time for it), which the autoscaler must see as a failed scale-up. A server that ran and
// broke later is a node to repair, not a creation to undo.
func FailedCreation(s servers.Server) bool {
	return s.Status == "ERROR" && s.LaunchedAt.IsZero()
}

// Instance is one member of a group: a server, or a placeholder for one not created yet.
type Instance struct {
	// ID equals the node's spec.providerID once it registers (openstack:///<uuid>); placeholders
	// have ids no node will ever have.
	ID    string
	State State
	Error *ErrorInfo
}

// Group is one node group.
type Group interface {
	ID() string
	Config() config.NodeGroup
	// TargetSize is the size the group is heading to, including servers asked for and not yet
	// registered.
	TargetSize() int
	// IncreaseSize asks for delta more servers. It answers OK once the request is recorded in
	// OpenStack, before ctx ends; an error means nothing is made.
	IncreaseSize(ctx context.Context, delta int) error
	// DeleteInstances deletes exactly these instances (by ID) after checking they are members,
	// lowering the target; nothing is deleted if any is refused. It answers OK only once the
	// deletion is recorded in OpenStack, before ctx ends; an error means nothing was deleted.
	DeleteInstances(ctx context.Context, ids []string) error
	// DecreaseTargetSize cancels requests not yet sent to OpenStack (delta < 0): a member
	// asked for and sent is removed only by deleting its node by name.
	DecreaseTargetSize(delta int) error
	Instances() []Instance
	// HasServer says whether the Nova server is a member.
	HasServer(serverID string) bool
	// FlavorName is the flavor of new members, for the scale-up template ("" if unknown).
	FlavorName() string
	// Debug is a one-line description for the autoscaler's logs.
	Debug() string
	// Observe updates the group from a snapshot of OpenStack (and may make its own calls, one
	// per refresh at most, as the Heat backend does for its stack).
	Observe(ctx context.Context, snap *Snapshot) error
}

// Repairable is a group whose members the node repair loop may replace.
type Repairable interface {
	Group
	// Busy says whether a scale operation (server creation or deletion, stack update) is in
	// flight: nodes are not repaired meanwhile.
	Busy() bool
	// Replace deletes exactly this member's server and makes another in its place, keeping the
	// target size. It returns once the replacement is under way.
	Replace(serverID string) error
	// ReplaceFailed says why the server's last replacement was given up, "" if it was not: the
	// server then stays a member (the target is unchanged) until Replace is asked again.
	ReplaceFailed(serverID string) string
}

// Snapshot is one refresh's view of OpenStack.
type Snapshot struct {
	// Started is when the listing began: anything created before it is in it, if it exists.
	Started time.Time
	// Servers of the cluster (membership metadata set), in the provider's project.
	Servers []servers.Server
	// Stacks of the project, when Heat groups or discovery are configured.
	Stacks []stacks.ListedStack
}

// Errors the autoscaler sees; the gRPC layer maps them to codes.
var (
	ErrNotFound   = errors.New("not found")
	ErrOutOfRange = errors.New("out of range")
	ErrNotMember  = errors.New("not a member")
)
