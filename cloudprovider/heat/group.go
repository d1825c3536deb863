// Package heat is the node-group backend that resizes a Heat stack holding an
// OS::Heat::ResourceGroup or OS::Heat::AutoScalingGroup of servers. Growing sets the stack's
// count parameter; shrinking lowers it and removes exactly the members asked: a ResourceGroup is
// told them in the removal parameter its removal_policies take, an AutoScalingGroup has them
// marked unhealthy first (it removes failed members first). Heat runs one update of a stack at a
// time, so requests that arrive while one runs are merged into the next update instead of failing.
package heat

import (
	"context"
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

// PlaceholderPrefix starts the ids of members with no server yet: heat:///<stack id>/<member>.
const PlaceholderPrefix = "heat:///"

// Group is a heat-backed node group.
//
// The stack is the truth: its count and removal parameters are read at every refresh and again
// right before every update, and what the autoscaler asked is kept as changes to them (a size
// change, members to name), never as an absolute count. A replica that took over, or an operator
// who resized the stack by hand, cannot make this group write a count it read long ago.
type Group struct {
	cfg     config.NodeGroup
	cluster string
	client  *gophercloud.ServiceClient
	// Backoff is the retry policy of its OpenStack calls.
	Backoff openstack.Backoff
	// PollInterval is how often a running stack update is checked.
	PollInterval time.Duration
	// Compute, when set, records accepted removals on the members' servers (see
	// membership.Recorder) so that they survive a restart of the provider.
	Compute *gophercloud.ServiceClient
	// IDs writes the providerIDs of members (set before the group is used).
	IDs membership.IDs
	// Leader says whether this provider may write on its own initiative: resume removals
	// recorded in OpenStack, send or retry stack updates (nil: always).
	Leader leader.Gate

	mu          sync.Mutex
	stackName   string
	stackID     string
	flavor      string
	kind        string // resourceGroupType or autoScalingGroupType
	initialized bool
	stack       stackState // the stack as last read (or written)
	// pendingDelta is the size change asked (increases, cancellations, replacements) and not
	// written to the stack yet.
	pendingDelta int
	// taken is the part of pendingDelta an update being sent (or whose answer was lost)
	// carries: it may be in the stack already, so it is no longer the autoscaler's to take back.
	taken int
	// removal lists members to name in the next update; the count is not lowered for them yet.
	removal []string
	// reserved lists members a DeleteInstances call is recording; recorder records them.
	reserved []string
	recorder *membership.Recorder
	// replacing lists members of removal that repair replaces (their successor is counted in
	// pendingDelta until the update is sent).
	replacing []string
	// inFlight lists the removal an update being sent (or whose answer was lost) carries:
	// those replacements can no longer be cancelled. dropAfterSend lists those of them whose
	// node the autoscaler deleted meanwhile: if the update reaches the stack, their successor
	// goes; if not, the replacement is cancelled.
	inFlight      []string
	dropAfterSend []string
	// replaced lists the replacements updates took, until the member is gone from the stack.
	replaced []replacement
	// sends counts the updates sent, and sending says one is on its way: a refresh that began
	// reading the stack before one was sent or reached Heat may hold an older reading, and does
	// not write it over what the update recorded.
	sends    int
	sending  bool
	lastSent *sentUpdate
	members  []member
	servers  map[string]servers.Server // by server ID, from the Nova listing and look-ups
	lastErr  string
	// blocked says why named removals of an AutoScalingGroup wait (a failed member nobody named
	// would go first), "" when none does.
	blocked string
	// failedSaid holds the status last logged of each failed member nobody named.
	failedSaid map[string]string
	kick       chan struct{}
	// ctx ends when the group is stopped: its update loop and the calls it makes end with it.
	ctx      context.Context
	cancel   context.CancelFunc
	started  bool // the update loop was started
	stopped  bool
	loopDone chan struct{}
	// gone holds members' servers Nova answered 404 for: the member has no server any more.
	gone map[string]bool
}

// stackState is what the provider reads of its stack.
type stackState struct {
	count   int
	removal []string // the removal parameter: members an update was told to remove
	status  string
	reason  string
}

// sentUpdate is an update whose answer was not received: it may have been applied.
type sentUpdate struct {
	count   int
	removal string
	delta   int
	named   []string // the members of the group's removal list the update removes
	// keep lists members the stack's count had left out that this update keeps: they are
	// named again in the group's removal list once it is taken.
	keep   []string
	before []string // the stack's members when it was sent
}

// replacement is a member an update replaces: its successor is a member of the stack that was
// not among before. drop: the autoscaler deleted the member's node meanwhile, so the successor
// is named for removal as soon as it exists (the target already counts it off).
type replacement struct {
	name   string
	before []string
	drop   bool
}

type member struct {
	stack    [2]string // name and id of the nested stack holding the member
	name     string    // the ResourceGroup index ("0", "1", …) or the AutoScalingGroup member name
	physID   string    // the member resource's physical ID: its server's or its nested stack's
	serverID string
	status   string // Heat resource status
	reason   string
	created  time.Time // an AutoScalingGroup removes its failed members, then the others, oldest first
}

// New makes a group for cfg.Heat.Stack.
func New(cfg config.NodeGroup, cluster string, client *gophercloud.ServiceClient) *Group {
	cfg.Heat.SetDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Group{cfg: cfg, cluster: cluster, client: client, Backoff: openstack.DefaultBackoff,
		PollInterval: 2 * time.Second, servers: map[string]servers.Server{},
		kick: make(chan struct{}, 1), ctx: ctx, cancel: cancel, loopDone: make(chan struct{}),
		failedSaid: map[string]string{}}
}

// Stop ends the group's stack updates, for a discovered stack that is no longer a node group:
// it returns once no update of this group can reach the stack, so that a group made for the
// stack afterwards is its only writer. Changes accepted and not written are lost (said in the
// log); removals recorded on the members' servers are resumed by the next group of the stack.
func (g *Group) Stop() {
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		return
	}
	g.stopped = true
	started := g.started
	g.mu.Unlock()
	g.cancel()
	if started {
		<-g.loopDone
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pendingDelta != 0 || len(g.removal) > 0 || g.droppingLocked() > 0 {
		klog.InfoS("node group dropped: the changes it accepted and did not write to its stack are lost", "group", g.cfg.Name,
			"stack", g.stackName, "sizeChange", g.pendingDelta, "removals", g.removal, "successorsToDrop", g.droppingLocked())
	}
}

// stoppedErrLocked is the answer of a stopped group to a change.
func (g *Group) stoppedErrLocked() error {
	if !g.stopped {
		return nil
	}
	return fmt.Errorf("node group %q: stack %s is no longer a node group (its tags changed or it is gone)", g.cfg.Name, g.cfg.Heat.Stack)
}

// SetBounds changes minSize and maxSize (a discovered stack's tags changed).
func (g *Group) SetBounds(minSize, maxSize int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cfg.MinSize, g.cfg.MaxSize = minSize, maxSize
}

// ID is the group's name.
func (g *Group) ID() string { return g.cfg.Name }

// StackID is the ID of the stack the group last read ("" before its first refresh).
func (g *Group) StackID() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stackID
}

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
	var failed []string
	for _, m := range g.unnamedFailedLocked() {
		failed = append(failed, "member "+m.name+" ("+m.status+")")
	}
	msg := ""
	if len(failed) > 0 {
		msg = "; failed and not asked to go, removed first if the group shrinks: " + strings.Join(failed, ", ")
	}
	return fmt.Sprintf("heat group %s (cluster %s): stack %s, count parameter %s, min %d, max %d, stack count %d (%s) %s%s",
		g.cfg.Name, g.cluster, g.cfg.Heat.Stack, g.cfg.Heat.CountParameter, g.cfg.MinSize, g.cfg.MaxSize, g.stack.count, g.stack.status, g.lastErr, msg)
}

// unnamedFailedLocked lists an AutoScalingGroup's failed members that are not on their way out:
// the group removes them first when it shrinks, so they hold back the removals of newer members.
func (g *Group) unnamedFailedLocked() []member {
	if g.kind != autoScalingGroupType {
		return nil
	}
	var out []member
	for _, m := range g.members {
		if strings.HasSuffix(m.status, "_FAILED") && !g.removingLocked(m) {
			out = append(out, m)
		}
	}
	return out
}

// cancellableLocked is how much of the target may be taken back without naming a member: the
// increases not written to the stack (nor being written). Those written are members of the
// stack, or will be, and an update that lowers the count for them names none: a ResourceGroup
// would delete its newest members, an AutoScalingGroup its oldest. A replacement's successor is
// not counted: it goes with its replacement.
func (g *Group) cancellableLocked() int {
	successors := 0
	for _, n := range g.replacing {
		if !slices.Contains(g.inFlight, n) {
			successors++
		}
	}
	return max(g.pendingDelta-g.taken-successors, 0)
}

// TargetSize is the count the group is heading to: the stack's count with the changes not
// written yet.
func (g *Group) TargetSize() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.targetLocked()
}

func (g *Group) targetLocked() int {
	return g.stack.count + g.pendingDelta - len(g.removal) - len(g.reserved) - g.droppingLocked()
}

// droppingLocked counts successors the autoscaler asked away that are not named yet.
func (g *Group) droppingLocked() int {
	n := len(g.dropAfterSend)
	for _, r := range g.replaced {
		if r.drop {
			n++
		}
	}
	return n
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
func (g *Group) IncreaseSize(_ context.Context, delta int) error {
	if delta <= 0 {
		return fmt.Errorf("node group %q: size increase must be positive, got %d", g.cfg.Name, delta)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.stoppedErrLocked(); err != nil {
		return err
	}
	if !g.initialized {
		return fmt.Errorf("node group %q: stack %q not read yet", g.cfg.Name, g.cfg.Heat.Stack)
	}
	if target := g.targetLocked(); target+delta > g.cfg.MaxSize {
		return fmt.Errorf("node group %q: increasing by %d to %d would exceed maxSize %d: %w",
			g.cfg.Name, delta, target+delta, g.cfg.MaxSize, nodegroup.ErrOutOfRange)
	}
	g.pendingDelta += delta
	g.poke()
	klog.InfoS("scaling up", "group", g.cfg.Name, "stack", g.stackName, "delta", delta, "target", g.targetLocked())
	return nil
}

func (g *Group) placeholder(name string) string {
	return PlaceholderPrefix + g.stackID + "/" + name
}

// removingLocked says whether a member is on its way out: named for the next update, named in
// the stack's removal parameter, or being deleted by Heat.
func (g *Group) removingLocked(m member) bool {
	return slices.Contains(g.removal, m.name) || slices.Contains(g.reserved, m.name) || slices.Contains(g.stack.removal, m.name) || strings.HasPrefix(m.status, "DELETE")
}

func (g *Group) liveLocked() int {
	n := 0
	for _, m := range g.members {
		if !g.removingLocked(m) {
			n++
		}
	}
	return n
}

// pendingLocked lists the placeholders of members the target has and the stack does not yet.
func (g *Group) pendingLocked() []string {
	var out []string
	for i := g.liveLocked(); i < g.targetLocked(); i++ {
		out = append(out, g.placeholder(fmt.Sprintf("pending-%d", i)))
	}
	return out
}

// failedCreation says whether a member never came up: it has no server, or its server went to
// ERROR without ever running (nodegroup.FailedCreation, the Nova backend's rule). The autoscaler
// deletes failed creations undrained, and Heat marks a member CREATE_FAILED for causes that
// come after its server booted and the kubelet joined (a WaitCondition or the stack's timeout,
// a heat-engine restart mid-create): CREATE_FAILED alone does not say the node never ran, and
// neither does a server the provider cannot see. A member that ran and failed later is a node
// like any other: repair's business, not a creation for the autoscaler to undo.
func (g *Group) failedCreation(m member) (*nodegroup.ErrorInfo, bool) {
	s, seen := g.servers[m.serverID]
	switch {
	case m.status == "CREATE_FAILED" && (m.serverID == "" || g.gone[m.serverID]):
		return memberError(m), true
	case !seen || !nodegroup.FailedCreation(s):
		return nil, false
	case m.status == "CREATE_FAILED": // Heat's reason quotes Nova's fault
		return memberError(m), true
	}
	return &nodegroup.ErrorInfo{Code: "SERVER_ERROR", Message: "server " + m.serverID + " is in ERROR: " + s.Fault.Message,
		Class: nodegroup.FailureClass(s.Fault.Message)}, true
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
		if info, failed := g.failedCreation(m); failed && !g.removingLocked(m) {
			inst.State, inst.Error = nodegroup.Creating, info
		} else {
			switch {
			case g.removingLocked(m):
				inst.State = nodegroup.Deleting
			case m.status == "INIT_COMPLETE" || m.status == "CREATE_IN_PROGRESS" || g.servers[m.serverID].Status == "BUILD":
				inst.State = nodegroup.Creating
			}
		}
		out = append(out, inst)
	}
	for _, id := range g.pendingLocked() {
		out = append(out, nodegroup.Instance{ID: id, State: nodegroup.Creating})
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

// DeleteInstances removes exactly these members in the next stack update. Before it answers,
// the removal is recorded on the members' servers, so a provider that restarts (or the replica
// that takes over) still removes them.
func (g *Group) DeleteInstances(ctx context.Context, ids []string) error {
	g.mu.Lock()
	if err := g.stoppedErrLocked(); err != nil {
		g.mu.Unlock()
		return err
	}
	var names, serverIDs []string
	pending := g.pendingLocked()
	cancelPending := 0
	var cancelReplace, dropSuccessor []string
	for _, id := range ids {
		name, ok := g.memberNameLocked(id)
		switch {
		case ok:
			m := g.memberLocked(name)
			switch {
			case m.serverID != "" && g.recorder != nil && g.recorder.Undoing(m.serverID):
				err := fmt.Errorf("node group %q: member %s: the mark of an earlier call that failed is being taken off: nothing deleted, ask again in a moment", g.cfg.Name, name)
				g.mu.Unlock()
				return err
			case slices.Contains(g.reserved, name):
				err := fmt.Errorf("node group %q: member %s is named by another deletion call still being recorded: ask again once it has answered", g.cfg.Name, name)
				g.mu.Unlock()
				return err
			case slices.Contains(cancelReplace, name) || slices.Contains(dropSuccessor, name):
			case slices.Contains(g.replacing, name) && !slices.Contains(g.inFlight, name):
				// Repair replaces it and the update is not sent yet: no successor, one fewer.
				cancelReplace = append(cancelReplace, name)
			case g.replacementLocked(name, false) != nil:
				// The update that replaces it is sent or taken: its successor goes instead.
				dropSuccessor = append(dropSuccessor, name)
			case !g.removingLocked(m) && !slices.Contains(names, name):
				names = append(names, name)
				if m.serverID != "" {
					serverIDs = append(serverIDs, m.serverID)
				}
			}
		case slices.Contains(pending, id):
			pending = slices.DeleteFunc(pending, func(p string) bool { return p == id })
			cancelPending++
		case strings.HasPrefix(id, g.placeholder("pending-")):
			err := fmt.Errorf("node group %q: %q is not a pending member of stack %s (pending now: %d): %w",
				g.cfg.Name, id, g.stackName, len(g.pendingLocked()), nodegroup.ErrNotMember)
			g.mu.Unlock()
			return err
		default:
			err := fmt.Errorf("node group %q: %q is not a member of stack %s: %w", g.cfg.Name, id, g.stackName, nodegroup.ErrNotMember)
			g.mu.Unlock()
			return err
		}
	}
	if target := g.targetLocked(); len(names)+len(cancelReplace)+len(dropSuccessor) > 0 && target-len(names)-len(cancelReplace)-len(dropSuccessor)-cancelPending < g.cfg.MinSize {
		err := fmt.Errorf("node group %q: deleting %d node(s) would take the size from %d below minSize %d: %w",
			g.cfg.Name, len(names), target, g.cfg.MinSize, nodegroup.ErrOutOfRange)
		g.mu.Unlock()
		return err
	}
	if err := g.sentPendingErrLocked(cancelPending); err != nil {
		g.mu.Unlock()
		return err
	}
	if err := g.behindFailedErrLocked(names); err != nil {
		g.mu.Unlock()
		return err
	}
	// The names are reserved while their servers are marked: a call running beside this one
	// sees them leaving (minSize) and cannot name them again.
	g.reserved = append(g.reserved, names...)
	if g.recorder == nil {
		g.recorder = &membership.Recorder{Compute: g.Compute, Backoff: &g.Backoff}
	}
	g.mu.Unlock()
	var err error
	if g.Compute != nil {
		// A member's server in ERROR or BUILD keeps no metadata: its removal is recorded only
		// by the update that names it.
		_, _, err = g.recorder.Record(ctx, serverIDs)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reserved = slices.DeleteFunc(g.reserved, func(n string) bool { return slices.Contains(names, n) })
	if err != nil {
		return fmt.Errorf("node group %q: nothing deleted: %w", g.cfg.Name, err)
	}
	// The lock was released while the servers were marked: what was decided must still hold.
	names = slices.DeleteFunc(names, func(n string) bool { return g.removingLocked(g.memberLocked(n)) })
	cancelReplace = slices.DeleteFunc(cancelReplace, func(n string) bool {
		return !slices.Contains(g.replacing, n) || slices.Contains(g.inFlight, n)
	})
	if cancelPending > len(g.pendingLocked()) {
		g.undoMarks(serverIDs)
		return fmt.Errorf("node group %q: the pending members asked to go were created meanwhile: delete them by node: %w", g.cfg.Name, nodegroup.ErrOutOfRange)
	}
	if err := g.sentPendingErrLocked(cancelPending); err != nil {
		g.undoMarks(serverIDs)
		return err
	}
	for _, n := range dropSuccessor {
		switch r := g.replacementLocked(n, true); {
		case r != nil:
			r.drop = true
		case slices.Contains(g.replacing, n) && slices.Contains(g.inFlight, n):
			g.dropAfterSend = append(g.dropAfterSend, n)
		case slices.Contains(g.replacing, n): // the update did not reach the stack meanwhile
			cancelReplace = append(cancelReplace, n)
		}
	}
	g.removal = append(g.removal, names...)
	g.pendingDelta -= cancelPending + len(cancelReplace)
	g.replacing = slices.DeleteFunc(g.replacing, func(n string) bool { return slices.Contains(cancelReplace, n) })
	g.poke()
	klog.InfoS("scaling down", "group", g.cfg.Name, "stack", g.stackName, "members", names, "cancelled", cancelPending,
		"successorsDropped", dropSuccessor, "target", g.targetLocked())
	return nil
}

// sentPendingErrLocked refuses to cancel more pending members than the increases not sent.
func (g *Group) sentPendingErrLocked(cancel int) error {
	if avail := g.cancellableLocked(); cancel > avail {
		return fmt.Errorf("node group %q: %d pending member(s) asked to go, but only %d are not asked of stack %s yet: the others are "+
			"its members (or will be) and are removed only by name: delete their nodes once they exist: %w",
			g.cfg.Name, cancel, avail, g.stackName, nodegroup.ErrOutOfRange)
	}
	return nil
}

// behindFailedErrLocked refuses to name AutoScalingGroup members that a failed member nobody
// named would precede: Heat removes failed members first, oldest first, so the shrink would
// take that member instead of the one named.
func (g *Group) behindFailedErrLocked(names []string) error {
	if g.kind != autoScalingGroupType || len(names) == 0 {
		return nil
	}
	going := func(n string) bool {
		return slices.Contains(names, n) || slices.Contains(g.removal, n) || slices.Contains(g.reserved, n) || slices.Contains(g.stack.removal, n)
	}
	order := shrinkOrder(g.members, going)
	head, blocker := removableHead(order, going)
	for i, m := range order {
		if i >= head && slices.Contains(names, m.name) {
			return fmt.Errorf("node group %q: member %s cannot be removed now: member %s is %s and nobody asked it to go, and an AutoScalingGroup "+
				"removes its failed members first, oldest first: it would go instead; delete or repair member %s first, or delete both",
				g.cfg.Name, m.name, blocker.name, blocker.status, blocker.name)
		}
	}
	return nil
}

// shrinkOrder lists an AutoScalingGroup's members in the order Heat removes them when the
// group shrinks (heat.common.grouputils.get_members): failed members first, then the others,
// each oldest first. going says which members are named to go: they are marked unhealthy
// (failed) before the shrink.
func shrinkOrder(members []member, going func(string) bool) []member {
	out := slices.Clone(members)
	failed := func(m member) bool { return strings.HasSuffix(m.status, "_FAILED") || going(m.name) }
	slices.SortStableFunc(out, func(a, b member) int {
		if fa, fb := failed(a), failed(b); fa != fb {
			if fa {
				return -1
			}
			return 1
		}
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	return out
}

// removableHead counts the members at the head of a shrink order that may go (named, or being
// deleted already) and returns the first that may not: a shrink by more would remove it.
func removableHead(order []member, going func(string) bool) (int, *member) {
	for i := range order {
		if !going(order[i].name) && !strings.HasPrefix(order[i].status, "DELETE") {
			return i, &order[i]
		}
	}
	return len(order), nil
}

// replacementLocked finds the replacement of the member that an update carries: being sent
// (only with taken false), or taken by the stack and not dropped yet.
func (g *Group) replacementLocked(name string, taken bool) *replacement {
	for i := range g.replaced {
		if r := &g.replaced[i]; r.name == name && !r.drop {
			return r
		}
	}
	if !taken && slices.Contains(g.replacing, name) && slices.Contains(g.inFlight, name) && !slices.Contains(g.dropAfterSend, name) {
		return &replacement{name: name}
	}
	return nil
}

// ForgetUnsent drops the increases no update has carried yet: this replica stopped leading and
// they are recorded nowhere in OpenStack. Held, they would be sent the next time it leads, on
// top of what the other replica's autoscaler asked again meanwhile (a stack above its target).
// Removals stay: they are recorded on the members' servers, and naming a member twice removes
// it once.
func (g *Group) ForgetUnsent() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if unsent := g.cancellableLocked(); unsent > 0 {
		g.pendingDelta -= unsent
		klog.InfoS("no longer leading: increases not sent to the stack are dropped; the leading autoscaler asks for what it needs",
			"group", g.cfg.Name, "stack", g.stackName, "dropped", unsent, "target", g.targetLocked())
	}
}

// leads says whether this provider may write on its own initiative (Leader).
func (g *Group) leads() bool {
	ok, why := leader.Leads(g.Leader)
	if !ok {
		klog.V(4).InfoS("standby: no stack update, no resumed removal", "group", g.cfg.Name, "why", why)
	}
	return ok
}

// undoMarks takes off the marks of a call that answers an error after its servers were marked.
func (g *Group) undoMarks(serverIDs []string) {
	if g.Compute != nil && g.recorder != nil {
		g.recorder.Undo(serverIDs)
	}
}

// undoneSinceLocked says whether a failed call's deletion mark is being taken off the server,
// or was after since (a listing begun then may still show it).
func (g *Group) undoneSinceLocked(serverID string, since time.Time) bool {
	return g.recorder != nil && g.recorder.UndoneSince(serverID, since)
}

// Busy says whether a stack update is pending or running.
func (g *Group) Busy() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	// Removals held behind a failed member nobody named are not under way: they wait for that
	// member to be deleted or repaired, and repair waits while the group is busy.
	removing := len(g.removal) > 0 && g.blocked == ""
	return strings.HasSuffix(g.stack.status, "_IN_PROGRESS") || g.pendingDelta != 0 || removing || g.droppingLocked() > 0
}

// Replace names the member in the next update's removal_policies with the count unchanged: Heat
// removes exactly that member and creates a new one (with the next index) in the same update.
func (g *Group) Replace(serverID string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.stoppedErrLocked(); err != nil {
		return err
	}
	name, ok := g.memberNameLocked(g.IDs.ProviderID(serverID))
	if !ok {
		return fmt.Errorf("node group %q: server %s is not a member of stack %s: %w", g.cfg.Name, serverID, g.stackName, nodegroup.ErrNotMember)
	}
	if g.removingLocked(g.memberLocked(name)) {
		return fmt.Errorf("node group %q: member %s is already being removed", g.cfg.Name, name)
	}
	if err := g.behindFailedErrLocked([]string{name}); err != nil {
		return err
	}
	g.removal = append(g.removal, name)
	g.replacing = append(g.replacing, name)
	g.pendingDelta++ // the member's place stays: Heat creates its successor in the same update
	g.poke()
	klog.InfoS("replacing member", "group", g.cfg.Name, "stack", g.stackName, "member", name, "server", serverID)
	return nil
}

// ReplaceFailed is always "": a stack update that fails is sent again (see the update loop),
// and the member stays named in removal_policies until Heat has removed it.
func (g *Group) ReplaceFailed(string) string { return "" }

func (g *Group) memberLocked(name string) member {
	for _, m := range g.members {
		if m.name == name {
			return m
		}
	}
	return member{name: name}
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

// DecreaseTargetSize takes back increases not written to the stack yet.
func (g *Group) DecreaseTargetSize(delta int) error {
	if delta >= 0 {
		return fmt.Errorf("node group %q: target size decrease must be negative, got %d", g.cfg.Name, delta)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.stoppedErrLocked(); err != nil {
		return err
	}
	unfulfilled := min(g.targetLocked()-g.liveLocked(), g.cancellableLocked())
	if -delta > unfulfilled {
		return fmt.Errorf("node group %q: cannot lower the target by %d: only %d requested member(s) are not asked of stack %s yet, the others are its members or will be (the autoscaler removes those that never register by deleting their nodes): %w",
			g.cfg.Name, -delta, max(unfulfilled, 0), g.stackName, nodegroup.ErrOutOfRange)
	}
	g.pendingDelta += delta
	g.poke()
	return nil
}

func (g *Group) poke() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}
