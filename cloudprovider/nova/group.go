// Package nova is the node-group backend that creates and deletes Nova servers directly.
// Membership lives in each server's metadata (package membership) and nowhere else: after a
// restart the group is rebuilt from one server listing, so nothing leaks and nothing is created
// twice.
package nova

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/leader"
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
	// Backoff is the retry policy of its OpenStack calls.
	Backoff openstack.Backoff
	events  Events
	// IDs writes the providerIDs of members (set before the group is used).
	IDs membership.IDs
	// Leader says whether this provider may write on its own initiative: resume deletions and
	// replacements recorded in OpenStack, issue a lost deletion again (nil: always).
	Leader leader.Gate

	mu      sync.Mutex
	members map[string]*member       // by server ID
	faults  map[string]servers.Fault // faults read of failed creations the listing showed without one
	// SuccessorPoll and SuccessorTimeout: how often a replacement's successor is read, and how
	// long it may take to become ACTIVE before the replacement is given up (defaults 5 s, 15 min).
	SuccessorPoll, SuccessorTimeout time.Duration
	// replaceFailed holds, per old server, why its replacement was given up; it stays a member,
	// and the replacement waits for the next Replace (repair's next step).
	replaceFailed map[string]string
	// renaming holds the servers Replace is renaming: a refresh must not resume their
	// replacement (recorded in the name of an earlier, given-up one) meanwhile.
	renaming map[string]bool
	// replacing maps the server under replacement to its name (its successor's); a name in
	// cancelled is a replacement whose node the autoscaler deleted meanwhile: the successor does
	// not count, and goes as soon as it exists.
	replacing map[string]string
	cancelled map[string]bool
	creating  map[string]time.Time // server names whose POST has not answered yet
	failed    map[string]nodegroup.ErrorInfo
	deleting  map[string]time.Time // server IDs whose deletion was requested
	// reserved holds the servers a DeleteInstances call is recording.
	reserved map[string]bool
	recorder *membership.Recorder
	// abandoned holds the names of creations whose scale-up answered an error: deleted once
	// made.
	abandoned map[string]bool
	sem       chan struct{}
	inflight  sync.WaitGroup
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
	g := &Group{
		cfg: cfg, cluster: cluster, compute: compute, imageID: imageID, flavorID: flavorID,
		Backoff: openstack.DefaultBackoff, events: events,
		members: map[string]*member{}, creating: map[string]time.Time{},
		failed: map[string]nodegroup.ErrorInfo{}, deleting: map[string]time.Time{}, faults: map[string]servers.Fault{},
		reserved: map[string]bool{}, abandoned: map[string]bool{},
		replaceFailed: map[string]string{}, replacing: map[string]string{}, cancelled: map[string]bool{}, renaming: map[string]bool{},
		sem: make(chan struct{}, maxParallelCreates),
	}
	g.recorder = &membership.Recorder{Compute: compute, Backoff: &g.Backoff, Timeout: callTimeout}
	return g
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
	n := len(g.failed)
	listed := map[string]bool{}
	for id, m := range g.members {
		listed[m.server.Name] = true
		// A successor of a cancelled replacement (its node was deleted) goes as soon as the
		// replacement sees it: not counted (the old server is named <name>-replaced).
		if !g.isDeletingLocked(id, m) && !g.cancelled[m.server.Name] {
			n++
		}
	}
	for name := range g.creating {
		if !listed[name] && !g.cancelled[name] && !g.abandoned[name] { // a listing may show the server before its POST answers
			n++
		}
	}
	return n
}

func (g *Group) isDeletingLocked(id string, m *member) bool {
	if _, ok := g.deleting[id]; ok {
		return true
	}
	if g.reserved[id] {
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

// IncreaseSize starts delta server creations and answers OK once Nova has accepted every one
// of them: the servers then exist in Nova, so a provider restarted right after the answer, or
// the replica that takes over, finds them and the target the autoscaler asked for. A creation
// that fails is reported as a failed instance, as usual. When ctx ends first the call answers
// an error and makes nothing: the servers it had Nova accept are deleted, and so is any that
// Nova accepts afterwards (the autoscaler, told of a failed scale-up, asks again).
func (g *Group) IncreaseSize(ctx context.Context, delta int) error {
	if delta <= 0 {
		return fmt.Errorf("node group %q: size increase must be positive, got %d", g.cfg.Name, delta)
	}
	g.mu.Lock()
	if target := g.targetLocked(); target+delta > g.cfg.MaxSize {
		g.mu.Unlock()
		return fmt.Errorf("node group %q: increasing by %d to %d would exceed maxSize %d: %w",
			g.cfg.Name, delta, target+delta, g.cfg.MaxSize, nodegroup.ErrOutOfRange)
	}
	posted := make(chan struct{}, delta)
	names := make([]string, delta)
	for i := range names {
		name := fmt.Sprintf("%s-%s-%s", g.cluster, g.cfg.Name, randomSuffix())
		names[i] = name
		g.creating[name] = time.Now()
		g.inflight.Add(1)
		go func() {
			g.create(name)
			posted <- struct{}{}
		}()
	}
	klog.InfoS("scaling up", "group", g.cfg.Name, "delta", delta, "target", g.targetLocked())
	g.mu.Unlock()
	for answered := 0; answered < delta; answered++ {
		select {
		case <-posted:
		case <-ctx.Done():
			g.abandon(names)
			return fmt.Errorf("node group %q: Nova accepted %d of %d servers before the call's deadline: nothing made (those accepted are deleted): %w",
				g.cfg.Name, answered, delta, ctx.Err())
		}
	}
	return nil
}

// abandon undoes the creations of a scale-up that answered an error: servers made are deleted,
// creations still under way are deleted once made, failed ones are not reported.
func (g *Group) abandon(names []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, name := range names {
		if _, creating := g.creating[name]; creating {
			g.abandoned[name] = true
		}
		delete(g.failed, g.placeholder(name))
		for id, m := range g.members {
			if m.server.Name == name && !g.isDeletingLocked(id, m) {
				g.startDeleteLocked(id)
			}
		}
	}
	klog.InfoS("scale-up abandoned at its deadline: its servers are deleted", "group", g.cfg.Name, "servers", names)
}

// Instances lists members, creations under way and failed creations.
func (g *Group) Instances() []nodegroup.Instance {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]nodegroup.Instance, 0, len(g.members)+len(g.creating)+len(g.failed))
	// A replacement's successor that fails is the replacement's to handle (giveUpLocked): shown
	// as a failed creation, the autoscaler would delete it and lower the target.
	successors := map[string]bool{}
	for _, name := range g.replacing {
		if !g.cancelled[name] {
			successors[name] = true
		}
	}
	for id, m := range g.members {
		inst := nodegroup.Instance{ID: g.IDs.ProviderID(id), State: nodegroup.Running}
		switch {
		case g.isDeletingLocked(id, m), g.cancelled[m.server.Name]:
			inst.State = nodegroup.Deleting
		case m.server.Status == "BUILD", successors[m.server.Name] && m.server.Status == "ERROR":
			inst.State = nodegroup.Creating
		case nodegroup.FailedCreation(m.server):
			inst.State = nodegroup.Creating
			s := m.server
			if s.Fault.Message == "" {
				fault, read := g.faults[id]
				if !read {
					break // the next refresh reads its fault: the class depends on it
				}
				s.Fault = fault
			}
			info := ServerError(s)
			inst.Error = &info
		}
		out = append(out, inst)
	}
	listed := map[string]bool{}
	for _, m := range g.members {
		listed[m.server.Name] = true
	}
	for name := range g.creating {
		if !listed[name] {
			out = append(out, nodegroup.Instance{ID: g.placeholder(name), State: nodegroup.Creating})
		}
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
//
// Before it answers OK, the deletion is recorded in Nova: a mark on each server
// (membership.DeletionKey), or, for a server whose state refuses metadata (ERROR, BUILD), the
// DELETE itself. A provider that restarts (or the replica that takes over) finishes what was
// recorded. Calls run side by side (cluster-autoscaler 1.36.1 sends one call per node, all at
// once); the servers a call names are reserved while it records them, so concurrent calls see
// them leaving. A call that cannot record its deletions before ctx ends answers an error and
// deletes nothing: marks that land afterwards are taken off again.
func (g *Group) DeleteInstances(ctx context.Context, ids []string) error {
	servers, failures, replaced, err := g.reserveDeletion(ids)
	if err != nil {
		return err
	}
	if err := g.recordDeletion(ctx, servers); err != nil {
		g.mu.Lock()
		for _, id := range servers {
			delete(g.reserved, id)
		}
		g.mu.Unlock()
		return fmt.Errorf("node group %q: nothing deleted: %w", g.cfg.Name, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, name := range replaced {
		g.cancelled[name] = true
		klog.InfoS("the node of a server under replacement was deleted: its successor goes too", "group", g.cfg.Name, "server", name)
	}
	for _, id := range failures {
		delete(g.failed, id)
	}
	for _, id := range servers {
		delete(g.reserved, id)
		if _, ok := g.members[id]; ok {
			g.startDeleteLocked(id)
		}
	}
	if len(servers) > 0 {
		klog.InfoS("scaling down", "group", g.cfg.Name, "servers", servers, "target", g.targetLocked())
	}
	return nil
}

// recordDeletion records in Nova that the servers are to be deleted, before ctx ends, or
// leaves nothing recorded (membership.Recorder).
func (g *Group) recordDeletion(ctx context.Context, serverIDs []string) error {
	refused, marked, err := g.recorder.Record(ctx, serverIDs)
	if err == nil && len(refused) > 0 {
		// Nova keeps no metadata on a server in ERROR or BUILD: the accepted DELETE is the record.
		if err = g.deleteNow(ctx, refused); err != nil {
			g.recorder.Undo(marked)
		}
	}
	return err
}

// deleteNow sends the DELETE of servers that cannot be marked, within ctx.
func (g *Group) deleteNow(ctx context.Context, serverIDs []string) error {
	var errs error
	for _, id := range serverIDs {
		if err := g.deleteServer(ctx, id); err != nil {
			errs = errors.Join(errs, fmt.Errorf("deleting server %s (its state refuses a deletion mark): %s", id, openstack.Brief(err)))
		}
	}
	return errs
}

func (g *Group) startDeleteLocked(id string) {
	g.deleting[id] = time.Now()
	g.inflight.Add(1)
	go g.delete(id)
}

// reserveDeletion says which servers to delete and which failed creations to drop, or why not,
// and reserves the servers for the call.
func (g *Group) reserveDeletion(ids []string) (servers, failures, replaced []string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range ids {
		if _, ok := g.failed[id]; ok {
			failures = append(failures, id)
			continue
		}
		if name, ok := strings.CutPrefix(id, g.placeholder("")); ok {
			if _, creating := g.creating[name]; creating {
				return nil, nil, nil, fmt.Errorf("node group %q: %s is still being created; delete it once its server exists", g.cfg.Name, name)
			}
		}
		serverID, ok := membership.ServerID(id)
		m, member := g.members[serverID]
		if !ok || !member {
			return nil, nil, nil, fmt.Errorf("node group %q: %q is not a member (its server is not tagged %s=%s, %s=%s): %w",
				g.cfg.Name, id, membership.ClusterKey, g.cluster, membership.NodeGroupKey, g.cfg.Name, nodegroup.ErrNotMember)
		}
		if g.reserved[serverID] {
			return nil, nil, nil, fmt.Errorf("node group %q: server %s is named by another deletion call still being recorded: ask again once it has answered", g.cfg.Name, serverID)
		}
		if g.recorder.Undoing(serverID) {
			// A failed call's unmark is on its way: it would take this call's mark off.
			return nil, nil, nil, fmt.Errorf("node group %q: server %s: the mark of an earlier call that failed is being taken off: nothing deleted, ask again in a moment", g.cfg.Name, serverID)
		}
		if g.renaming[serverID] {
			// The rename decides whether a successor is made: deleting now would leave the
			// successor and the target both up.
			return nil, nil, nil, fmt.Errorf("node group %q: server %s is being renamed for a repair's replacement: nothing deleted, ask again in a moment", g.cfg.Name, serverID)
		}
		if g.isDeletingLocked(serverID, m) {
			// Already going; if repair is replacing it, its successor must not stay.
			if name, ok := g.replacing[serverID]; ok && !g.cancelled[name] && !slices.Contains(replaced, name) {
				replaced = append(replaced, name)
			}
			continue
		}
		servers = append(servers, serverID)
	}
	lowered := len(servers) + len(replaced)
	if target := g.targetLocked(); lowered > 0 && target-lowered-len(failures) < g.cfg.MinSize {
		return nil, nil, nil, fmt.Errorf("node group %q: deleting %d node(s) would take the size from %d below minSize %d: %w",
			g.cfg.Name, lowered, target, g.cfg.MinSize, nodegroup.ErrOutOfRange)
	}
	for _, id := range servers {
		g.reserved[id] = true
	}
	return servers, failures, replaced, nil
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
		return fmt.Errorf("node group %q: cannot lower the target by %d: only %d failed creation(s) can be cancelled; %d server(s) of the group exist and %d are being created, and a server is removed only by deleting its node by name (cluster-autoscaler deletes those whose nodes never register, after --max-node-provision-time): %w",
			g.cfg.Name, -delta, len(g.failed), g.existingLocked(), len(g.creating), nodegroup.ErrOutOfRange)
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

func (g *Group) existingLocked() int {
	n := 0
	for id, m := range g.members {
		if !g.isDeletingLocked(id, m) {
			n++
		}
	}
	return n
}

// Observe rebuilds membership from the snapshot's server listing. It adopts servers whose
// POST outcome was unknown, reads the faults of failed creations the listing shows without one,
// and resumes deletions accepted before a restart (servers marked by membership.Recorder).
func (g *Group) Observe(ctx context.Context, snap *nodegroup.Snapshot) error {
	faults := g.readFaults(ctx, snap)
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, f := range faults {
		g.faults[id] = f
	}
	seen := map[string]bool{}
	for _, s := range snap.Servers {
		if group, ok := membership.Of(s.Metadata, g.cluster); !ok || group != g.cfg.Name {
			continue
		}
		seen[s.ID] = true
		delete(g.failed, g.placeholder(s.Name)) // a POST reported failed did create it
		if m, ok := g.members[s.ID]; ok {
			m.server = s
		} else {
			g.members[s.ID] = &member{server: s, knownSince: snap.Started}
		}
	}
	// A standby writes nothing: what a leader recorded in OpenStack is the new leader's to finish.
	leads, why := leader.Leads(g.Leader)
	for id, m := range g.members {
		if !seen[id] && m.knownSince.Before(snap.Started) {
			delete(g.members, id)
			delete(g.deleting, id)
			delete(g.faults, id)
			delete(g.replaceFailed, id)
		}
	}
	for id, m := range g.members {
		if _, marked := m.server.Metadata[membership.DeletionKey]; marked && !g.isDeletingLocked(id, m) && !g.recorder.UndoneSince(id, snap.Started) && leads {
			klog.InfoS("resuming an accepted deletion recorded on the server", "group", g.cfg.Name, "server", m.server.Name, "id", id)
			g.startDeleteLocked(id)
		}
	}
	if leads {
		g.resumeReplacementsLocked()
	} else {
		klog.V(4).InfoS("standby: resuming nothing recorded in OpenStack", "group", g.cfg.Name, "why", why)
	}
	for id, asked := range g.deleting {
		if _, ok := g.members[id]; !ok {
			delete(g.deleting, id)
			continue
		}
		if _, replacing := g.replacing[id]; replacing {
			continue // its deletion waits for the successor (or the replacement's end)
		}
		// A deletion that failed or was lost is issued again.
		if leads && time.Since(asked) > redeleteAfter && g.members[id].server.TaskState != "deleting" {
			g.startDeleteLocked(id)
		}
	}
	return nil
}

// maxFaultReads bounds the servers whose fault one refresh reads.
const maxFaultReads = 20

// readFaults reads the fault of each failed creation of the group that the listing shows
// without one and that was not read yet.
func (g *Group) readFaults(ctx context.Context, snap *nodegroup.Snapshot) map[string]servers.Fault {
	g.mu.Lock()
	var ids []string
	for _, s := range snap.Servers {
		if group, ok := membership.Of(s.Metadata, g.cluster); !ok || group != g.cfg.Name {
			continue
		}
		if _, read := g.faults[s.ID]; !read && nodegroup.FailedCreation(s) && s.Fault.Message == "" && len(ids) < maxFaultReads {
			ids = append(ids, s.ID)
		}
	}
	g.mu.Unlock()
	out := map[string]servers.Fault{}
	for _, id := range ids {
		s, err := servers.Get(ctx, g.compute, id).Extract()
		if err != nil {
			klog.V(2).InfoS("reading the fault of a failed creation; trying at the next refresh", "server", id, "err", err)
			continue
		}
		out[id] = s.Fault
	}
	return out
}

// Busy says whether creations or deletions are in flight.
func (g *Group) Busy() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.creating) > 0 || len(g.deleting) > 0
}

// Replace makes a successor of the member's server under the same name (its node re-registers
// under the same name, with a new providerID), then deletes the old server. The target size does
// not change: the successor counts as being created from now on. Before it answers, the old
// server is renamed <name>-replaced (membership.ReplacedSuffix): that frees the name and records
// the replacement, so a provider restarted at any point finishes it; a successor that cannot be
// created is tried again at a later refresh, and the old server stays until it exists.
// renameWait bounds the rename that records a replacement.
const renameWait = 3 * time.Second

func (g *Group) Replace(serverID string) error {
	name, err := g.checkReplace(serverID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), renameWait)
	defer cancel()
	err = g.Backoff.Retry(ctx, "rename replaced server", func(ctx context.Context) error {
		_, err := servers.Update(ctx, g.compute, serverID, servers.UpdateOpts{Name: name + membership.ReplacedSuffix}).Extract()
		return err
	})
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.renaming, serverID)
	if err != nil {
		return fmt.Errorf("node group %q: renaming server %s to %s%s to record its replacement: %s",
			g.cfg.Name, serverID, name, membership.ReplacedSuffix, openstack.Brief(err))
	}
	if m, ok := g.members[serverID]; ok {
		m.server.Name = name + membership.ReplacedSuffix
	}
	g.startReplaceLocked(serverID, name)
	klog.InfoS("replacing server", "group", g.cfg.Name, "server", name, "id", serverID)
	return nil
}

func (g *Group) checkReplace(serverID string) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.members[serverID]
	if !ok {
		return "", fmt.Errorf("node group %q: server %s is not a member: %w", g.cfg.Name, serverID, nodegroup.ErrNotMember)
	}
	if g.isDeletingLocked(serverID, m) {
		return "", fmt.Errorf("node group %q: server %s is already being deleted", g.cfg.Name, serverID)
	}
	name := strings.TrimSuffix(m.server.Name, membership.ReplacedSuffix)
	if _, clash := g.creating[name]; clash {
		return "", fmt.Errorf("node group %q: a server named %s is already being created", g.cfg.Name, name)
	}
	for id, other := range g.members {
		if id != serverID && other.server.Name == name {
			return "", fmt.Errorf("node group %q: server %s (%s) already has the name of the successor (a failed successor still being deleted?): try again once it is gone",
				g.cfg.Name, id, other.server.Status)
		}
	}
	// A replacement given up keeps its entry in replacing until its goroutine ends.
	if _, started := g.replacing[serverID]; started || g.renaming[serverID] {
		return "", fmt.Errorf("node group %q: server %s is already being replaced", g.cfg.Name, serverID)
	}
	delete(g.replaceFailed, serverID)
	g.renaming[serverID] = true
	return name, nil
}

// ReplaceFailed says why the last replacement of the server was given up ("" if it was not,
// or a later one was asked): its successor could not be created, went to ERROR, or was not
// ACTIVE within SuccessorTimeout. The server then stays a member and the target is unchanged.
func (g *Group) ReplaceFailed(serverID string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.replaceFailed[serverID]
}

func (g *Group) startReplaceLocked(serverID, name string) {
	g.deleting[serverID] = time.Now()
	g.creating[name] = time.Now()
	g.replacing[serverID] = name
	g.inflight.Add(1)
	go g.replace(serverID, name)
}

// resumeReplacementsLocked goes on with replacements recorded in servers' names by a process
// before this one (or one this process gave up, once Replace is asked again): the old server
// goes once its successor is ACTIVE; a successor in ERROR, or not ACTIVE in time, goes instead.
func (g *Group) resumeReplacementsLocked() {
	names := map[string]string{} // server name -> ID, of servers not being deleted
	for id, m := range g.members {
		if !g.isDeletingLocked(id, m) {
			names[m.server.Name] = id
		}
	}
	for id, m := range g.members {
		name, marked := strings.CutSuffix(m.server.Name, membership.ReplacedSuffix)
		if !marked || g.isDeletingLocked(id, m) || g.replaceFailed[id] != "" || g.renaming[id] {
			continue
		}
		if _, creating := g.creating[name]; creating {
			continue
		}
		if sid, ok := names[name]; ok && sid != id {
			successor := g.members[sid]
			done, failure := successorState(successor.server)
			if failure == "" && !done && time.Since(successor.knownSince) > g.successorTimeout() {
				failure = fmt.Sprintf("successor %s was not ACTIVE within %s (status %s)", sid, g.successorTimeout(), successor.server.Status)
			}
			switch {
			case done:
				klog.InfoS("finishing a replacement: its successor is ACTIVE, deleting the old server", "group", g.cfg.Name, "server", name, "old", id)
				g.startDeleteLocked(id)
			case failure != "":
				g.giveUpLocked(id, name, sid, failure)
			}
			continue
		}
		klog.InfoS("resuming a replacement recorded in the server's name", "group", g.cfg.Name, "server", name, "old", id)
		g.startReplaceLocked(id, name)
	}
}

// Wait blocks until background creations and deletions finish (for shutdown and tests).
func (g *Group) Wait() {
	g.inflight.Wait()
	g.recorder.Wait()
}

func randomSuffix() string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}
