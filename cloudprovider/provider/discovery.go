package provider

import (
	"context"
	"strconv"
	"strings"
	"sync"

	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/heat"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodegroup"
)

// Tags that make a Heat stack a node group of this cluster (the names cluster-autoscaler's
// other providers use for auto-discovery).
const (
	TagEnabled       = "k8s.io/cluster-autoscaler/enabled"
	TagClusterPrefix = "k8s.io/cluster-autoscaler/"
	TagMin           = "k8s.io/cluster-autoscaler/min="
	TagMax           = "k8s.io/cluster-autoscaler/max="
)

// DiscoveredGroup is the node group a tagged stack describes, or ok=false when the stack is not
// tagged for the cluster or its tags are unusable.
func DiscoveredGroup(stackName string, tags []string, cluster string) (g config.NodeGroup, ok bool) {
	enabled, ours := false, false
	g = config.NodeGroup{Name: stackName, Backend: config.BackendHeat, MinSize: 0, MaxSize: -1,
		Heat: &config.Heat{Stack: stackName}}
	for _, tag := range tags {
		switch {
		case tag == TagEnabled:
			enabled = true
		case tag == TagClusterPrefix+cluster:
			ours = true
		case strings.HasPrefix(tag, TagMin):
			g.MinSize, _ = strconv.Atoi(strings.TrimPrefix(tag, TagMin))
		case strings.HasPrefix(tag, TagMax):
			if n, err := strconv.Atoi(strings.TrimPrefix(tag, TagMax)); err == nil {
				g.MaxSize = n
			}
		}
	}
	if !enabled || !ours {
		return g, false
	}
	if g.MaxSize < 1 || g.MinSize < 0 || g.MinSize > g.MaxSize {
		klog.InfoS("tagged stack ignored: give it tags "+TagMin+"<n> and "+TagMax+"<n> with 0 <= min <= max, max >= 1",
			"stack", stackName, "min", g.MinSize, "max", g.MaxSize)
		return g, false
	}
	g.Heat.SetDefaults()
	return g, true
}

// discoverStacks turns the snapshot's tagged stacks into groups, keeping the state of groups
// already known (a stack's bounds may change with its tags). The manager stops the groups it no
// longer returns: a stack has one writer at a time.
func (p *Provider) discoverStacks(_ context.Context, snap *nodegroup.Snapshot, known map[string]nodegroup.Group) []nodegroup.Group {
	var out []nodegroup.Group
	for _, s := range snap.Stacks {
		cfg, ok := DiscoveredGroup(s.Name, s.Tags, p.Config.ClusterName)
		if !ok {
			continue
		}
		if owner := p.configuredGroupOf(s.Name, s.ID); owner != "" {
			// A second group on the stack would claim the same nodes (the autoscaler would be
			// told either group for them) and resize the stack against the configured one.
			if _, said := claimedSaid.LoadOrStore(claimedKey{p, s.ID}, true); !said {
				klog.InfoS("tagged stack not discovered: a configured node group already drives it; remove its autoscaler tags or the configured group",
					"stack", s.Name, "group", owner)
			}
			continue
		}
		// A stack deleted and made again under its name is another stack: the members the old
		// group was to remove are not its members, whatever their names.
		if g, ok := known[s.Name].(*heat.Group); ok && (g.StackID() == "" || g.StackID() == s.ID) {
			g.SetBounds(cfg.MinSize, cfg.MaxSize)
			out = append(out, g)
			continue
		}
		klog.InfoS("discovered node group", "stack", s.Name, "min", cfg.MinSize, "max", cfg.MaxSize)
		g := heat.New(cfg, p.Config.ClusterName, p.Clients.Orchestration)
		g.IDs, g.Compute = p.providerIDs(), p.Clients.Compute
		if p.Leader != nil {
			setLeader(g, p.Leader) // a discovered group writes only while this replica leads, too
		}
		out = append(out, g)
	}
	return out
}

// claimedSaid holds the claimedKeys of stacks already said to be left to a configured group:
// discovery runs at every refresh, and saying it once is enough.
var claimedSaid sync.Map

type claimedKey struct {
	p     *Provider
	stack string
}

// configuredGroupOf names the configured heat group whose stack this is (named by its name or
// its ID), or "".
func (p *Provider) configuredGroupOf(name, id string) string {
	for _, g := range p.Config.NodeGroups {
		if g.Backend == config.BackendHeat && g.Heat != nil && (g.Heat.Stack == name || g.Heat.Stack == id) {
			return g.Name
		}
	}
	return ""
}
