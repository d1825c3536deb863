// Package provider assembles the OpenStack cloud provider from its configuration: it checks
// that every group's flavor and image exist, builds the node groups, and answers the
// cluster-wide questions (templates, options, prices, GPUs) from memory.
package provider

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/orchestration/v1/stacks"
	"github.com/gophercloud/gophercloud/v2/pagination"
	corev1 "k8s.io/api/core/v1"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/heat"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/leader"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodegroup"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodetemplate"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nova"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack"
)

// Provider is the cloud provider behind the gRPC service.
type Provider struct {
	Config  *config.Config
	Clients *openstack.Clients
	Manager *nodegroup.Manager
	Metrics *Metrics
	// Leader says whether this replica may write to OpenStack on its own initiative (see
	// package leader); nil: always.
	Leader  leader.Gate
	flavors map[string]nodetemplate.Flavor // by name and by ID
}

// SetLeader makes every group, configured or discovered later, write on its own initiative
// only while gate says this replica leads.
func (p *Provider) SetLeader(gate leader.Gate) {
	p.Leader = gate
	for _, g := range p.Manager.Groups() {
		setLeader(g, gate)
	}
	if l, ok := gate.(interface{ OnLoss(func()) }); ok {
		l.OnLoss(p.forgetUnsent)
	}
}

// forgetUnsent drops, in every group, what was accepted and is recorded nowhere in OpenStack:
// this replica stopped leading, and the leading one derives its state from OpenStack.
func (p *Provider) forgetUnsent() {
	for _, g := range p.Manager.Groups() {
		if f, ok := g.(interface{ ForgetUnsent() }); ok {
			f.ForgetUnsent()
		}
	}
}

func setLeader(g nodegroup.Group, gate leader.Gate) {
	switch g := g.(type) {
	case *nova.Group:
		g.Leader = gate
	case *heat.Group:
		g.Leader = gate
	}
}

// New checks the configuration against the cloud and builds the node groups.
func New(ctx context.Context, cfg *config.Config, clients *openstack.Clients, metrics *Metrics) (*Provider, error) {
	p := &Provider{Config: cfg, Clients: clients, Metrics: metrics}
	if err := p.loadFlavors(ctx); err != nil {
		return nil, err
	}
	var groups []nodegroup.Group
	for _, g := range cfg.NodeGroups {
		switch g.Backend {
		case config.BackendNova:
			flavor, ok := p.flavors[g.Nova.Flavor]
			if !ok {
				return nil, fmt.Errorf("node group %q: flavor %q not found in region %s: pick one of `openstack flavor list`", g.Name, g.Nova.Flavor, clients.Region)
			}
			imageID, err := p.resolveImage(ctx, g.Nova.Image)
			if err != nil {
				return nil, fmt.Errorf("node group %q: %w", g.Name, err)
			}
			ng := nova.New(g, cfg.ClusterName, clients.Compute, imageID, flavor.ID, metrics)
			ng.IDs = p.providerIDs()
			groups = append(groups, ng)
		case config.BackendHeat:
			if clients.Orchestration == nil {
				return nil, fmt.Errorf("node group %q: backend heat, but the cloud's catalog has no orchestration (Heat) endpoint", g.Name)
			}
			hg := heat.New(g, cfg.ClusterName, clients.Orchestration)
			hg.IDs, hg.Compute = p.providerIDs(), clients.Compute
			groups = append(groups, hg)
		}
	}
	p.Manager = nodegroup.NewManager(p, cfg.RefreshInterval.Duration, groups)
	if cfg.AutoDiscovery.HeatStacks {
		if clients.Orchestration == nil {
			return nil, fmt.Errorf("autoDiscovery.heatStacks is on, but the cloud's catalog has no orchestration (Heat) endpoint")
		}
		p.Manager.Discover = p.discoverStacks
	}
	p.Manager.OnRefresh = metrics.observeRefresh
	metrics.watch(p.Manager)
	return p, nil
}

// startupBackoff retries the start's look-ups through a cloud that fails now and then: a 503 at
// start must not cost a restart (and, in a Pod, a crash-loop back-off).
var startupBackoff = openstack.Backoff{Attempts: 6, Initial: time.Second, Max: 5 * time.Second}

func (p *Provider) loadFlavors(ctx context.Context) error {
	var pages pagination.Page
	err := startupBackoff.Retry(ctx, "list flavors", func(ctx context.Context) (err error) {
		pages, err = flavors.ListDetail(p.Clients.Compute, flavors.ListOpts{AccessType: flavors.AllAccess}).AllPages(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("listing flavors: %w", err)
	}
	all, err := flavors.ExtractFlavors(pages)
	if err != nil {
		return err
	}
	p.flavors = map[string]nodetemplate.Flavor{}
	for _, f := range all {
		nf := nodetemplate.Flavor{Name: f.Name, VCPUs: f.VCPUs, RAMMiB: f.RAM, DiskGiB: f.Disk, EphemeralGiB: f.Ephemeral,
			ExtraSpecs: f.ExtraSpecs, ID: f.ID}
		p.flavors[f.Name] = nf
		p.flavors[f.ID] = nf
	}
	return nil
}

func (p *Provider) resolveImage(ctx context.Context, nameOrID string) (string, error) {
	if p.Clients.Image == nil {
		return nameOrID, nil // no Glance in the catalog: Nova resolves the ID itself
	}
	if img, err := images.Get(ctx, p.Clients.Image, nameOrID).Extract(); err == nil {
		return img.ID, nil
	}
	var pages pagination.Page
	err := startupBackoff.Retry(ctx, "look up image", func(ctx context.Context) (err error) {
		pages, err = images.List(p.Clients.Image, images.ListOpts{Name: nameOrID}).AllPages(ctx)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("looking up image %q: %w", nameOrID, err)
	}
	found, err := images.ExtractImages(pages)
	if err != nil {
		return "", err
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("image %q not found in region %s: name an image of `openstack image list`", nameOrID, p.Clients.Region)
	case 1:
		return found[0].ID, nil
	}
	return "", fmt.Errorf("image name %q matches %d images: use the image ID", nameOrID, len(found))
}

// Snapshot lists the project's servers once (and its stacks, when Heat is in use) and keeps
// those of the cluster.
func (p *Provider) Snapshot(ctx context.Context) (*nodegroup.Snapshot, error) {
	snap := &nodegroup.Snapshot{Started: time.Now()}
	var all []servers.Server
	err := openstack.DefaultBackoff.Retry(ctx, "list servers", func(ctx context.Context) error {
		pages, err := servers.List(p.Clients.Compute, servers.ListOpts{}).AllPages(ctx)
		if err != nil {
			return err
		}
		all, err = servers.ExtractServers(pages)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing servers: %w", err)
	}
	for _, s := range all {
		if _, ok := membership.Of(s.Metadata, p.Config.ClusterName); ok {
			snap.Servers = append(snap.Servers, s)
		}
	}
	if p.usesHeat() {
		err := openstack.DefaultBackoff.Retry(ctx, "list stacks", func(ctx context.Context) error {
			pages, err := stacks.List(p.Clients.Orchestration, stacks.ListOpts{}).AllPages(ctx)
			if err != nil {
				return err
			}
			snap.Stacks, err = stacks.ExtractStacks(pages)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("listing stacks: %w", err)
		}
	}
	return snap, nil
}

func (p *Provider) usesHeat() bool {
	if p.Config.AutoDiscovery.HeatStacks {
		return true
	}
	for _, g := range p.Config.NodeGroups {
		if g.Backend == config.BackendHeat {
			return true
		}
	}
	return false
}

// Template is the node a new member of the group would become, for scale-up simulation.
func (p *Provider) Template(groupID string) (*corev1.Node, error) {
	g, err := p.Manager.Group(groupID)
	if err != nil {
		return nil, err
	}
	flavor, ok := p.flavors[g.FlavorName()]
	if !ok {
		return nil, fmt.Errorf("node group %q: flavor %q of its servers is unknown: %w", groupID, g.FlavorName(), nodegroup.ErrNotFound)
	}
	cfg := g.Config()
	reserved, err := cfg.ReservedResources()
	if err != nil {
		return nil, err
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	spec := nodetemplate.Spec{
		NodeName: fmt.Sprintf("template-%s-%s", groupID, hex.EncodeToString(suffix)), NodeGroup: groupID, Flavor: flavor,
		Region: p.Clients.Region, Labels: cfg.Labels, Taints: cfg.Taints, Reserved: reserved, MaxPods: cfg.MaxPods,
	}
	if cfg.Nova != nil {
		spec.Zone, spec.RootVolumeGiB = cfg.Nova.AvailabilityZone, cfg.Nova.BootVolumeSize
	}
	return nodetemplate.Node(spec), nil
}

// GPUTypes are the accelerator types the groups' flavors offer.
func (p *Provider) GPUTypes() []string {
	seen := map[string]bool{}
	var out []string
	for _, g := range p.Manager.Groups() {
		if f, ok := p.flavors[g.FlavorName()]; ok {
			if n, kind := f.GPUs(); n > 0 && !seen[kind] {
				seen[kind] = true
				out = append(out, kind)
			}
		}
	}
	return out
}

// NodePrice is the price of a node of its group over hours. Template nodes of a scale-up
// simulation have no providerID; their group label says which group they are of.
func (p *Provider) NodePrice(providerID string, labels map[string]string, hours float64) (float64, error) {
	g := p.Manager.GroupForProviderID(providerID)
	if g == nil {
		var err error
		if g, err = p.Manager.Group(labels[membership.NodeGroupLabel]); err != nil {
			return 0, fmt.Errorf("node %q is in no node group of this provider: %w", providerID, nodegroup.ErrNotFound)
		}
	}
	return g.Config().PricePerHour * hours, nil
}

// PodPrice prices a pod's requests (sum of its containers, or its largest init container).
func (p *Provider) PodPrice(pod *corev1.Pod, hours float64) (float64, error) {
	var cpu, mem float64
	for _, c := range pod.Spec.Containers {
		cpu += c.Resources.Requests.Cpu().AsApproximateFloat64()
		mem += c.Resources.Requests.Memory().AsApproximateFloat64()
	}
	for _, c := range pod.Spec.InitContainers {
		cpu = max(cpu, c.Resources.Requests.Cpu().AsApproximateFloat64())
		mem = max(mem, c.Resources.Requests.Memory().AsApproximateFloat64())
	}
	pricing := p.Config.PodPricing
	return (cpu*pricing.PerCoreHour + mem/(1<<30)*pricing.PerGiBHour) * hours, nil
}

// CheckProviderID says why a member's node carries its providerID written another way than
// the provider writes instances' ids, or nil. cluster-autoscaler matches instances to nodes by
// comparing the strings: on a mismatch every instance looks unregistered, and 1.36.1 deletes
// unregistered instances after --max-node-provision-time.
func (p *Provider) CheckProviderID(providerID string) error {
	serverID, ok := membership.ServerID(providerID)
	if !ok {
		return nil
	}
	if want := p.providerIDs().ProviderID(serverID); providerID != want {
		p.Metrics.mismatch.Inc()
		return fmt.Errorf("node with providerID %q is a member, but this provider writes its instance as %q (providerIDRegion %q): the autoscaler would take every instance for unregistered and delete running nodes; set providerIDRegion to the region in the nodes' providerIDs (\"\" for openstack:///<id>) as the cloud-controller-manager writes them",
			providerID, want, p.Config.ProviderIDRegion)
	}
	return nil
}

// providerIDs writes members' providerIDs as the cluster's nodes carry them.
func (p *Provider) providerIDs() membership.IDs {
	return membership.IDs{Region: p.Config.ProviderIDRegion}
}
