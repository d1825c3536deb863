package heat

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/orchestration/v1/stackresources"
	"github.com/gophercloud/gophercloud/v2/openstack/orchestration/v1/stacks"
	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodegroup"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack"
)

// The two kinds of Heat group a node group's stack may hold.
const (
	resourceGroupType    = "OS::Heat::ResourceGroup"
	autoScalingGroupType = "OS::Heat::AutoScalingGroup"
)

// markReason is the status reason of the AutoScalingGroup members this provider marks
// unhealthy for removal.
const markReason = "removed by openstack-autoscaler"

// Observe reads the stack's parameters and status (one call) and its members (one call: its
// resources two levels deep). Servers whose removal was accepted before a restart (marked by
// membership.Recorder) are named for removal again.
func (g *Group) Observe(ctx context.Context, snap *nodegroup.Snapshot) error {
	var found *stacks.ListedStack
	for i, s := range snap.Stacks {
		if s.Name == g.cfg.Heat.Stack || s.ID == g.cfg.Heat.Stack {
			found = &snap.Stacks[i]
		}
	}
	if found == nil {
		return fmt.Errorf("stack %q not found in the project: create it (see examples/heat-node-group.yaml) or fix heat.stack", g.cfg.Heat.Stack)
	}
	leads := g.leads() // before g.mu: a change of leadership runs hooks that take it
	g.mu.Lock()
	// An update on its way when this refresh began may reach the stack after the refresh read
	// it: what it recorded is newer, as is what one sent after the refresh began.
	sends, sending := g.sends, g.sending
	g.mu.Unlock()
	tagged := map[string]bool{}
	byID := map[string]servers.Server{}
	for _, s := range snap.Servers {
		byID[s.ID] = s
		if group, ok := membership.Of(s.Metadata, g.cluster); ok && group == g.cfg.Name {
			tagged[s.ID] = true
		}
	}
	members, kind, err := g.readMembers(ctx, found.Name, found.ID, tagged)
	if err != nil {
		return err
	}
	looked, gone := g.lookUpUnseen(ctx, members, byID)
	maps.Copy(byID, looked)
	state, flavor, err := g.readStack(ctx, found.Name, found.ID, kind)
	if err != nil {
		return err
	}
	state.derive(kind, members)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stackName, g.stackID, g.kind, g.flavor = found.Name, found.ID, kind, flavor
	g.servers, g.gone, g.initialized = byID, gone, true
	if g.sends == sends && !sending {
		g.stack, g.members = state, members
		// An update whose answer was lost is in the stack: it was applied. Recorded now, or its
		// removal would count twice (the stack's new count less the removal still pending).
		if g.lastSent != nil && g.lastSent.appliedIn(state, kind) {
			g.commitLostLocked(found.Name, state.status)
		}
	}
	present := map[string]bool{}
	for _, m := range members {
		present[m.name] = true
		if _, marked := byID[m.serverID].Metadata[membership.DeletionKey]; marked && !g.removingLocked(m) && !g.undoneSinceLocked(m.serverID, snap.Started) && leads {
			klog.InfoS("resuming an accepted removal recorded on the member's server", "group", g.cfg.Name, "member", m.name, "server", m.serverID)
			g.removal = append(g.removal, m.name)
		}
	}
	// A member named for removal that went away by other hands is not counted off again.
	g.removal = slices.DeleteFunc(g.removal, func(name string) bool { return !present[name] })
	g.replacing = slices.DeleteFunc(g.replacing, func(name string) bool { return !slices.Contains(g.removal, name) })
	g.dropSuccessorsLocked()
	if state.status == "UPDATE_FAILED" {
		g.lastErr = "stack update failed: " + state.reason
	}
	g.sayFailedLocked()
	if !g.started && !g.stopped {
		g.started = true
		go g.updateLoop()
	}
	if g.needsUpdateLocked() {
		g.poke()
	}
	return nil
}

// sayFailedLocked logs, once per member and status, an AutoScalingGroup's failed members nobody
// asked to go: Heat removes them first when the group shrinks, so a removal named behind them
// is refused (or held) until they are deleted or repaired.
func (g *Group) sayFailedLocked() {
	failed := map[string]string{}
	for _, m := range g.unnamedFailedLocked() {
		failed[m.name] = m.status
		if g.failedSaid[m.name] != m.status {
			klog.InfoS("member failed and nobody asked it to go: the group removes it first when it shrinks; removals of newer members wait until it is deleted or repaired",
				"group", g.cfg.Name, "stack", g.stackName, "member", m.name, "status", m.status, "reason", m.reason, "server", m.serverID)
		}
	}
	g.failedSaid = failed
}

// maxLookUps bounds the servers one refresh reads one by one.
const maxLookUps = 20

// lookUpUnseen reads the servers of CREATE_FAILED members that the snapshot lacks: it holds the
// servers carrying the cluster's metadata only, and a stack's servers need not carry it. Whether
// such a server ever ran decides whether its member is a failed creation; it returns the servers
// read, and those Nova no longer has. A server that cannot be read stays unseen, and an unseen
// server is not taken for one that never ran.
func (g *Group) lookUpUnseen(ctx context.Context, members []member, seen map[string]servers.Server) (map[string]servers.Server, map[string]bool) {
	found, gone := map[string]servers.Server{}, map[string]bool{}
	if g.Compute == nil {
		return found, gone
	}
	for _, m := range members {
		if _, ok := seen[m.serverID]; ok || m.status != "CREATE_FAILED" || m.serverID == "" {
			continue
		}
		if len(found)+len(gone) >= maxLookUps {
			klog.V(2).InfoS("more CREATE_FAILED members with unlisted servers than one refresh reads; the others are read at the next", "group", g.cfg.Name)
			break
		}
		var s *servers.Server
		err := g.Backoff.Retry(ctx, "get server", func(ctx context.Context) error {
			var err error
			s, err = servers.Get(ctx, g.Compute, m.serverID).Extract()
			return err
		})
		switch {
		case gophercloud.ResponseCodeIs(err, http.StatusNotFound):
			gone[m.serverID] = true
		case err != nil:
			klog.V(2).InfoS("reading the server of a CREATE_FAILED member; it is not taken for a failed creation until it is read",
				"group", g.cfg.Name, "member", m.name, "server", m.serverID, "err", err)
		default:
			found[m.serverID] = *s
		}
	}
	return found, gone
}

// needsUpdateLocked says whether the stack must be updated: a change is asked, or an update
// that was to remove members failed and they are still there.
func (g *Group) needsUpdateLocked() bool {
	if !g.initialized {
		return false
	}
	if g.pendingDelta != 0 || len(g.removal) > 0 {
		return true
	}
	return g.stack.status == "UPDATE_FAILED" && len(g.unfinishedRemovalsLocked()) > 0
}

// unfinishedRemovalsLocked lists the members the stack's removal parameter names that are
// still there.
func (g *Group) unfinishedRemovalsLocked() []string {
	var out []string
	for _, m := range g.members {
		if slices.Contains(g.stack.removal, m.name) && !strings.HasPrefix(m.status, "DELETE") {
			out = append(out, m.name)
		}
	}
	return out
}

// readStack reads the stack's count and removal parameters, its status and flavor.
func (g *Group) readStack(ctx context.Context, name, id, kind string) (stackState, string, error) {
	var stack *stacks.RetrievedStack
	err := g.Backoff.Retry(ctx, "get stack", func(ctx context.Context) error {
		var err error
		stack, err = stacks.Get(ctx, g.client, name, id).Extract()
		return err
	})
	if err != nil {
		return stackState{}, "", fmt.Errorf("reading stack %s: %w", name, err)
	}
	raw, ok := stack.Parameters[g.cfg.Heat.CountParameter]
	if !ok {
		return stackState{}, "", fmt.Errorf("stack %s has no parameter %q: set heat.countParameter to the parameter holding the ResourceGroup's count", name, g.cfg.Heat.CountParameter)
	}
	count, err := strconv.Atoi(raw)
	if err != nil {
		return stackState{}, "", fmt.Errorf("stack %s: parameter %s = %q is not a number", name, g.cfg.Heat.CountParameter, raw)
	}
	state := stackState{count: count, status: stack.Status, reason: stack.StatusReason}
	if kind == resourceGroupType {
		removal, ok := stack.Parameters[g.cfg.Heat.RemovalParameter]
		if !ok {
			return stackState{}, "", fmt.Errorf("stack %s has no parameter %q: bind the ResourceGroup's removal_policies resource_list to a comma_delimited_list parameter and name it in heat.removalParameter", name, g.cfg.Heat.RemovalParameter)
		}
		state.removal = ParseList(removal)
	}
	return state, stack.Parameters["flavor"], nil
}

// derive gives an AutoScalingGroup's state the removal its stack holds without a parameter for
// it: the members marked unhealthy by this provider that the count leaves out (the stack has
// more live members than its count). Heat removes failed members first; until it begins
// deleting them they are CHECK_FAILED, and the deletion recorded on their servers must not
// count them off a second time.
func (s *stackState) derive(kind string, members []member) {
	if kind != autoScalingGroupType {
		return
	}
	live := 0
	for _, m := range members {
		if !strings.HasPrefix(m.status, "DELETE") {
			live++
		}
	}
	s.removal = nil
	for _, m := range members {
		if len(s.removal) >= live-s.count {
			break
		}
		if m.status == "CHECK_FAILED" && m.reason == markReason {
			s.removal = append(s.removal, m.name)
		}
	}
}

// ParseList reads a comma_delimited_list parameter as Heat shows it: "3,4" (or, from some
// releases, "['3', '4']").
func ParseList(raw string) []string {
	raw = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(raw), "["), "]")
	var out []string
	for _, item := range strings.Split(raw, ",") {
		if item = strings.Trim(strings.TrimSpace(item), `'"`); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// readMembers lists the group's members with their servers: a member is either a server itself
// or a nested stack holding one. It also says which kind of group the stack holds.
//
// A member that is a nested stack may hold several servers: the node is the one tagged with
// the group's membership metadata (tagged), or the only one.
func (g *Group) readMembers(ctx context.Context, name, id string, tagged map[string]bool) ([]member, string, error) {
	var all []stackresources.Resource
	err := g.Backoff.Retry(ctx, "list stack resources", func(ctx context.Context) error {
		pages, err := stackresources.List(g.client, name, id, stackresources.ListOpts{Depth: 2}).AllPages(ctx)
		if err != nil {
			return err
		}
		all, err = stackresources.ExtractResources(pages)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("listing resources of stack %s: %w", name, err)
	}
	groupName, kind := g.cfg.Heat.ResourceGroup, ""
	for _, r := range all {
		if (r.Type != resourceGroupType && r.Type != autoScalingGroupType) || r.ParentResource != "" {
			continue
		}
		if groupName == "" && kind != "" {
			return nil, "", fmt.Errorf("stack %s has several groups (%s and %s): name one in heat.resourceGroup", name, kind, r.Name)
		}
		if groupName == "" || groupName == r.Name {
			kind = r.Type
			if g.cfg.Heat.ResourceGroup != "" {
				break
			}
		}
	}
	if kind == "" {
		return nil, "", fmt.Errorf("stack %s has no %s or %s: the stack must hold the group's servers in one", name, resourceGroupType, autoScalingGroupType)
	}
	if groupName == "" {
		for _, r := range all {
			if r.Type == kind && r.ParentResource == "" {
				groupName = r.Name
			}
		}
	}
	// Servers inside members' nested stacks, by the nested stack's ID (member names repeat
	// across groups: every ResourceGroup has a member "0").
	nested := map[string][]string{}
	var groupStack string
	for _, r := range all {
		if r.Type == "OS::Nova::Server" && r.PhysicalID != "" {
			if s := stackOf(r.Links)[1]; s != "" && s != id {
				nested[s] = append(nested[s], r.PhysicalID)
			}
		}
		if r.Name == groupName && r.ParentResource == "" {
			groupStack = r.PhysicalID
		}
	}
	var members []member
	for _, r := range all {
		// The group's members are the resources of the group's own nested stack.
		if r.ParentResource != groupName || (groupStack != "" && stackOf(r.Links)[1] != groupStack) {
			continue
		}
		m := member{name: r.Name, physID: r.PhysicalID, status: r.Status, reason: r.StatusReason, stack: stackOf(r.Links),
			created: r.CreationTime}
		if r.Type == "OS::Nova::Server" {
			m.serverID = r.PhysicalID
		} else {
			serverID, err := nodeServer(nested[r.PhysicalID], tagged)
			if err != nil {
				return nil, "", fmt.Errorf("stack %s, member %s: %w", name, r.Name, err)
			}
			m.serverID = serverID
		}
		members = append(members, m)
	}
	return members, kind, nil
}

// nodeServer picks the node among a member's servers.
func nodeServer(ids []string, tagged map[string]bool) (string, error) {
	if len(ids) <= 1 {
		return strings.Join(ids, ""), nil
	}
	var node []string
	for _, id := range ids {
		if tagged[id] {
			node = append(node, id)
		}
	}
	if len(node) != 1 {
		return "", fmt.Errorf("it holds %d servers and %d carry the group's metadata (%s, %s): set that metadata on the node's server only",
			len(ids), len(node), membership.ClusterKey, membership.NodeGroupKey)
	}
	return node[0], nil
}

// stackOf reads the "stack" link of a resource: the (nested) stack holding it, as name/id.
func stackOf(links []gophercloud.Link) [2]string {
	for _, l := range links {
		if l.Rel != "stack" {
			continue
		}
		parts := strings.Split(strings.TrimRight(l.Href, "/"), "/")
		if len(parts) >= 2 {
			return [2]string{parts[len(parts)-2], parts[len(parts)-1]}
		}
	}
	return [2]string{}
}

// errHeld says an update was not sent: nothing it may send now would remove only the members
// named. It is planned again at the next refresh or request.
var errHeld = errors.New("removals held")

// updateLoop applies the asked changes to the stack, one update at a time: what arrives while
// an update runs goes into the next one. It ends when the group is stopped.
func (g *Group) updateLoop() {
	defer close(g.loopDone)
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-g.kick:
		}
		for g.ctx.Err() == nil {
			g.mu.Lock()
			pending := g.needsUpdateLocked()
			g.mu.Unlock()
			if !pending {
				break
			}
			if !g.leads() {
				// A standby sends nothing: two writers on one stack lose changes (Heat has no
				// conditional update). Held until this provider leads again; the leader
				// derives what was accepted from the marks on the members' servers.
				break
			}
			err := g.applyOnce()
			if errors.Is(err, errHeld) {
				break
			}
			if err != nil && g.ctx.Err() == nil {
				g.backOff(err, "stack update failed; trying again")
			}
		}
	}
}

// applyOnce waits until the stack is idle, reads its count, removal parameter and members
// afresh, and sends one update: the count read, changed by what was asked since, and the
// members to remove (the ones named before and not gone yet, which Heat is told again).
func (g *Group) applyOnce() error {
	g.mu.Lock()
	name, id, kind := g.stackName, g.stackID, g.kind
	tagged := map[string]bool{}
	for sid, s := range g.servers {
		if group, ok := membership.Of(s.Metadata, g.cluster); ok && group == g.cfg.Name {
			tagged[sid] = true
		}
	}
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(g.ctx, time.Hour)
	defer cancel()
	state, err := g.waitIdle(ctx, name, id, kind)
	if err != nil {
		return err
	}
	members, _, err := g.readMembers(ctx, name, id, tagged)
	if err != nil {
		return err
	}
	state.derive(kind, members)
	g.mu.Lock()
	g.stack, g.members = state, members
	if sent := g.lastSent; sent != nil {
		// The last update's answer was lost: if the stack holds what it sent, it was applied.
		if sent.appliedIn(state, kind) {
			g.commitLostLocked(name, state.status)
		} else {
			g.lastSent = nil
			g.notSentLocked()
		}
	}
	g.dropSuccessorsLocked()
	if !g.needsUpdateLocked() {
		g.mu.Unlock()
		return nil
	}
	live := map[string]bool{}
	for _, m := range members {
		if !strings.HasPrefix(m.status, "DELETE") {
			live[m.name] = true
		}
	}
	again := g.unfinishedRemovalsLocked() // already counted off by the update that named them
	var named []string                    // named since: the count goes down by their number
	for _, n := range g.removal {
		if live[n] && !slices.Contains(again, n) && !slices.Contains(named, n) {
			named = append(named, n)
		}
	}
	delta := g.pendingDelta
	count := state.count + delta
	if delta > 0 && count > g.cfg.MaxSize {
		count = max(state.count, g.cfg.MaxSize) // the stack was grown by other hands meanwhile
	}
	count = max(count-len(named), 0)
	var plan updatePlan
	if kind == resourceGroupType {
		plan = g.planResourceGroupLocked(members, state, named, count, delta)
	} else {
		plan = g.planAutoScalingGroupLocked(members, state, again, named, count, delta)
	}
	if plan.held != "" {
		if plan.held != g.blocked {
			klog.InfoS("removals held: nothing is sent that would remove a member nobody named", "group", g.cfg.Name, "stack", name, "why", plan.held)
		}
		g.blocked, g.lastErr = plan.held, plan.held
	} else {
		g.blocked = ""
	}
	if plan.noop {
		// Nothing to write: a decrease that names no member is not sent, and dropped.
		g.pendingDelta -= plan.delta
		g.removal = slices.DeleteFunc(g.removal, func(n string) bool { return !live[n] })
		g.replacing = slices.DeleteFunc(g.replacing, func(n string) bool { return !slices.Contains(g.removal, n) })
		held := plan.held
		g.mu.Unlock()
		if held != "" {
			return fmt.Errorf("%w: %s", errHeld, held)
		}
		return nil
	}
	g.inFlight = plan.named
	g.taken = plan.delta
	g.sends++
	g.sending = true
	g.mu.Unlock()

	if len(plan.mark) > 0 {
		if err := g.markForRemoval(ctx, members, plan.mark); err != nil {
			g.clearInFlight()
			return fmt.Errorf("preparing the removal of members: %w", err)
		}
	}
	var before []string
	for _, m := range members {
		before = append(before, m.name)
	}
	sent := &sentUpdate{count: plan.count, removal: strings.Join(plan.removal, ","), delta: plan.delta, named: plan.named,
		keep: plan.keep, before: before}
	if err := g.update(ctx, name, id, kind, plan.count, plan.removal); err != nil {
		if openstack.Retryable(err) {
			g.mu.Lock()
			g.lastSent = sent // may have been applied: its replacements stay in flight
			g.sending = false
			g.mu.Unlock()
		} else {
			g.clearInFlight()
		}
		return err
	}
	g.mu.Lock()
	g.commitLocked(sent, "UPDATE_IN_PROGRESS")
	g.mu.Unlock()
	klog.InfoS("stack update started", "group", g.cfg.Name, "stack", name, "count", plan.count, "removing", plan.removal)
	return nil
}

// updatePlan is one stack update: the count and removal parameter to send, the members to mark
// unhealthy first (AutoScalingGroup), the part of pendingDelta it carries, the members of the
// group's removal list it removes (named) and those it keeps for a later update (keep). noop:
// nothing to send; held: why named removals wait.
type updatePlan struct {
	count   int
	removal []string
	mark    []string
	delta   int
	named   []string
	keep    []string
	noop    bool
	held    string
}

// planResourceGroupLocked plans a ResourceGroup's update: the members named go, and the count
// never drops below the members it does not name (Heat would delete its newest members).
func (g *Group) planResourceGroupLocked(members []member, state stackState, named []string, count, delta int) updatePlan {
	// With removal_policies_mode: update, Heat skips only the names the list holds now (append,
	// the default, keeps every name ever listed): a list of the members still to go frees the
	// names of those already gone, and Heat renumbers onto them, deleting a member nobody named.
	// The whole list the stack holds is sent again, grown.
	removal := slices.Clone(state.removal)
	for _, n := range named {
		if !slices.Contains(removal, n) {
			removal = append(removal, n)
		}
	}
	kept := 0
	for _, m := range members {
		if !strings.HasPrefix(m.status, "DELETE") && !slices.Contains(removal, m.name) {
			kept++
		}
	}
	if count < kept {
		klog.ErrorS(nil, "a decrease names no member: the count is kept at the members not named", "group", g.cfg.Name,
			"stack", g.stackName, "count", count, "members", kept)
		count = kept
	}
	plan := updatePlan{count: count, removal: removal, delta: delta, named: slices.Clone(g.removal)}
	plan.noop = count == state.count && len(named) == 0 && len(g.unfinishedRemovalsLocked()) == 0
	return plan
}

// planAutoScalingGroupLocked plans an AutoScalingGroup's update. Such a group has no removal
// policy: when it shrinks it removes its failed members first, oldest first, then its oldest.
// The members named are marked unhealthy (failed) and the group is shrunk to its members less
// them; what the target has beyond that (a scale-up, a replacement's successor) is sent in the
// next update. A shrink never reaches past the members that lead that order and were named (or
// are being deleted): a failed member nobody named that comes first holds back the removals
// behind it, and the update then only removes those ahead of it, or only grows the group if the
// target asks it; the members held wait in the removal list.
func (g *Group) planAutoScalingGroupLocked(members []member, state stackState, again, named []string, count, delta int) updatePlan {
	going := func(n string) bool { return slices.Contains(again, n) || slices.Contains(named, n) }
	live, nGoing := 0, 0
	for _, m := range members {
		if !strings.HasPrefix(m.status, "DELETE") {
			live++
			if going(m.name) {
				nGoing++
			}
		}
	}
	kept := live - nGoing
	if count < kept {
		klog.ErrorS(nil, "a decrease names no member: the count is kept at the members not named", "group", g.cfg.Name,
			"stack", g.stackName, "count", count, "members", kept)
		count = kept
	}
	order := shrinkOrder(members, going)
	head, blocker := removableHead(order, going)
	// The count is of live members; Heat's group also holds those it failed to delete, and
	// removes len(members)-count: they lead the order with the other failed members.
	plan := updatePlan{count: count}
	if nGoing > 0 {
		plan.count = kept // the target's growth goes in the next update
	}
	if len(members)-plan.count > head {
		plan.held = fmt.Sprintf("member %s is %s and nobody asked it to go: the group removes its failed members first, oldest first, "+
			"so the removal of the members named after it waits until it is deleted or repaired", blocker.name, blocker.status)
		plan.count = len(members) - head
		if plan.count >= live { // nothing named can go: only grow, if the target asks it
			plan.count = max(count+nGoing, len(members)-head)
		}
	}
	victims := order[:max(len(members)-plan.count, 0)]
	goneGoing, goneDeleting := 0, 0
	for _, m := range victims {
		switch {
		case going(m.name):
			goneGoing++
			plan.removal = append(plan.removal, m.name)
			if slices.Contains(named, m.name) {
				plan.mark = append(plan.mark, m.name)
			}
		case strings.HasPrefix(m.status, "DELETE"):
			goneDeleting++
		}
	}
	switch {
	case plan.held == "":
		plan.named = slices.Clone(g.removal)
	default:
		plan.named = slices.Clone(plan.mark)
		for _, n := range again {
			if !slices.Contains(plan.removal, n) {
				plan.keep = append(plan.keep, n)
			}
		}
	}
	// Sent: the change of the live count, less the members still to go after this update.
	liveAfter := plan.count - (len(members) - live - goneDeleting)
	plan.delta = delta + liveAfter - count - (nGoing - goneGoing)
	switch {
	case plan.held != "" && goneGoing == 0 && plan.count <= len(members):
		// An update that neither grows the group nor removes a member named would only rewrite
		// the count (and have Heat replace the members marked unhealthy).
		plan.noop, plan.delta = true, 0
	case plan.held == "" && goneGoing == 0 && plan.count == state.count:
		plan.noop, plan.delta = true, delta
	}
	return plan
}

// commitLocked records an update the stack took: its changes are no longer pending.
func (g *Group) commitLocked(sent *sentUpdate, status string) {
	for _, n := range g.replacing {
		if slices.Contains(sent.named, n) {
			g.replaced = append(g.replaced, replacement{name: n, before: sent.before, drop: slices.Contains(g.dropAfterSend, n)})
		}
	}
	g.dropAfterSend = nil
	g.inFlight, g.sending = nil, false
	g.pendingDelta -= sent.delta
	g.taken = 0
	g.removal = slices.DeleteFunc(g.removal, func(n string) bool { return slices.Contains(sent.named, n) })
	for _, n := range sent.keep {
		if !slices.Contains(g.removal, n) {
			g.removal = append(g.removal, n)
		}
	}
	g.replacing = slices.DeleteFunc(g.replacing, func(n string) bool { return slices.Contains(sent.named, n) })
	g.stack.count, g.stack.removal, g.stack.status = sent.count, ParseList(sent.removal), status
	g.lastErr = ""
}

// appliedIn says whether a stack read after an update whose answer was lost shows it applied:
// its count and removal parameter are the ones sent. An AutoScalingGroup has no removal
// parameter (what derive finds there may be gone already): its count says it.
func (sent *sentUpdate) appliedIn(state stackState, kind string) bool {
	if state.count != sent.count {
		return false
	}
	return kind == autoScalingGroupType || strings.Join(state.removal, ",") == sent.removal
}

// commitLostLocked records the update whose answer was lost, found applied in the stack.
func (g *Group) commitLostLocked(stack, status string) {
	sent := g.lastSent
	g.lastSent = nil
	g.commitLocked(sent, status)
	klog.InfoS("an update whose answer was lost had been applied", "group", g.cfg.Name, "stack", stack, "count", sent.count)
}

// clearInFlight ends an update attempt that did not reach the stack.
func (g *Group) clearInFlight() {
	g.mu.Lock()
	g.notSentLocked()
	g.mu.Unlock()
}

// notSentLocked ends an update that did not reach the stack: a replacement whose node was
// deleted meanwhile is cancelled (no successor, its member still named: one fewer).
func (g *Group) notSentLocked() {
	g.inFlight, g.sending = nil, false
	g.taken = 0
	g.pendingDelta -= len(g.dropAfterSend)
	g.replacing = slices.DeleteFunc(g.replacing, func(n string) bool { return slices.Contains(g.dropAfterSend, n) })
	g.dropAfterSend = nil
}

// dropSuccessorsLocked names for removal the successors of replaced members whose node the
// autoscaler deleted, once they exist (a member the stack did not have when the replacing update
// was sent), and forgets replacements whose member is gone. Nothing is chosen while the stack
// is updating: its members are not final.
func (g *Group) dropSuccessorsLocked() {
	if strings.HasSuffix(g.stack.status, "_IN_PROGRESS") {
		return
	}
	present := map[string]bool{}
	for _, m := range g.members {
		present[m.name] = true
	}
	kept := g.replaced[:0]
	for _, r := range g.replaced {
		if !r.drop {
			if present[r.name] {
				kept = append(kept, r)
			}
			continue
		}
		successor := ""
		for _, m := range g.members {
			if !slices.Contains(r.before, m.name) && !g.removingLocked(m) && (successor == "" || memberOrder(m.name) > memberOrder(successor)) {
				successor = m.name
			}
		}
		switch {
		case successor != "":
			g.removal = append(g.removal, successor)
			klog.InfoS("the node of a replaced member was deleted: its successor goes too", "group", g.cfg.Name, "member", r.name, "successor", successor)
		case !present[r.name] && g.stack.status != "UPDATE_FAILED":
			// The member went and no successor appeared: the count is lowered by itself.
			g.pendingDelta--
			klog.InfoS("the node of a replaced member was deleted and no successor appeared: lowering the count", "group", g.cfg.Name, "member", r.name)
		default:
			kept = append(kept, r) // its successor is still to come
		}
	}
	g.replaced = kept
}

// memberOrder orders members by their ResourceGroup index (names that are not indices, as an
// AutoScalingGroup's, rank lowest: the first found is taken).
func memberOrder(name string) int {
	n, err := strconv.Atoi(name)
	if err != nil {
		return -1
	}
	return n
}

// backOff records a failed attempt (surfaced as the group's error) and waits before the next.
func (g *Group) backOff(err error, msg string) {
	g.mu.Lock()
	g.lastErr = err.Error()
	name := g.stackName
	g.mu.Unlock()
	klog.ErrorS(err, msg, "group", g.cfg.Name, "stack", name)
	select {
	case <-g.ctx.Done():
	case <-time.After(5 * g.PollInterval):
	}
}

// waitIdle waits until no update of the stack runs (Heat refuses a second one with 409) and
// returns the stack as it then is.
func (g *Group) waitIdle(ctx context.Context, name, id, kind string) (stackState, error) {
	for {
		state, _, err := g.readStack(ctx, name, id, kind)
		if err != nil {
			return stackState{}, err
		}
		g.mu.Lock()
		g.stack.status = state.status
		g.mu.Unlock()
		if !strings.HasSuffix(state.status, "_IN_PROGRESS") {
			return state, nil
		}
		select {
		case <-ctx.Done():
			return stackState{}, ctx.Err()
		case <-time.After(g.PollInterval):
		}
	}
}

// update sends one stack update. It is not retried here: a retry must start from a fresh read
// of the stack (someone else may have updated it, or this update may have been applied).
func (g *Group) update(ctx context.Context, name, id, kind string, count int, removal []string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	params := map[string]any{g.cfg.Heat.CountParameter: count}
	if kind == resourceGroupType {
		params[g.cfg.Heat.RemovalParameter] = strings.Join(removal, ",")
	}
	return stacks.UpdatePatch(ctx, g.client, name, id, stacks.UpdateOpts{Parameters: params}).ExtractErr()
}

// markForRemoval marks an AutoScalingGroup's members unhealthy, so that the group removes them
// first when it shrinks (see planAutoScalingGroupLocked).
func (g *Group) markForRemoval(ctx context.Context, members []member, names []string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, n := range names {
		i := slices.IndexFunc(members, func(m member) bool { return m.name == n })
		if i < 0 {
			continue
		}
		m := members[i]
		// Heat takes the member's physical ID for its name: a UUID, which the request metrics'
		// path template folds into {id}, where the name would make a series per member.
		ref := cmp.Or(m.physID, m.name)
		klog.InfoS("marking member unhealthy so that its group removes it first", "group", g.cfg.Name, "stack", m.stack[0],
			"member", n, "resource", ref)
		opts := stackresources.MarkUnhealthyOpts{MarkUnhealthy: true, ResourceStatusReason: markReason}
		err := g.Backoff.Retry(ctx, "mark member unhealthy", func(ctx context.Context) error {
			return stackresources.MarkUnhealthy(ctx, g.client, m.stack[0], m.stack[1], ref, opts).ExtractErr()
		})
		if err != nil {
			return fmt.Errorf("marking member %s unhealthy: %w", n, err)
		}
	}
	return nil
}
