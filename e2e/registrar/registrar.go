// Package registrar is test infrastructure of the local world. It stands in for what makes a
// real OpenStack server a Kubernetes node (cloud-init, the kubelet, and the OpenStack cloud
// controller manager): when a Nova server of a managed node group becomes ACTIVE it registers a
// kwok Node named after the server with spec.providerID openstack:///<uuid>, capacity from the
// flavor and the labels and taints the group declares; it turns the Node NotReady while the
// server is SHUTOFF, ERROR or rebooting, and deletes the Node when the server is gone.
package registrar

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodetemplate"
)

const (
	// KwokAnnotation selects the nodes kwok keeps Ready (kwok runs with
	// --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake).
	KwokAnnotation = "kwok.x-k8s.io/node"
	kwokManaged    = "fake"
	// kwokReleased takes a node out of kwok's hands so it stays NotReady (kwok would make any
	// node it manages Ready again at once).
	kwokReleased = "released-by-registrar"
	// ServerAnnotation marks the Nodes the registrar made, with their server's UUID.
	ServerAnnotation = "e2e.openstack-autoscaler.io/server-id"
)

// Declarations are what node groups declare for their nodes. The file format is a subset of the
// provider's configuration (clusterName, nodeGroups[].name/labels/taints/reserved), so the
// registrar can read the provider's own config file; other fields are ignored.
type Declarations struct {
	ClusterName string  `json:"clusterName"`
	NodeGroups  []Group `json:"nodeGroups"`
}

// Group is one node group's declarations.
type Group struct {
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels"`
	Taints   []corev1.Taint    `json:"taints"`
	Reserved map[string]string `json:"reserved"`
}

// LoadDeclarations reads a declarations (or provider config) file.
func LoadDeclarations(path string) (*Declarations, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d Declarations
	if err := yaml.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if d.ClusterName == "" {
		return nil, fmt.Errorf("%s: clusterName is empty: set it to the cluster name servers carry in metadata %q", path, membership.ClusterKey)
	}
	return &d, nil
}

// Registrar keeps kwok Nodes in step with the cluster's Nova servers.
type Registrar struct {
	Compute  *gophercloud.ServiceClient // admin credentials: lists servers of all projects
	Kube     kubernetes.Interface
	Decl     *Declarations
	Region   string
	Interval time.Duration
	// DeclarationsFile, when set, is re-read on every pass so groups added to the provider's
	// config (or a test's file) take effect without a restart.
	DeclarationsFile string

	nodes corelisters.NodeLister
}

// Run syncs until ctx ends.
func (r *Registrar) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(r.Kube, 0)
	r.nodes = factory.Core().V1().Nodes().Lister()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	ticker := time.NewTicker(r.Interval)
	defer ticker.Stop()
	for {
		if err := r.Sync(ctx); err != nil {
			klog.ErrorS(err, "sync failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// Sync makes one pass: list the cluster's servers once, then create, update or delete Nodes.
func (r *Registrar) Sync(ctx context.Context) error {
	if r.DeclarationsFile != "" {
		if d, err := LoadDeclarations(r.DeclarationsFile); err == nil {
			r.Decl = d
		} else {
			klog.ErrorS(err, "keeping the previous declarations")
		}
	}
	listCtx, cancel := context.WithTimeout(ctx, 20*time.Second) // a hung nova-api must not stop the registrar
	defer cancel()
	pages, err := servers.List(r.Compute, servers.ListOpts{AllTenants: true}).AllPages(listCtx)
	if err != nil {
		return fmt.Errorf("listing servers: %w", err)
	}
	all, err := servers.ExtractServers(pages)
	if err != nil {
		return err
	}
	ours := map[string]servers.Server{}
	for _, s := range all {
		if _, ok := membership.Of(s.Metadata, r.Decl.ClusterName); ok {
			ours[s.ID] = s
		}
	}
	nodes, err := r.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	byServer := map[string]*corev1.Node{}
	for _, n := range nodes {
		if id := n.Annotations[ServerAnnotation]; id != "" {
			byServer[id] = n
		}
	}
	for id, s := range ours {
		node := byServer[id]
		switch {
		case s.Status == "ACTIVE" && node == nil:
			err = r.register(ctx, s)
		case s.Status == "ACTIVE" && node.Annotations[KwokAnnotation] != kwokManaged:
			err = r.recover(ctx, node)
		case node != nil && brokenStatus(s.Status) && node.Annotations[KwokAnnotation] == kwokManaged:
			err = r.markNotReady(ctx, node, s.Status)
		}
		if err != nil {
			klog.ErrorS(err, "syncing server", "server", s.Name, "id", id)
		}
	}
	for id, node := range byServer {
		if s, ok := ours[id]; ok && s.Status != "DELETED" && s.Status != "SOFT_DELETED" {
			continue
		}
		err := r.Kube.CoreV1().Nodes().Delete(ctx, node.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			klog.ErrorS(err, "deleting node", "node", node.Name)
			continue
		}
		klog.InfoS("server gone: node deleted", "node", node.Name, "server", id)
	}
	return nil
}

// brokenStatus: a kubelet on a server in these states stops posting status.
func brokenStatus(status string) bool {
	switch status {
	case "SHUTOFF", "ERROR", "REBOOT", "HARD_REBOOT", "PAUSED", "SUSPENDED", "STOPPED":
		return true
	}
	return false
}

func (r *Registrar) group(name string) Group {
	for _, g := range r.Decl.NodeGroups {
		if g.Name == name {
			return g
		}
	}
	return Group{Name: name}
}

var invalidNameChars = regexp.MustCompile(`[^a-z0-9.-]+`)

// NodeName is the Node name of a server: its name, lower-cased and made a valid DNS subdomain.
func NodeName(serverName string) string {
	n := invalidNameChars.ReplaceAllString(strings.ToLower(serverName), "-")
	return strings.Trim(n, "-.")
}

// NodeFor builds the Node a kubelet on the server would register.
func (r *Registrar) NodeFor(s servers.Server) (*corev1.Node, error) {
	groupName, _ := membership.Of(s.Metadata, r.Decl.ClusterName)
	group := r.group(groupName)
	flavor, err := nodetemplate.FlavorFromServer(s.Flavor)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", s.ID, err)
	}
	reserved, err := nodetemplate.ParseReserved(group.Reserved)
	if err != nil {
		return nil, fmt.Errorf("node group %q: %w", group.Name, err)
	}
	node := nodetemplate.Node(nodetemplate.Spec{
		NodeName: NodeName(s.Name), NodeGroup: group.Name, Flavor: flavor, Region: r.Region, Zone: s.AvailabilityZone,
		Labels: group.Labels, Taints: group.Taints, Reserved: reserved,
	})
	node.Labels["type"] = "kwok"
	node.Annotations = map[string]string{KwokAnnotation: kwokManaged, ServerAnnotation: s.ID}
	node.Spec.ProviderID = membership.ProviderID(s.ID)
	return node, nil
}

func (r *Registrar) register(ctx context.Context, s servers.Server) error {
	node, err := r.NodeFor(s)
	if err != nil {
		return err
	}
	if _, err := r.Kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("node %s exists but was not registered for server %s: leaving it alone", node.Name, s.ID)
		}
		return err
	}
	klog.InfoS("server active: node registered", "node", node.Name, "server", s.ID, "providerID", node.Spec.ProviderID)
	return nil
}

// markNotReady takes the node from kwok and reports Ready=False, as the node lifecycle would
// see a kubelet that stopped.
func (r *Registrar) markNotReady(ctx context.Context, node *corev1.Node, serverStatus string) error {
	if err := r.setKwok(ctx, node.Name, kwokReleased); err != nil {
		return err
	}
	now := metav1.Now()
	patch := fmt.Sprintf(`{"status":{"conditions":[{"type":"Ready","status":"False","reason":"ServerNot%s","message":"server is %s","lastHeartbeatTime":%q,"lastTransitionTime":%q}]}}`,
		strings.ReplaceAll(strings.Title(strings.ToLower(serverStatus)), "_", ""), serverStatus, now.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	if _, err := r.Kube.CoreV1().Nodes().PatchStatus(ctx, node.Name, []byte(patch)); err != nil {
		return err
	}
	klog.InfoS("server broken: node NotReady", "node", node.Name, "serverStatus", serverStatus)
	return nil
}

// recover hands the node back to kwok, which makes it Ready again.
func (r *Registrar) recover(ctx context.Context, node *corev1.Node) error {
	if err := r.setKwok(ctx, node.Name, kwokManaged); err != nil {
		return err
	}
	klog.InfoS("server active again: node handed back to kwok", "node", node.Name)
	return nil
}

func (r *Registrar) setKwok(ctx context.Context, node, value string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, KwokAnnotation, value)
	_, err := r.Kube.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}
