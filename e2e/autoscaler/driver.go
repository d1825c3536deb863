// Package autoscaler is test infrastructure: a driver that calls the provider over gRPC the way
// cluster-autoscaler's externalgrpc client does in its loop (Refresh, NodeGroups, then
// NodeGroupForNode for every node of the cluster), plus the scale-up arithmetic it does with a
// group's template node for pending pods. It is what the end-to-end tests use when no stock
// cluster-autoscaler binary is at hand.
package autoscaler

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
)

// Driver runs autoscaler loops against a provider.
type Driver struct {
	Client pb.CloudProviderClient
	Kube   kubernetes.Interface
	// Timeout per call, as the autoscaler's grpc_timeout (default 5s).
	Timeout time.Duration
}

// Loop is what one loop learned.
type Loop struct {
	Groups      map[string]*pb.NodeGroup
	NodeToGroup map[string]string // node name -> group id ("" = not the provider's)
	Nodes       []corev1.Node
	// Instances by group, and the group each instance without a node was said to be of.
	Instances           map[string][]*pb.Instance
	UnregisteredToGroup map[string]string
	// Options by group (nil: the autoscaler's defaults).
	Options map[string]*pb.NodeGroupAutoscalingOptions
	Took    time.Duration
}

func (d *Driver) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	t := d.Timeout
	if t == 0 {
		t = 5 * time.Second
	}
	return context.WithTimeout(parent, t)
}

// RunLoop makes the calls of one cluster-autoscaler 1.36.1 loop before any decision
// (core/static_autoscaler.go RunOnce; the externalgrpc client in
// cloudprovider/externalgrpc/externalgrpc_cloud_provider.go): Refresh first, whose error ends
// the loop; NodeGroups; NodeGroupForNode for every node; each group's instances
// (NodeGroupNodes), and NodeGroupForNode for every instance without a node, with the instance
// id as its providerID (clusterstate's unregistered nodes); NodeGroupGetOptions per group.
// Every call has its own grpc_timeout.
func (d *Driver) RunLoop(parent context.Context) (*Loop, error) {
	nodes, err := d.Kube.CoreV1().Nodes().List(parent, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	start := time.Now()
	call := func(f func(ctx context.Context) error) error {
		ctx, cancel := d.ctx(parent)
		defer cancel()
		return f(ctx)
	}
	if err := call(func(ctx context.Context) error { _, err := d.Client.Refresh(ctx, &pb.RefreshRequest{}); return err }); err != nil {
		return nil, fmt.Errorf("Refresh: %w", err)
	}
	var groups *pb.NodeGroupsResponse
	if err := call(func(ctx context.Context) (err error) {
		groups, err = d.Client.NodeGroups(ctx, &pb.NodeGroupsRequest{})
		return err
	}); err != nil {
		return nil, fmt.Errorf("NodeGroups: %w", err)
	}
	loop := &Loop{Groups: map[string]*pb.NodeGroup{}, NodeToGroup: map[string]string{}, Nodes: nodes.Items,
		Instances: map[string][]*pb.Instance{}, UnregisteredToGroup: map[string]string{}, Options: map[string]*pb.NodeGroupAutoscalingOptions{}}
	for _, g := range groups.GetNodeGroups() {
		loop.Groups[g.GetId()] = g
	}
	forNode := func(n *pb.ExternalGrpcNode) (string, error) {
		var resp *pb.NodeGroupForNodeResponse
		err := call(func(ctx context.Context) (err error) {
			resp, err = d.Client.NodeGroupForNode(ctx, &pb.NodeGroupForNodeRequest{Node: n})
			return err
		})
		return resp.GetNodeGroup().GetId(), err
	}
	providerIDs := map[string]bool{}
	for _, n := range nodes.Items {
		providerIDs[n.Spec.ProviderID] = true
		id, err := forNode(&pb.ExternalGrpcNode{ProviderID: n.Spec.ProviderID, Name: n.Name, Labels: n.Labels, Annotations: n.Annotations})
		if err != nil {
			return nil, fmt.Errorf("NodeGroupForNode(%s): %w", n.Name, err)
		}
		loop.NodeToGroup[n.Name] = id
	}
	for id := range loop.Groups {
		var instances *pb.NodeGroupNodesResponse
		if err := call(func(ctx context.Context) (err error) {
			instances, err = d.Client.NodeGroupNodes(ctx, &pb.NodeGroupNodesRequest{Id: id})
			return err
		}); err != nil {
			return nil, fmt.Errorf("NodeGroupNodes(%s): %w", id, err)
		}
		loop.Instances[id] = instances.GetInstances()
		for _, inst := range instances.GetInstances() {
			if providerIDs[inst.GetId()] {
				continue
			}
			group, err := forNode(&pb.ExternalGrpcNode{ProviderID: inst.GetId(), Name: inst.GetId()})
			if err != nil {
				return nil, fmt.Errorf("NodeGroupForNode(unregistered %s): %w", inst.GetId(), err)
			}
			loop.UnregisteredToGroup[inst.GetId()] = group
		}
		var options *pb.NodeGroupAutoscalingOptionsResponse
		if err := call(func(ctx context.Context) (err error) {
			options, err = d.Client.NodeGroupGetOptions(ctx, &pb.NodeGroupAutoscalingOptionsRequest{Id: id, Defaults: &pb.NodeGroupAutoscalingOptions{}})
			return err
		}); err != nil {
			return nil, fmt.Errorf("NodeGroupGetOptions(%s): %w", id, err)
		}
		loop.Options[id] = options.GetNodeGroupAutoscalingOptions()
	}
	loop.Took = time.Since(start)
	return loop, nil
}

// Template returns the group's template node.
func (d *Driver) Template(parent context.Context, group string) (*corev1.Node, error) {
	ctx, cancel := d.ctx(parent)
	defer cancel()
	resp, err := d.Client.NodeGroupTemplateNodeInfo(ctx, &pb.NodeGroupTemplateNodeInfoRequest{Id: group})
	if err != nil {
		return nil, err
	}
	var node corev1.Node
	if err := node.Unmarshal(resp.GetNodeBytes()); err != nil {
		return nil, fmt.Errorf("template node of %s: %w", group, err)
	}
	return &node, nil
}

// NodesFor is how many template nodes the pods' CPU and memory requests need (first-fit by
// the larger of the two ratios, as a simple stand-in for the autoscaler's binpacking).
func NodesFor(template *corev1.Node, pods []corev1.Pod) int {
	allocCPU := template.Status.Allocatable.Cpu().MilliValue()
	allocMem := template.Status.Allocatable.Memory().Value()
	var usedCPU, usedMem int64
	nodes := 0
	for _, p := range pods {
		var cpu, mem resource.Quantity
		for _, c := range p.Spec.Containers {
			cpu.Add(*c.Resources.Requests.Cpu())
			mem.Add(*c.Resources.Requests.Memory())
		}
		if nodes == 0 || usedCPU+cpu.MilliValue() > allocCPU || usedMem+mem.Value() > allocMem {
			nodes++
			usedCPU, usedMem = 0, 0
		}
		usedCPU += cpu.MilliValue()
		usedMem += mem.Value()
	}
	return nodes
}

// TargetSize of a group.
func (d *Driver) TargetSize(parent context.Context, group string) (int, error) {
	ctx, cancel := d.ctx(parent)
	defer cancel()
	resp, err := d.Client.NodeGroupTargetSize(ctx, &pb.NodeGroupTargetSizeRequest{Id: group})
	return int(resp.GetTargetSize()), err
}

// IncreaseSize of a group, asked again (up to twice) when a call runs out of time: the provider
// answers OK only once Nova accepted every server, and a slow Nova worker can take longer than
// the call's timeout; the failed call made nothing, and the autoscaler asks again in a later
// loop (after its back-off, which a test need not wait for).
func (d *Driver) IncreaseSize(parent context.Context, group string, delta int) error {
	var err error
	for range 3 {
		if err = d.IncreaseSizeOnce(parent, group, delta); status.Code(err) != codes.DeadlineExceeded {
			return err
		}
	}
	return err
}

// IncreaseSizeOnce makes one NodeGroupIncreaseSize call.
func (d *Driver) IncreaseSizeOnce(parent context.Context, group string, delta int) error {
	ctx, cancel := d.ctx(parent)
	defer cancel()
	_, err := d.Client.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: group, Delta: int32(delta)})
	return err
}

// DeleteNodes of a group, sent as the autoscaler sends them.
func (d *Driver) DeleteNodes(parent context.Context, group string, nodes ...corev1.Node) error {
	ctx, cancel := d.ctx(parent)
	defer cancel()
	req := &pb.NodeGroupDeleteNodesRequest{Id: group}
	for _, n := range nodes {
		req.Nodes = append(req.Nodes, &pb.ExternalGrpcNode{ProviderID: n.Spec.ProviderID, Name: n.Name, Labels: n.Labels, Annotations: n.Annotations})
	}
	_, err := d.Client.NodeGroupDeleteNodes(ctx, req)
	return err
}

// Instances of a group.
func (d *Driver) Instances(parent context.Context, group string) ([]*pb.Instance, error) {
	ctx, cancel := d.ctx(parent)
	defer cancel()
	resp, err := d.Client.NodeGroupNodes(ctx, &pb.NodeGroupNodesRequest{Id: group})
	return resp.GetInstances(), err
}
