package heat

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/orchestration/v1/stackresources"
	"github.com/gophercloud/gophercloud/v2/openstack/orchestration/v1/stacks"
	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodegroup"
)

// The two kinds of Heat group a node group's stack may hold.
const (
	resourceGroupType    = "OS::Heat::ResourceGroup"
	autoScalingGroupType = "OS::Heat::AutoScalingGroup"
)

// Observe reads the stack's members (one call: its resources two levels deep) and, the first
// time, its parameters.
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
	g.mu.Lock()
	initialized := g.initialized
	g.stackName, g.stackID = found.Name, found.ID
	g.mu.Unlock()
	members, kind, err := g.readMembers(ctx, found.Name, found.ID)
	if err != nil {
		return err
	}
	if !initialized {
		if err := g.readParameters(ctx, found.Name, found.ID, kind); err != nil {
			return err
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.members = members
	present := map[string]bool{}
	for _, m := range members {
		present[m.name] = true
	}
	for name := range g.removing {
		if !present[name] {
			delete(g.removing, name)
		}
	}
	g.servers = map[string]servers.Server{}
	for _, s := range snap.Servers {
		g.servers[s.ID] = s
	}
	g.once.Do(func() { go g.updateLoop() })
	if g.desired != g.applied || len(g.removal) > 0 {
		g.poke()
	}
	return nil
}

func (g *Group) readParameters(ctx context.Context, name, id, kind string) error {
	stack, err := stacks.Get(ctx, g.client, name, id).Extract()
	if err != nil {
		return fmt.Errorf("reading stack %s: %w", name, err)
	}
	raw, ok := stack.Parameters[g.cfg.Heat.CountParameter]
	if !ok {
		return fmt.Errorf("stack %s has no parameter %q: set heat.countParameter to the parameter holding the ResourceGroup's count", name, g.cfg.Heat.CountParameter)
	}
	count, err := strconv.Atoi(raw)
	if err != nil {
		return fmt.Errorf("stack %s: parameter %s = %q is not a number", name, g.cfg.Heat.CountParameter, raw)
	}
	if _, ok := stack.Parameters[g.cfg.Heat.RemovalParameter]; !ok && kind == resourceGroupType {
		return fmt.Errorf("stack %s has no parameter %q: bind the ResourceGroup's removal_policies resource_list to a comma_delimited_list parameter and name it in heat.removalParameter", name, g.cfg.Heat.RemovalParameter)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.applied, g.desired, g.flavor, g.kind, g.initialized = count, count, stack.Parameters["flavor"], kind, true
	g.updating = strings.HasSuffix(stack.Status, "_IN_PROGRESS")
	return nil
}

// readMembers lists the group's members with their servers: a member is either a server itself
// or a nested stack holding one. It also says which kind of group the stack holds.
func (g *Group) readMembers(ctx context.Context, name, id string) ([]member, string, error) {
	pages, err := stackresources.List(g.client, name, id, stackresources.ListOpts{Depth: 2}).AllPages(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("listing resources of stack %s: %w", name, err)
	}
	all, err := stackresources.ExtractResources(pages)
	if err != nil {
		return nil, "", err
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
	var members []member
	nestedServer := map[string]string{} // member name -> server inside it
	for _, r := range all {
		if r.Type == "OS::Nova::Server" && r.ParentResource != groupName && r.ParentResource != "" {
			nestedServer[r.ParentResource] = r.PhysicalID
		}
	}
	for _, r := range all {
		if r.ParentResource != groupName {
			continue
		}
		m := member{name: r.Name, status: r.Status, reason: r.StatusReason, stack: stackOf(r.Links)}
		if r.Type == "OS::Nova::Server" {
			m.serverID = r.PhysicalID
		} else {
			m.serverID = nestedServer[r.Name]
		}
		members = append(members, m)
	}
	return members, kind, nil
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

// updateLoop applies the target and the removals to the stack, one update at a time: what
// arrives while an update runs goes into the next one.
func (g *Group) updateLoop() {
	for range g.kick {
		for {
			g.mu.Lock()
			pending := g.initialized && (g.desired != g.applied || len(g.removal) > 0)
			count, removal := g.desired, append([]string(nil), g.removal...)
			name, id := g.stackName, g.stackID
			g.mu.Unlock()
			if !pending {
				break
			}
			if err := g.waitIdle(name, id); err != nil {
				klog.ErrorS(err, "waiting for the stack to be idle", "group", g.cfg.Name)
				time.Sleep(g.PollInterval)
				continue
			}
			if g.kind == autoScalingGroupType && len(removal) > 0 {
				shrunk, err := g.markForRemoval(name, id, removal, count)
				if err != nil {
					g.backOff(err, "preparing the removal of members; trying again")
					continue
				}
				count = shrunk
			}
			if err := g.update(name, id, count, removal); err != nil {
				g.backOff(err, "stack update failed; trying again")
				continue
			}
			g.mu.Lock()
			g.applied, g.lastErr = count, ""
			g.removal = g.removal[len(removal):]
			g.mu.Unlock()
			klog.InfoS("stack update started", "group", g.cfg.Name, "stack", name, "count", count, "removing", removal)
		}
	}
}

// backOff records a failed attempt (surfaced as the group's error) and waits before the next.
func (g *Group) backOff(err error, msg string) {
	g.mu.Lock()
	g.lastErr = err.Error()
	name := g.stackName
	g.mu.Unlock()
	klog.ErrorS(err, msg, "group", g.cfg.Name, "stack", name)
	time.Sleep(5 * g.PollInterval)
}

// waitIdle waits until no update of the stack runs (Heat refuses a second one with 409).
func (g *Group) waitIdle(name, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	for {
		stack, err := stacks.Get(ctx, g.client, name, id).Extract()
		if err != nil {
			return err
		}
		busy := strings.HasSuffix(stack.Status, "_IN_PROGRESS")
		g.mu.Lock()
		g.updating = busy
		g.mu.Unlock()
		if !busy {
			return nil
		}
		time.Sleep(g.PollInterval)
	}
}

func (g *Group) update(name, id string, count int, removal []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	params := map[string]any{g.cfg.Heat.CountParameter: count}
	if g.kind == resourceGroupType {
		params[g.cfg.Heat.RemovalParameter] = strings.Join(removal, ",")
	}
	opts := stacks.UpdateOpts{Parameters: params}
	// A 409 (an update by someone else runs) is retried with the rest.
	return g.backoff.Retry(ctx, "update stack", func(ctx context.Context) error {
		return stacks.UpdatePatch(ctx, g.client, name, id, opts).ExtractErr()
	})
}

// markForRemoval prepares an AutoScalingGroup to lose exactly the named members. Such a group
// has no removal policy, but removes failed members first when it shrinks: the members are
// marked unhealthy, and the count to apply is the group's present size less their number (a
// replacement grows back in the next update). The size is read afresh: the last refresh may
// predate the previous update.
func (g *Group) markForRemoval(name, id string, removal []string, count int) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	members, _, err := g.readMembers(ctx, name, id)
	if err != nil {
		return 0, err
	}
	remove := map[string]bool{}
	for _, n := range removal {
		remove[n] = true
	}
	live, where := 0, map[string][2]string{}
	for _, m := range members {
		if strings.HasPrefix(m.status, "DELETE") {
			continue
		}
		live++
		where[m.name] = m.stack
		if !remove[m.name] && strings.HasSuffix(m.status, "_FAILED") {
			return 0, fmt.Errorf("member %s is %s and not asked to go: Heat would remove it before the members named, so nothing is removed until it is deleted or repaired", m.name, m.status)
		}
	}
	for _, n := range removal {
		stack, ok := where[n]
		if !ok {
			live++ // already gone: nothing to mark, and it no longer counts
			continue
		}
		opts := stackresources.MarkUnhealthyOpts{MarkUnhealthy: true, ResourceStatusReason: "removed by openstack-autoscaler"}
		err := g.backoff.Retry(ctx, "mark member unhealthy", func(ctx context.Context) error {
			return stackresources.MarkUnhealthy(ctx, g.client, stack[0], stack[1], n, opts).ExtractErr()
		})
		if err != nil {
			return 0, fmt.Errorf("marking member %s unhealthy: %w", n, err)
		}
	}
	return min(count, live-len(removal)), nil
}
