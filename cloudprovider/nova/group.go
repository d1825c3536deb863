// Package nova is the node-group backend that creates and deletes Nova servers directly.
// Membership lives in each server's metadata (package membership) and nowhere else: after a
// restart the group is rebuilt from one server listing, so nothing leaks and nothing is created
// twice.
package nova

import (
	"context"
	"crypto/rand"
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

// PlaceholderPrefix starts the ids of instances that have no server (yet, or ever).
const PlaceholderPrefix = "openstack-autoscaler:///"

// maxParallelCreates bounds concurrent server POSTs per group.
const maxParallelCreates = 20

// redeleteAfter is how long a requested deletion may stay unfinished before it is issued again.
const redeleteAfter = time.Minute

// Group is a nova-backed node group.
type Group struct {
	cfg      config.NodeGroup
	cluster  string
	compute  *gophercloud.ServiceClient
	imageID  string
	flavorID string
	backoff  openstack.Backoff
	events   Events
	// IDs writes the providerIDs of members (set before the group is used).
	IDs membership.IDs

	mu       sync.Mutex
	members  map[string]*member   // by server ID
	creating map[string]time.Time // server names whose POST has not answered yet
	failed   map[string]nodegroup.ErrorInfo
	deleting map[string]time.Time // server IDs whose deletion was requested
	sem      chan struct{}
	inflight sync.WaitGroup
}

type member struct {
	server servers.Server
	// knownSince is when this provider learned of the server (listing start, or POST answer):
	// a later listing that lacks it means it is gone.
	knownSince time.Time
}

// Events receives what happens to servers, for metrics and logs.
type Events interface {
	ServerCreated(group string)
	ServerCreateFailed(group string, class nodegroup.ErrorClass)
	ServerDeleted(group string)
	ServerDeleteFailed(group string)
}

type noEvents struct{}

func (noEvents) ServerCreated(string)                            {}
func (noEvents) ServerCreateFailed(string, nodegroup.ErrorClass) {}
func (noEvents) ServerDeleted(string)                            {}
func (noEvents) ServerDeleteFailed(string)                       {}

// New makes a group. imageID and flavorID are resolved by the caller (names checked at start).
func New(cfg config.NodeGroup, cluster string, compute *gophercloud.ServiceClient, imageID, flavorID string, events Events) *Group {
	if events == nil {
		events = noEvents{}
	}
	return &Group{
		cfg: cfg, cluster: cluster, compute: compute, imageID: imageID, flavorID: flavorID,
		backoff: openstack.DefaultBackoff, events: events,
		members: map[string]*member{}, creating: map[string]time.Time{},
		failed: map[string]nodegroup.ErrorInfo{}, deleting: map[string]time.Time{},
		sem: make(chan struct{}, maxParallelCreates),
	}
}

// ID is the group's name.
func (g *Group) ID() string { return g.cfg.Name }

// Config is the group's configuration.
func (g *Group) Config() config.NodeGroup { return g.cfg }

// FlavorName of the group's servers.
func (g *Group) FlavorName() string { return g.cfg.Nova.Flavor }

// Debug describes the group.
func (g *Group) Debug() string {
	return fmt.Sprintf("nova group %s (cluster %s): flavor %s, image %s, min %d, max %d",
		g.cfg.Name, g.cluster, g.cfg.Nova.Flavor, g.cfg.Nova.Image, g.cfg.MinSize, g.cfg.MaxSize)
}

// TargetSize counts members not being deleted, creations under way and failed creations the
// autoscaler has not removed yet.
func (g *Group) TargetSize() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.targetLocked()
}

func (g *Group) targetLocked() int {
	n := len(g.creating) + len(g.failed)
	for id, m := range g.members {
		if !g.isDeletingLocked(id, m) {
			n++
		}
	}
	return n
}

func (g *Group) isDeletingLocked(id string, m *member) bool {
	if _, ok := g.deleting[id]; ok {
		return true
	}
	s := m.server
	return s.Status == "DELETED" || s.Status == "SOFT_DELETED" || s.TaskState == "deleting"
}

// HasServer says whether the server is a member.
func (g *Group) HasServer(serverID string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.members[serverID]
	return ok
}

// IncreaseSize starts delta server creations and returns at once.
func (g *Group) IncreaseSize(delta int) error {
	if delta <= 0 {
		return fmt.Errorf("node group %q: size increase must be positive, got %d", g.cfg.Name, delta)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if target := g.targetLocked(); target+delta > g.cfg.MaxSize {
		return fmt.Errorf("node group %q: increasing by %d to %d would exceed maxSize %d: %w",
			g.cfg.Name, delta, target+delta, g.cfg.MaxSize, nodegroup.ErrOutOfRange)
	}
	for i := 0; i < delta; i++ {
		name := fmt.Sprintf("%s-%s-%s", g.cluster, g.cfg.Name, randomSuffix())
		g.creating[name] = time.Now()
		g.inflight.Add(1)
		go g.create(name)
	}
	klog.InfoS("scaling up", "group", g.cfg.Name, "delta", delta, "target", g.targetLocked())
	return nil
}

// Instances lists members, creations under way and failed creations.
func (g *Group) Instances() []nodegroup.Instance {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]nodegroup.Instance, 0, len(g.members)+len(g.creating)+len(g.failed))
	for id, m := range g.members {
		inst := nodegroup.Instance{ID: g.IDs.ProviderID(id), State: nodegroup.Running}
		switch {
		case g.isDeletingLocked(id, m):
			inst.State = nodegroup.Deleting
		case m.server.Status == "BUILD":
			inst.State = nodegroup.Creating
		case nodegroup.FailedCreation(m.server):
			inst.State = nodegroup.Creating
			info := ServerError(m.server)
			inst.Error = &info
		}
		out = append(out, inst)
	}
	for name := range g.creating {
		out = append(out, nodegroup.Instance{ID: g.placeholder(name), State: nodegroup.Creating})
	}
	for id, info := range g.failed {
		info := info
		out = append(out, nodegroup.Instance{ID: id, State: nodegroup.Creating, Error: &info})
	}
	return out
}

func (g *Group) placeholder(serverName string) string {
	return PlaceholderPrefix + g.cfg.Name + "/" + serverName
}

// DeleteInstances deletes the named members' servers (in the background) and drops failed
// creations. Nothing is done if any id is refused.
func (g *Group) DeleteInstances(ids []string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var servers, failures []string
	for _, id := range ids {
		if _, ok := g.failed[id]; ok {
			failures = append(failures, id)
			continue
		}
		if name, ok := strings.CutPrefix(id, g.placeholder("")); ok {
			if _, creating := g.creating[name]; creating {
				return fmt.Errorf("node group %q: %s is still being created; delete it once its server exists", g.cfg.Name, name)
			}
		}
		serverID, ok := membership.ServerID(id)
		m, member := g.members[serverID]
		if !ok || !member {
			return fmt.Errorf("node group %q: %q is not a member (its server is not tagged %s=%s, %s=%s): %w",
				g.cfg.Name, id, membership.ClusterKey, g.cluster, membership.NodeGroupKey, g.cfg.Name, nodegroup.ErrNotMember)
		}
		if g.isDeletingLocked(serverID, m) {
			continue // already going
		}
		servers = append(servers, serverID)
	}
	if target := g.targetLocked(); len(servers) > 0 && target-len(servers)-len(failures) < g.cfg.MinSize {
		return fmt.Errorf("node group %q: deleting %d node(s) would take the size from %d below minSize %d: %w",
			g.cfg.Name, len(servers), target, g.cfg.MinSize, nodegroup.ErrOutOfRange)
	}
	for _, id := range failures {
		delete(g.failed, id)
	}
	for _, id := range servers {
		g.deleting[id] = time.Now()
		g.inflight.Add(1)
		go g.delete(id)
	}
	if len(servers) > 0 {
		klog.InfoS("scaling down", "group", g.cfg.Name, "servers", servers, "target", g.targetLocked())
	}
	return nil
}

// DecreaseTargetSize cancels failed creations the autoscaler has not deleted; it never deletes a
// server.
func (g *Group) DecreaseTargetSize(delta int) error {
	if delta >= 0 {
		return fmt.Errorf("node group %q: target size decrease must be negative, got %d", g.cfg.Name, delta)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if -delta > len(g.failed) {
		return fmt.Errorf("node group %q: cannot lower the target by %d: only %d request(s) are unfulfilled, the other members exist (delete them by node): %w",
			g.cfg.Name, -delta, len(g.failed), nodegroup.ErrOutOfRange)
	}
	n := -delta
	for id := range g.failed {
		if n == 0 {
			break
		}
		delete(g.failed, id)
		n--
	}
	return nil
}

// Observe rebuilds membership from the snapshot's server listing.
func (g *Group) Observe(ctx context.Context, snap *nodegroup.Snapshot) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := map[string]bool{}
	for _, s := range snap.Servers {
		if group, ok := membership.Of(s.Metadata, g.cluster); !ok || group != g.cfg.Name {
			continue
		}
		seen[s.ID] = true
		if m, ok := g.members[s.ID]; ok {
			m.server = s
		} else {
			g.members[s.ID] = &member{server: s, knownSince: snap.Started}
		}
	}
	for id, m := range g.members {
		if !seen[id] && m.knownSince.Before(snap.Started) {
			delete(g.members, id)
			delete(g.deleting, id)
		}
	}
	for id, asked := range g.deleting {
		if _, ok := g.members[id]; !ok {
			delete(g.deleting, id)
			continue
		}
		// A deletion that failed or was lost is issued again.
		if time.Since(asked) > redeleteAfter && g.members[id].server.TaskState != "deleting" {
			g.deleting[id] = time.Now()
			g.inflight.Add(1)
			go g.delete(id)
		}
	}
	return nil
}

// Busy says whether creations or deletions are in flight.
func (g *Group) Busy() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.creating) > 0 || len(g.deleting) > 0
}

// Replace deletes the member's server and, once it is gone, creates one with the same name (its
// node re-registers under the same name, with a new providerID). The target size does not
// change: the new server counts as being created from now on.
func (g *Group) Replace(serverID string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.members[serverID]
	if !ok {
		return fmt.Errorf("node group %q: server %s is not a member: %w", g.cfg.Name, serverID, nodegroup.ErrNotMember)
	}
	if g.isDeletingLocked(serverID, m) {
		return fmt.Errorf("node group %q: server %s is already being deleted", g.cfg.Name, serverID)
	}
	name := m.server.Name
	if _, clash := g.creating[name]; clash {
		return fmt.Errorf("node group %q: a server named %s is already being created", g.cfg.Name, name)
	}
	g.deleting[serverID] = time.Now()
	g.creating[name] = time.Now()
	g.inflight.Add(1)
	go g.replace(serverID, name)
	klog.InfoS("replacing server", "group", g.cfg.Name, "server", name, "id", serverID)
	return nil
}

// Wait blocks until background creations and deletions finish (for shutdown and tests).
func (g *Group) Wait() { g.inflight.Wait() }

func randomSuffix() string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}
