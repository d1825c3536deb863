package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodegroup"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nova"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/repair"
)

// Member finds a node's group and server (repair.Cloud).
func (p *Provider) Member(providerID string) (nodegroup.Repairable, servers.Server, bool) {
	serverID, ok := membership.ServerID(providerID)
	if !ok {
		return nil, servers.Server{}, false
	}
	g, ok := p.Manager.GroupForProviderID(providerID).(nodegroup.Repairable)
	if !ok {
		return nil, servers.Server{}, false
	}
	s, ok := p.Manager.Server(serverID)
	if !ok {
		return nil, servers.Server{}, false
	}
	return g, s, true
}

// Start powers a member's server on (repair.Cloud).
func (p *Provider) Start(ctx context.Context, serverID string) error {
	return nova.Start(ctx, p.Clients.Compute, serverID)
}

// Reboot reboots a member's server (repair.Cloud).
func (p *Provider) Reboot(ctx context.Context, serverID string, hard bool) error {
	return nova.Reboot(ctx, p.Clients.Compute, serverID, hard)
}

// RepairPolicy is a group's repair policy; false when repair is off for it.
func (p *Provider) RepairPolicy(g nodegroup.Group) (repair.Policy, bool) {
	c := p.Config.RepairPolicyFor(g.Config())
	return repair.PolicyFrom(c), !c.Disabled
}

// RepairStale says why the provider's view of a group's servers is not fresh enough to repair
// on (repair.Loop.Stale): no successful refresh for three intervals, or the group's last
// refresh failed.
func (p *Provider) RepairStale(g nodegroup.Group) string {
	limit := 3 * p.Config.RefreshInterval.Duration
	if age := time.Since(p.Manager.LastRefresh()); age > limit {
		return fmt.Sprintf("no successful refresh from OpenStack for %s (more than %s)", age.Round(time.Second), limit)
	}
	if err := p.Manager.GroupError(g.ID()); err != nil {
		return err.Error()
	}
	return ""
}
