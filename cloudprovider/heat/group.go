// Package heat is the node-group backend that resizes a Heat stack holding an
// OS::Heat::ResourceGroup or OS::Heat::AutoScalingGroup of servers. Growing sets the stack's
// count parameter; shrinking lowers it and removes exactly the members asked: a ResourceGroup is
// told them in the removal parameter its removal_policies take, an AutoScalingGroup has them
// marked unhealthy first (it removes failed members first). Heat runs one update of a stack at a
// time, so requests that arrive while one runs are merged into the next update instead of failing.
package heat

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodegroup"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack"
)

// PlaceholderPrefix starts the ids of members with no server yet: heat:///<stack id>/<member>.
const PlaceholderPrefix = "heat:///"

// Group is a heat-backed node group.
type Group struct {
	cfg     config.NodeGroup
	cluster string
	client  *gophercloud.ServiceClient
	backoff openstack.Backoff
	// PollInterval is how often a running stack update is checked.
	PollInterval time.Duration

	mu          sync.Mutex
	stackName   string
	stackID     string
	flavor      string
	kind        string // resourceGroupType or autoScalingGroupType
	initialized bool
	desired     int      // the target
	applied     int      // the count the stack was last updated to (or read with)
	removal     []string // members to name in the next update
	removing    map[string]bool
	members     []member
	servers     map[string]servers.Server // by server ID, from the Nova listing
	updating    bool
	lastErr     string
	kick        chan struct{}
	once        sync.Once
	// IDs writes the providerIDs of members (set before the group is used).
	IDs membership.IDs
}

type member struct {
	stack    [2]string // name and id of the nested stack holding the member
	name     string    // the ResourceGroup index ("0", "1", …) or the AutoScalingGroup member name
	serverID string
	status   string // Heat resource status
	reason   string
}

// New makes a group for cfg.Heat.Stack.
func New(cfg config.NodeGroup, cluster string, client *gophercloud.ServiceClient) *Group {
	cfg.Heat.SetDefaults()
	return &Group{cfg: cfg, cluster: cluster, client: client, backoff: openstack.DefaultBackoff,
		PollInterval: 2 * time.Second, removing: map[string]bool{}, servers: map[string]servers.Server{},
		kick: make(chan struct{}, 1)}
}

// SetBounds changes minSize and maxSize (a discovered stack's tags changed).
func (g *Group) SetBounds(minSize, maxSize int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cfg.MinSize, g.cfg.MaxSize = minSize, maxSize
}

// ID is the group's name.
func (g *Group) ID() string { return g.cfg.Name }

// Config is the group's configuration.
func (g *Group) Config() config.NodeGroup {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cfg
}

// FlavorName is the members' flavor: configured, or the stack's "flavor" parameter.
func (g *Group) FlavorName() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cfg.Heat.Flavor != "" {
		return g.cfg.Heat.Flavor
	}
	return g.flavor
}

// Debug describes the group.
func (g *Group) Debug() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return fmt.Sprintf("heat group %s (cluster %s): stack %s, count parameter %s, min %d, max %d, applied %d, updating %v %s",
		g.cfg.Name, g.cluster, g.cfg.Heat.Stack, g.cfg.Heat.CountParameter, g.cfg.MinSize, g.cfg.MaxSize, g.applied, g.updating, g.lastErr)
}

// TargetSize is the count the group is heading to.
func (g *Group) TargetSize() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.desired
}

// HasServer says whether the server is a member of the stack's group.
func (g *Group) HasServer(serverID string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range g.members {
		if m.serverID == serverID {
			return true
		}
	}
	return false
}

// IncreaseSize raises the count; the stack update runs in the background.
func (g *Group) IncreaseSize(delta int) error {
	if delta <= 0 {
		return fmt.Errorf("node group %q: size increase must be positive, got %d", g.cfg.Name, delta)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.initialized {
		return fmt.Errorf("node group %q: stack %q not read yet", g.cfg.Name, g.cfg.Heat.Stack)
	}
	if g.desired+delta > g.cfg.MaxSize {
		return fmt.Errorf("node group %q: increasing by %d to %d would exceed maxSize %d: %w",
			g.cfg.Name, delta, g.desired+delta, g.cfg.MaxSize, nodegroup.ErrOutOfRange)
	}
	g.desired += delta
	g.poke()
	klog.InfoS("scaling up", "group", g.cfg.Name, "stack", g.stackName, "delta", delta, "target", g.desired)
	return nil
}

func (g *Group) placeholder(name string) string {
	return PlaceholderPrefix + g.stackID + "/" + name
}

func (g *Group) liveLocked() int {
	n := 0
	for _, m := range g.members {
		if !g.removing[m.name] && !strings.HasPrefix(m.status, "DELETE") {
			n++
		}
	}
	return n
}

// Instances lists the stack's members, and placeholders for count not applied yet.
func (g *Group) Instances() []nodegroup.Instance {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]nodegroup.Instance, 0, len(g.members)+1)
	for _, m := range g.members {
		inst := nodegroup.Instance{ID: g.placeholder(m.name), State: nodegroup.Running}
		if m.serverID != "" {
			inst.ID = g.IDs.ProviderID(m.serverID)
		}
		switch {
		case g.removing[m.name] || strings.HasPrefix(m.status, "DELETE"):
			inst.State = nodegroup.Deleting
		case strings.HasSuffix(m.status, "_FAILED"):
			inst.State = nodegroup.Creating
			inst.Error = memberError(m)
		case nodegroup.FailedCreation(g.servers[m.serverID]):
			inst.State = nodegroup.Creating
			inst.Error = &nodegroup.ErrorInfo{Code: "SERVER_ERROR", Message: "server " + m.serverID + " is in ERROR", Class: nodegroup.OtherError}
		case m.status == "INIT_COMPLETE" || strings.HasSuffix(m.status, "_IN_PROGRESS") || g.servers[m.serverID].Status == "BUILD":
			inst.State = nodegroup.Creating
		}
		out = append(out, inst)
	}
	for i := g.liveLocked(); i < g.desired; i++ {
		out = append(out, nodegroup.Instance{ID: g.placeholder(fmt.Sprintf("pending-%d", i)), State: nodegroup.Creating})
	}
	return out
}

func memberError(m member) *nodegroup.ErrorInfo {
	reason := m.reason
	if reason == "" {
		reason = "member " + m.name + " is " + m.status
	}
	return &nodegroup.ErrorInfo{Code: m.status, Message: reason, Class: nodegroup.FailureClass(reason)}
}

// DeleteInstances removes exactly these members in the next stack update.
func (g *Group) DeleteInstances(ids []string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var names []string
	cancelPending := 0
	for _, id := range ids {
		name, ok := g.memberNameLocked(id)
		switch {
		case ok:
			if !g.removing[name] {
				names = append(names, name)
			}
		case strings.HasPrefix(id, g.placeholder("pending-")):
			cancelPending++
		default:
			return fmt.Errorf("node group %q: %q is not a member of stack %s: %w", g.cfg.Name, id, g.stackName, nodegroup.ErrNotMember)
		}
	}
	if len(names) > 0 && g.desired-len(names)-cancelPending < g.cfg.MinSize {
		return fmt.Errorf("node group %q: deleting %d node(s) would take the size from %d below minSize %d: %w",
			g.cfg.Name, len(names), g.desired, g.cfg.MinSize, nodegroup.ErrOutOfRange)
	}
	for _, name := range names {
		g.removing[name] = true
		g.removal = append(g.removal, name)
	}
	g.desired -= len(names) + cancelPending
	g.poke()
	klog.InfoS("scaling down", "group", g.cfg.Name, "stack", g.stackName, "members", names, "target", g.desired)
	return nil
}

// Busy says whether a stack update is pending or running.
func (g *Group) Busy() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.updating || g.desired != g.applied || len(g.removal) > 0
}

// Replace names the member in the next update's removal_policies with the count unchanged: Heat
// removes exactly that member and creates a new one (with the next index) in the same update.
func (g *Group) Replace(serverID string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	name, ok := g.memberNameLocked(g.IDs.ProviderID(serverID))
	if !ok {
		return fmt.Errorf("node group %q: server %s is not a member of stack %s: %w", g.cfg.Name, serverID, g.stackName, nodegroup.ErrNotMember)
	}
	if g.removing[name] {
		return fmt.Errorf("node group %q: member %s is already being removed", g.cfg.Name, name)
	}
	g.removing[name] = true
	g.removal = append(g.removal, name)
	g.poke()
	klog.InfoS("replacing member", "group", g.cfg.Name, "stack", g.stackName, "member", name, "server", serverID)
	return nil
}

func (g *Group) memberNameLocked(id string) (string, bool) {
	serverID, isServer := membership.ServerID(id)
	for _, m := range g.members {
		if (isServer && m.serverID == serverID) || id == g.placeholder(m.name) {
			return m.name, true
		}
	}
	return "", false
}

// DecreaseTargetSize cancels count not applied to the stack yet.
func (g *Group) DecreaseTargetSize(delta int) error {
	if delta >= 0 {
		return fmt.Errorf("node group %q: target size decrease must be negative, got %d", g.cfg.Name, delta)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	unfulfilled := g.desired - g.liveLocked()
	if -delta > unfulfilled {
		return fmt.Errorf("node group %q: cannot lower the target by %d: only %d requested member(s) do not exist yet: %w",
			g.cfg.Name, -delta, max(unfulfilled, 0), nodegroup.ErrOutOfRange)
	}
	g.desired += delta
	g.poke()
	return nil
}

func (g *Group) poke() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}
