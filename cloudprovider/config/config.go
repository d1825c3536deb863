// Package config is the provider's configuration file: the cloud to use, the cluster's name, and
// its node groups. Load validates everything at start and names the field and the fix in every
// error.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	kubeletapis "k8s.io/kubelet/pkg/apis"
	"sigs.k8s.io/yaml"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodetemplate"
)

// Config is the whole file.
type Config struct {
	Cloud       Cloud  `json:"cloud"`
	ClusterName string `json:"clusterName"`
	// ProviderIDRegion must be set when the cluster's cloud-controller-manager writes nodes'
	// spec.providerID with a region (openstack://<region>/<server id>, as cloud-provider-openstack
	// does when told to put the region in provider IDs): the autoscaler matches instances to
	// nodes by comparing providerIDs as strings. Empty (the default) means openstack:///<server id>.
	ProviderIDRegion string `json:"providerIDRegion,omitempty"`
	// RefreshInterval is the longest the provider's view of OpenStack may be old; one listing
	// per service is made per interval, whatever the number of nodes. Default 10s.
	RefreshInterval Duration     `json:"refreshInterval,omitempty"`
	NodeGroups      []NodeGroup  `json:"nodeGroups"`
	AutoDiscovery   AutoDiscover `json:"autoDiscovery,omitempty"`
	// Pricing of pods for the price expander: price per core-hour and per GiB-hour of requests.
	PodPricing PodPricing `json:"podPricing,omitempty"`
	// Repair reboots, then replaces, nodes that registered and later broke (off by default).
	Repair Repair `json:"repair,omitempty"`
}

// Repair is the node repair loop's settings; each group may override the thresholds.
type Repair struct {
	// Enabled turns the loop on. It needs access to the Kubernetes API (in-cluster, or
	// --kubeconfig) and runs only in the replica holding the leader Lease.
	Enabled bool `json:"enabled,omitempty"`
	// DryRun logs and reports what would be done (Events, metrics) and does nothing.
	DryRun bool `json:"dryRun,omitempty"`
	// Interval between looks at the nodes (default 30s).
	Interval Duration `json:"interval,omitempty"`
	// DrainTimeout bounds the eviction of a node's pods before its replacement (default 5m);
	// when PodDisruptionBudgets hold pods that long, the replacement goes ahead and says so.
	DrainTimeout Duration `json:"drainTimeout,omitempty"`
	// MaxClusterUnhealthyPercent: above this share of unhealthy nodes across every group, no
	// node is repaired (default 30): a wide fault is not one broken node per group.
	MaxClusterUnhealthyPercent int `json:"maxClusterUnhealthyPercent,omitempty"`
	// MaxZoneUnhealthyPercent: the same within one availability zone (the nodes'
	// topology.kubernetes.io/zone label; default 50).
	MaxZoneUnhealthyPercent int `json:"maxZoneUnhealthyPercent,omitempty"`
	RepairPolicy
}

// RepairPolicy is the part of the repair settings a node group may override (zero = inherit).
type RepairPolicy struct {
	// UnhealthyAfter: a node whose Ready condition is False or Unknown this long is unhealthy
	// (default 5m). A server in ERROR or SHUTOFF is unhealthy at once.
	UnhealthyAfter Duration `json:"unhealthyAfter,omitempty"`
	// Grace: nodes younger than this are left alone (default 10m).
	Grace Duration `json:"grace,omitempty"`
	// EscalateAfter: a node still unhealthy this long after a step gets the next (default 5m).
	EscalateAfter Duration `json:"escalateAfter,omitempty"`
	// MaxUnhealthyPercent: when more than this share of a group's nodes is unhealthy at once,
	// nothing in the group is repaired (default 40): that is a network or control-plane problem.
	MaxUnhealthyPercent int `json:"maxUnhealthyPercent,omitempty"`
	// Disabled turns repair off for one group.
	Disabled bool `json:"disabled,omitempty"`
}

// Cloud names an entry of clouds.yaml, or cloud-provider-openstack's cloud.conf.
type Cloud struct {
	// CloudsFile is the path of clouds.yaml (default: the usual search path).
	CloudsFile string `json:"cloudsFile,omitempty"`
	// Name is the cloud's key under "clouds:".
	Name string `json:"name,omitempty"`
	// CloudConfFile, instead of CloudsFile and Name: the path of the cloud.conf that
	// openstack-cloud-controller-manager reads (its [Global] section: auth-url, credentials,
	// region, ca-file, …), so its existing Secret can be reused.
	CloudConfFile string `json:"cloudConfFile,omitempty"`
	// Region overrides the cloud's region_name.
	Region string `json:"region,omitempty"`
}

// Backend is how a node group's servers are made.
type Backend string

const (
	// BackendNova creates and deletes servers directly.
	BackendNova Backend = "nova"
	// BackendHeat resizes a Heat stack holding an OS::Heat::ResourceGroup (or
	// OS::Heat::AutoScalingGroup) of servers.
	BackendHeat Backend = "heat"
)

// restrictedNodeLabel says whether a kubelet may not register with the label: one in the
// kubernetes.io or k8s.io namespaces (or their subdomains) outside the set kubelets may set on
// their own Node (k8s.io/kubelet's list, which NodeRestriction and kubelet --node-labels apply).
func restrictedNodeLabel(key string) bool {
	ns, _, ok := strings.Cut(key, "/")
	if !ok {
		return false
	}
	reserved := ns == "kubernetes.io" || strings.HasSuffix(ns, ".kubernetes.io") || ns == "k8s.io" || strings.HasSuffix(ns, ".k8s.io")
	return reserved && !kubeletapis.IsKubeletLabel(key)
}

// NodeGroup is one group of identical nodes.
type NodeGroup struct {
	Name    string  `json:"name"`
	Backend Backend `json:"backend"`
	MinSize int     `json:"minSize"`
	MaxSize int     `json:"maxSize"`
	// Labels and Taints are what the group's nodes register with (passed to user-data, and
	// shown in the scale-up template).
	Labels map[string]string `json:"labels,omitempty"`
	Taints []corev1.Taint    `json:"taints,omitempty"`
	// Reserved is subtracted from capacity to give allocatable (system + kube reservations).
	Reserved map[string]string `json:"reserved,omitempty"`
	// MaxPods is the kubelet's --max-pods on these nodes (default 110).
	MaxPods int `json:"maxPods,omitempty"`
	// PricePerHour of one node, for the price expander.
	PricePerHour float64 `json:"pricePerHour,omitempty"`
	// Options override the autoscaler's defaults for this group.
	Options Options `json:"options,omitempty"`
	// Repair overrides the repair thresholds for this group.
	Repair RepairPolicy `json:"repair,omitempty"`
	Nova   *Nova        `json:"nova,omitempty"`
	Heat   *Heat        `json:"heat,omitempty"`
}

// Nova is the server template of a nova-backed group.
type Nova struct {
	Flavor string `json:"flavor"`
	// Image is a Glance image name or ID.
	Image string `json:"image"`
	// Networks the servers attach to; empty means no network (networks "none").
	Networks         []Network         `json:"networks,omitempty"`
	SecurityGroups   []string          `json:"securityGroups,omitempty"`
	KeyName          string            `json:"keyName,omitempty"`
	ServerGroup      string            `json:"serverGroup,omitempty"`
	AvailabilityZone string            `json:"availabilityZone,omitempty"`
	BootVolumeSize   int               `json:"bootVolumeSize,omitempty"`
	BootVolumeType   string            `json:"bootVolumeType,omitempty"`
	Metadata         map[string]string `json:"metadata,omitempty"`
	// UserData is a Go text/template rendered per server with .ClusterName, .NodeGroup,
	// .ServerName, .Labels (map) and .Taints (list); the result is cloud-init user-data.
	UserData string `json:"userData,omitempty"`
}

// Network is one NIC: a network UUID, or an existing port.
type Network struct {
	UUID    string `json:"uuid,omitempty"`
	Port    string `json:"port,omitempty"`
	FixedIP string `json:"fixedIP,omitempty"`
}

// Heat identifies a node group's stack.
type Heat struct {
	// Stack is the stack's name or ID.
	Stack string `json:"stack"`
	// CountParameter is the stack parameter that sets the ResourceGroup's count (default "count").
	CountParameter string `json:"countParameter,omitempty"`
	// RemovalParameter is the stack parameter the ResourceGroup's removal_policies resource_list
	// takes (default "removal"); exactly the named members are removed when the group shrinks.
	RemovalParameter string `json:"removalParameter,omitempty"`
	// ResourceGroup is the name of the group resource (ResourceGroup or AutoScalingGroup) in the
	// stack (default: the only one). The removal parameter is used by ResourceGroups only.
	ResourceGroup string `json:"resourceGroup,omitempty"`
	// Flavor of the members, for the scale-up template (default: the stack parameter "flavor").
	Flavor string `json:"flavor,omitempty"`
}

// AutoDiscover finds Heat stacks tagged for the cluster, with no restart.
type AutoDiscover struct {
	// HeatStacks discovers stacks tagged "k8s.io/cluster-autoscaler/enabled" and
	// "k8s.io/cluster-autoscaler/<clusterName>"; bounds come from the tags
	// "k8s.io/cluster-autoscaler/min=<n>" and "k8s.io/cluster-autoscaler/max=<n>".
	HeatStacks bool `json:"heatStacks,omitempty"`
}

// PodPricing prices pod requests.
type PodPricing struct {
	PerCoreHour float64 `json:"perCoreHour,omitempty"`
	PerGiBHour  float64 `json:"perGiBHour,omitempty"`
}

// Options are per-group overrides of cluster-autoscaler's options (zero means "use the default").
type Options struct {
	ScaleDownUtilizationThreshold    float64  `json:"scaleDownUtilizationThreshold,omitempty"`
	ScaleDownGpuUtilizationThreshold float64  `json:"scaleDownGpuUtilizationThreshold,omitempty"`
	ScaleDownUnneededTime            Duration `json:"scaleDownUnneededTime,omitempty"`
	ScaleDownUnreadyTime             Duration `json:"scaleDownUnreadyTime,omitempty"`
	MaxNodeProvisionTime             Duration `json:"maxNodeProvisionTime,omitempty"`
	MaxNodeStartupTime               Duration `json:"maxNodeStartupTime,omitempty"`
	ZeroOrMaxNodeScaling             bool     `json:"zeroOrMaxNodeScaling,omitempty"`
	IgnoreDaemonSetsUtilization      bool     `json:"ignoreDaemonSetsUtilization,omitempty"`
}

// Duration is a time.Duration written as "10s", "5m".
type Duration struct{ time.Duration }

// UnmarshalJSON reads "10s"-style durations.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		d.Duration = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (write it like 30s, 5m or 1h)", s)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes "10s"-style durations.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.Duration.String() + `"`), nil }

// Load reads and validates a config file.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	c, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse parses and validates config text; unknown fields are errors (a typo must not be
// silently ignored).
func Parse(raw []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(raw, &c); err != nil {
		return nil, fmt.Errorf("parsing: %w", err)
	}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) setDefaults() {
	if c.RefreshInterval.Duration == 0 {
		c.RefreshInterval.Duration = 10 * time.Second
	}
	for i := range c.NodeGroups {
		if h := c.NodeGroups[i].Heat; h != nil {
			h.SetDefaults()
		}
	}
	r := &c.Repair
	if r.Interval.Duration == 0 {
		r.Interval.Duration = 30 * time.Second
	}
	if r.DrainTimeout.Duration == 0 {
		r.DrainTimeout.Duration = 5 * time.Minute
	}
	if r.UnhealthyAfter.Duration == 0 {
		r.UnhealthyAfter.Duration = 5 * time.Minute
	}
	if r.Grace.Duration == 0 {
		r.Grace.Duration = 10 * time.Minute
	}
	if r.EscalateAfter.Duration == 0 {
		r.EscalateAfter.Duration = 5 * time.Minute
	}
	if r.MaxUnhealthyPercent == 0 {
		r.MaxUnhealthyPercent = 40
	}
	if r.MaxClusterUnhealthyPercent == 0 {
		r.MaxClusterUnhealthyPercent = 30
	}
	if r.MaxZoneUnhealthyPercent == 0 {
		r.MaxZoneUnhealthyPercent = 50
	}
}

// RepairPolicyFor is the repair policy of a group: its overrides over the file's settings.
func (c *Config) RepairPolicyFor(g NodeGroup) RepairPolicy {
	p, o := c.Repair.RepairPolicy, g.Repair
	if o.UnhealthyAfter.Duration != 0 {
		p.UnhealthyAfter = o.UnhealthyAfter
	}
	if o.Grace.Duration != 0 {
		p.Grace = o.Grace
	}
	if o.EscalateAfter.Duration != 0 {
		p.EscalateAfter = o.EscalateAfter
	}
	if o.MaxUnhealthyPercent != 0 {
		p.MaxUnhealthyPercent = o.MaxUnhealthyPercent
	}
	p.Disabled = c.Repair.Disabled || o.Disabled
	return p
}

// SetDefaults fills the stack parameter names.
func (h *Heat) SetDefaults() {
	if h.CountParameter == "" {
		h.CountParameter = "count"
	}
	if h.RemovalParameter == "" {
		h.RemovalParameter = "removal"
	}
}

var groupName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// Validate checks the whole config and reports every problem found, one per line.
func (c *Config) Validate() error {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	switch {
	case c.Cloud.CloudConfFile != "":
		if c.Cloud.Name != "" || c.Cloud.CloudsFile != "" {
			bad("cloud.cloudConfFile is set with cloud.name/cloud.cloudsFile: use either clouds.yaml (name, cloudsFile) or cloud-provider-openstack's cloud.conf (cloudConfFile)")
		}
		if _, err := os.Stat(c.Cloud.CloudConfFile); err != nil {
			bad("cloud.cloudConfFile %q: %v: point it at cloud-provider-openstack's cloud.conf", c.Cloud.CloudConfFile, err)
		}
	case c.Cloud.Name == "":
		bad("cloud.name is empty: set it to the entry of clouds.yaml to use (the key under \"clouds:\"), or set cloud.cloudConfFile to cloud-provider-openstack's cloud.conf")
	}
	if c.Cloud.CloudsFile != "" {
		if _, err := os.Stat(c.Cloud.CloudsFile); err != nil {
			bad("cloud.cloudsFile %q: %v: point it at the clouds.yaml file", c.Cloud.CloudsFile, err)
		}
	}
	if c.ClusterName == "" {
		bad("clusterName is empty: set a name unique among the clusters of this OpenStack project (servers are tagged with it)")
	} else if !groupName.MatchString(c.ClusterName) {
		bad("clusterName %q: use lower-case letters, digits and '-', at most 63 characters", c.ClusterName)
	}
	if strings.ContainsAny(c.ProviderIDRegion, "/ \t\n") {
		bad("providerIDRegion %q: a region name without '/' or spaces, as in the nodes' spec.providerID (openstack://<region>/<server id>), or empty for openstack:///<server id>", c.ProviderIDRegion)
	}
	if c.RefreshInterval.Duration < time.Second {
		bad("refreshInterval %s: use at least 1s (OpenStack is listed once per interval)", c.RefreshInterval.Duration)
	}
	if len(c.NodeGroups) == 0 && !c.AutoDiscovery.HeatStacks {
		bad("nodeGroups is empty and autoDiscovery.heatStacks is off: declare at least one node group or turn discovery on")
	}
	for _, e := range c.Repair.validate() {
		bad("repair.%s", e)
	}
	if c.Repair.Disabled {
		bad("repair.disabled: set per node group only; to turn repair off, set repair.enabled: false")
	}
	seen := map[string]bool{}
	for i, g := range c.NodeGroups {
		field := fmt.Sprintf("nodeGroups[%d]", i)
		if g.Name != "" {
			field = fmt.Sprintf("nodeGroups[%d] (%s)", i, g.Name)
		}
		for _, e := range g.validate() {
			bad("%s.%s", field, e)
		}
		if seen[g.Name] {
			bad("%s.name: %q is used by another group: names must be unique", field, g.Name)
		}
		seen[g.Name] = true
		for j, other := range c.NodeGroups[:i] {
			if msg := stackClash(g, other); msg != "" {
				bad("%s.%s (nodeGroups[%d])%s", field, msg, j, stackClashFix)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

// stackClashFix is how to give each of two groups that claim one stack its own part of it.
const stackClashFix = ": both would claim its nodes (the autoscaler would be told either group for them) and both would resize it; " +
	"drop one of the groups, or, when the stack holds several groups, name each one's heat.resourceGroup with its own countParameter and removalParameter"

// stackClash says how heat group g claims what the earlier group other claims, or "": the same
// group of the same stack (an empty resourceGroup is the stack's only one, so it clashes with
// any), or the same count parameter, which each would overwrite with its own size. A stack named
// by name in one group and by ID in the other is not seen here.
func stackClash(g, other NodeGroup) string {
	if g.Backend != BackendHeat || other.Backend != BackendHeat || g.Heat == nil || other.Heat == nil || g.Heat.Stack == "" || g.Heat.Stack != other.Heat.Stack {
		return ""
	}
	h, o := g.Heat, other.Heat
	if h.ResourceGroup == "" || o.ResourceGroup == "" || h.ResourceGroup == o.ResourceGroup {
		return fmt.Sprintf("heat.stack: stack %q is already node group %q's", h.Stack, other.Name)
	}
	if h.CountParameter == o.CountParameter {
		return fmt.Sprintf("heat.countParameter: %q of stack %q is already node group %q's", h.CountParameter, h.Stack, other.Name)
	}
	return ""
}

func (g NodeGroup) validate() []string {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if !groupName.MatchString(g.Name) {
		bad("name %q: use lower-case letters, digits and '-', at most 63 characters", g.Name)
	}
	if g.MinSize < 0 {
		bad("minSize %d: must be 0 or more", g.MinSize)
	}
	if g.MaxSize < 1 {
		bad("maxSize %d: must be at least 1", g.MaxSize)
	}
	if g.MinSize > g.MaxSize {
		bad("minSize %d is above maxSize %d: lower minSize or raise maxSize", g.MinSize, g.MaxSize)
	}
	for _, size := range []struct {
		field string
		value int
	}{{"minSize", g.MinSize}, {"maxSize", g.MaxSize}} {
		if size.value > math.MaxInt32 {
			bad("%s %d: at most %d (the autoscaler's sizes are 32-bit)", size.field, size.value, math.MaxInt32)
		}
	}
	for _, e := range g.Options.validate() {
		bad("options.%s", e)
	}
	for k, v := range g.Labels {
		for _, msg := range validation.IsQualifiedName(k) {
			bad("labels: key %q: %s", k, msg)
		}
		if restrictedNodeLabel(k) {
			bad("labels: key %q: a kubelet may not set it on its own Node (NodeRestriction; kubelet --node-labels refuses it), so the node would never join: use a key outside kubernetes.io and k8s.io (or under node.kubernetes.io/), and let a controller set role labels after the node joins", k)
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			bad("labels[%s]: value %q: %s", k, v, msg)
		}
	}
	for i, t := range g.Taints {
		if len(validation.IsQualifiedName(t.Key)) > 0 {
			bad("taints[%d].key %q: not a valid taint key", i, t.Key)
		}
		switch t.Effect {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			bad("taints[%d].effect %q: use NoSchedule, PreferNoSchedule or NoExecute", i, t.Effect)
		}
	}
	if _, err := g.ReservedResources(); err != nil {
		bad("%v", err)
	}
	if g.MaxPods < 0 {
		bad("maxPods %d: must be positive (or omitted for 110)", g.MaxPods)
	}
	if g.PricePerHour < 0 {
		bad("pricePerHour %v: must not be negative", g.PricePerHour)
	}
	for _, e := range g.Repair.validate() {
		bad("repair.%s", e)
	}
	switch g.Backend {
	case BackendNova:
		if g.Nova == nil {
			bad("nova: missing: a nova group needs nova.flavor and nova.image")
			break
		}
		if g.Heat != nil {
			bad("heat: set for a nova group: remove it or set backend: heat")
		}
		if g.Nova.Flavor == "" {
			bad("nova.flavor is empty: name the flavor of the group's servers (openstack flavor list)")
		}
		if g.Nova.Image == "" {
			bad("nova.image is empty: name the Glance image (name or ID) the servers boot")
		}
		if g.Nova.BootVolumeSize < 0 {
			bad("nova.bootVolumeSize %d: GiB, 0 to boot from the image", g.Nova.BootVolumeSize)
		}
		for i, n := range g.Nova.Networks {
			if (n.UUID == "") == (n.Port == "") {
				bad("nova.networks[%d]: set exactly one of uuid or port", i)
			}
			if n.Port != "" && g.MaxSize > 1 {
				bad("nova.networks[%d]: a fixed port can be attached to one server only: set maxSize 1, or give the network's uuid instead", i)
			}
			if n.FixedIP != "" && g.MaxSize > 1 {
				bad("nova.networks[%d]: a fixed IP can be given to one server only: set maxSize 1, or leave fixedIP out", i)
			}
		}
		if g.Nova.UserData != "" {
			if _, err := template.New("userData").Option("missingkey=error").Parse(g.Nova.UserData); err != nil {
				bad("nova.userData: %v", err)
			} else if _, err := g.RenderUserData(UserDataInput{ClusterName: "cluster", NodeGroup: g.Name,
				ServerName: "cluster-" + g.Name + "-sample", Labels: g.Labels, Taints: g.Taints}); err != nil {
				bad("nova.userData: rendering it for a sample server: %v (it can use .ClusterName, .NodeGroup, .ServerName, .Labels, .Taints)", errors.Unwrap(err))
			}
		}
	case BackendHeat:
		if g.Heat == nil || g.Heat.Stack == "" {
			bad("heat.stack is empty: name the stack (name or ID) holding the group's ResourceGroup")
		}
		if g.Nova != nil {
			bad("nova: set for a heat group: the stack's template defines the servers; remove it or set backend: nova")
		}
	default:
		bad("backend %q: use nova or heat", g.Backend)
	}
	return errs
}

func (o Options) validate() []string {
	var errs []string
	for _, f := range []struct {
		field string
		value float64
	}{{"scaleDownUtilizationThreshold", o.ScaleDownUtilizationThreshold}, {"scaleDownGpuUtilizationThreshold", o.ScaleDownGpuUtilizationThreshold}} {
		if f.value < 0 || f.value > 1 {
			errs = append(errs, fmt.Sprintf("%s %v: a fraction from 0 to 1 (or omitted for the autoscaler's flag)", f.field, f.value))
		}
	}
	for _, d := range []struct {
		field string
		value time.Duration
	}{{"scaleDownUnneededTime", o.ScaleDownUnneededTime.Duration}, {"scaleDownUnreadyTime", o.ScaleDownUnreadyTime.Duration},
		{"maxNodeProvisionTime", o.MaxNodeProvisionTime.Duration}, {"maxNodeStartupTime", o.MaxNodeStartupTime.Duration}} {
		if d.value < 0 {
			errs = append(errs, fmt.Sprintf("%s %s: must not be negative (or omitted for the autoscaler's flag)", d.field, d.value))
		}
	}
	return errs
}

// Set says whether the group overrides any of the autoscaler's options.
func (o Options) Set() bool { return o != Options{} }

// Warnings are what the configuration does that an operator may not expect, one line each.
func (c *Config) Warnings() []string {
	var out []string
	for _, g := range c.NodeGroups {
		if !g.Options.Set() {
			continue
		}
		out = append(out, fmt.Sprintf("node group %q sets options: cluster-autoscaler 1.36's externalgrpc client reads only "+
			"scaleDownUtilizationThreshold, scaleDownGpuUtilizationThreshold, scaleDownUnneededTime, scaleDownUnreadyTime, "+
			"maxNodeProvisionTime, zeroOrMaxNodeScaling and ignoreDaemonSetsUtilization, and uses maxNodeStartupTime 0 for this "+
			"group: its nodes count as unready until they are Ready (above --ok-total-unready-count the autoscaler halts). "+
			"Leave options out to use the autoscaler's flags for this group.", g.Name))
		if g.Options.MaxNodeStartupTime.Duration > 0 {
			out = append(out, fmt.Sprintf("node group %q: options.maxNodeStartupTime is not read by any released cluster-autoscaler "+
				"(its field comes from an open upstream pull request): set --max-node-startup-time on the autoscaler instead", g.Name))
		}
	}
	return out
}

func (r Repair) validate() []string {
	errs := r.RepairPolicy.validate()
	if r.Interval.Duration < time.Second {
		errs = append(errs, fmt.Sprintf("interval %s: use at least 1s", r.Interval.Duration))
	}
	if r.DrainTimeout.Duration < 0 {
		errs = append(errs, fmt.Sprintf("drainTimeout %s: must be positive (default 5m)", r.DrainTimeout.Duration))
	}
	for _, p := range []struct {
		field string
		value int
	}{{"maxClusterUnhealthyPercent", r.MaxClusterUnhealthyPercent}, {"maxZoneUnhealthyPercent", r.MaxZoneUnhealthyPercent}} {
		if p.value < 0 || p.value > 100 {
			errs = append(errs, fmt.Sprintf("%s %d: a percentage from 1 to 100", p.field, p.value))
		}
	}
	return errs
}

func (p RepairPolicy) validate() []string {
	var errs []string
	for _, d := range []struct {
		field string
		value time.Duration
	}{{"unhealthyAfter", p.UnhealthyAfter.Duration}, {"grace", p.Grace.Duration}, {"escalateAfter", p.EscalateAfter.Duration}} {
		if d.value < 0 {
			errs = append(errs, fmt.Sprintf("%s %s: must be positive (or omitted for the default)", d.field, d.value))
		}
	}
	if p.MaxUnhealthyPercent < 0 || p.MaxUnhealthyPercent > 100 {
		errs = append(errs, fmt.Sprintf("maxUnhealthyPercent %d: a percentage from 1 to 100 (default 40)", p.MaxUnhealthyPercent))
	}
	return errs
}

// ReservedResources parses Reserved.
func (g NodeGroup) ReservedResources() (corev1.ResourceList, error) {
	return nodetemplate.ParseReserved(g.Reserved)
}

// UserDataInput is what a group's user-data template can use.
type UserDataInput struct {
	ClusterName string
	NodeGroup   string
	ServerName  string
	Labels      map[string]string
	Taints      []corev1.Taint
}

// RenderUserData renders the group's user-data for one server.
func (g NodeGroup) RenderUserData(in UserDataInput) (string, error) {
	if g.Nova == nil || g.Nova.UserData == "" {
		return "", nil
	}
	t, err := template.New("userData").Option("missingkey=error").Parse(g.Nova.UserData)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, in); err != nil {
		return "", fmt.Errorf("node group %q: rendering nova.userData: %w", g.Name, err)
	}
	return b.String(), nil
}
