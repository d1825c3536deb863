// Package grpcserver is the externalgrpc transport: it turns cluster-autoscaler's CloudProvider
// calls into calls on the provider's node groups and back. No handler talks to OpenStack; every
// answer comes from the provider's memory.
package grpcserver

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodegroup"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodetemplate"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/provider"
)

// Server serves the CloudProvider service.
type Server struct {
	pb.UnimplementedCloudProviderServer
	Provider *provider.Provider
}

func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nodegroup.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, nodegroup.ErrOutOfRange):
		return status.Error(codes.OutOfRange, err.Error())
	case errors.Is(err, nodegroup.ErrNotMember):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// defaultCallTimeout is cluster-autoscaler's default grpc_timeout, for a caller that sets no
// deadline.
const defaultCallTimeout = 5 * time.Second

// answerBy gives a call's work its deadline less a margin to send the answer (a tenth of the
// time left, at most half a second).
func answerBy(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(defaultCallTimeout)
	}
	margin := min(time.Until(deadline)/10, 500*time.Millisecond)
	return context.WithDeadline(ctx, deadline.Add(-margin))
}

func protoGroup(g nodegroup.Group) *pb.NodeGroup {
	cfg := g.Config()
	return &pb.NodeGroup{Id: g.ID(), MinSize: int32(cfg.MinSize), MaxSize: int32(cfg.MaxSize), Debug: g.Debug()}
}

func (s *Server) group(id string) (nodegroup.Group, error) {
	g, err := s.Provider.Manager.Group(id)
	return g, toStatus(err)
}

// NodeGroups lists every group.
func (s *Server) NodeGroups(context.Context, *pb.NodeGroupsRequest) (*pb.NodeGroupsResponse, error) {
	groups := s.Provider.Manager.Groups()
	out := make([]*pb.NodeGroup, len(groups))
	for i, g := range groups {
		out[i] = protoGroup(g)
	}
	return &pb.NodeGroupsResponse{NodeGroups: out}, nil
}

// NodeGroupForNode answers from membership in memory; nodes that are not ours get an empty id.
// A member whose node's providerID is written another way than the instances' ids is refused:
// the error ends the autoscaler's loop before it can take running nodes for unregistered ones.
func (s *Server) NodeGroupForNode(_ context.Context, req *pb.NodeGroupForNodeRequest) (*pb.NodeGroupForNodeResponse, error) {
	if g := s.Provider.Manager.GroupForProviderID(req.GetNode().GetProviderID()); g != nil {
		if err := s.Provider.CheckProviderID(req.GetNode().GetProviderID()); err != nil {
			klog.ErrorS(err, "refusing NodeGroupForNode", "node", req.GetNode().GetName(), "group", g.ID())
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
		return &pb.NodeGroupForNodeResponse{NodeGroup: protoGroup(g)}, nil
	}
	return &pb.NodeGroupForNodeResponse{NodeGroup: &pb.NodeGroup{}}, nil
}

func hours(start, end interface{ AsTime() time.Time }) float64 {
	return end.AsTime().Sub(start.AsTime()).Hours()
}

// PricingNodePrice is the group's price per hour over the period.
func (s *Server) PricingNodePrice(_ context.Context, req *pb.PricingNodePriceRequest) (*pb.PricingNodePriceResponse, error) {
	price, err := s.Provider.NodePrice(req.GetNode().GetProviderID(), req.GetNode().GetLabels(), hours(req.GetStartTimestamp(), req.GetEndTimestamp()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.PricingNodePriceResponse{Price: price}, nil
}

// PricingPodPrice prices the pod's requests over the period.
func (s *Server) PricingPodPrice(_ context.Context, req *pb.PricingPodPriceRequest) (*pb.PricingPodPriceResponse, error) {
	var pod corev1.Pod
	if err := pod.Unmarshal(req.GetPodBytes()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "pod_bytes is not a protobuf v1.Pod: %v", err)
	}
	price, err := s.Provider.PodPrice(&pod, hours(req.GetStartTimestamp(), req.GetEndTimestamp()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.PricingPodPriceResponse{Price: price}, nil
}

// GPULabel is the label GPU nodes carry.
func (s *Server) GPULabel(context.Context, *pb.GPULabelRequest) (*pb.GPULabelResponse, error) {
	return &pb.GPULabelResponse{Label: nodetemplate.GPULabel}, nil
}

// GetAvailableGPUTypes lists the GPU types of the groups' flavors.
func (s *Server) GetAvailableGPUTypes(context.Context, *pb.GetAvailableGPUTypesRequest) (*pb.GetAvailableGPUTypesResponse, error) {
	types := map[string]*anypb.Any{}
	for _, kind := range s.Provider.GPUTypes() {
		v, err := anypb.New(wrapperspb.String(kind))
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		types[kind] = v
	}
	return &pb.GetAvailableGPUTypesResponse{GpuTypes: types}, nil
}

// Cleanup is called when the autoscaler stops; the provider keeps running for the next one.
func (s *Server) Cleanup(context.Context, *pb.CleanupRequest) (*pb.CleanupResponse, error) {
	return &pb.CleanupResponse{}, nil
}

// Refresh asks for a background refresh when the state is older than the interval. It never
// waits for OpenStack; a failing refresh is reported so the autoscaler skips its loop rather
// than act on old state.
func (s *Server) Refresh(context.Context, *pb.RefreshRequest) (*pb.RefreshResponse, error) {
	if err := s.Provider.Manager.Refresh(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "last refresh from OpenStack failed: %v", err)
	}
	return &pb.RefreshResponse{}, nil
}

// NodeGroupTargetSize is the group's target.
func (s *Server) NodeGroupTargetSize(_ context.Context, req *pb.NodeGroupTargetSizeRequest) (*pb.NodeGroupTargetSizeResponse, error) {
	g, err := s.group(req.GetId())
	if err != nil {
		return nil, err
	}
	return &pb.NodeGroupTargetSizeResponse{TargetSize: int32(g.TargetSize())}, nil
}

// NodeGroupIncreaseSize starts creations and returns.
// The work gets the call's deadline less a margin for the answer (answerBy): an answer that
// arrives after the autoscaler gave up is an error to it, so the work must be undone then.
func (s *Server) NodeGroupIncreaseSize(ctx context.Context, req *pb.NodeGroupIncreaseSizeRequest) (*pb.NodeGroupIncreaseSizeResponse, error) {
	g, err := s.group(req.GetId())
	if err != nil {
		return nil, err
	}
	ctx, cancel := answerBy(ctx)
	defer cancel()
	if err := g.IncreaseSize(ctx, int(req.GetDelta())); err != nil {
		return nil, toStatus(err)
	}
	return &pb.NodeGroupIncreaseSizeResponse{}, nil
}

// NodeGroupDeleteNodes deletes exactly the named nodes' servers.
//
// The answer must reach the autoscaler before its grpc_timeout: when a call fails (a deadline
// included) it takes the ToBeDeletedByClusterAutoscaler taint off and the node takes pods again
// (cluster-autoscaler 1.36.1, core/scaledown/actuation/actuator.go), so the work gets the
// call's deadline less a margin for the answer, and a call that runs out of it deletes nothing.
func (s *Server) NodeGroupDeleteNodes(ctx context.Context, req *pb.NodeGroupDeleteNodesRequest) (*pb.NodeGroupDeleteNodesResponse, error) {
	g, err := s.group(req.GetId())
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(req.GetNodes()))
	for _, n := range req.GetNodes() {
		if n.GetProviderID() == "" {
			return nil, status.Errorf(codes.InvalidArgument, "node %q has no providerID: cannot tell which server it is", n.GetName())
		}
		ids = append(ids, n.GetProviderID())
	}
	ctx, cancel := answerBy(ctx)
	defer cancel()
	if err := g.DeleteInstances(ctx, ids); err != nil {
		klog.ErrorS(err, "refused to delete nodes", "group", g.ID())
		return nil, toStatus(err)
	}
	return &pb.NodeGroupDeleteNodesResponse{}, nil
}

// NodeGroupDecreaseTargetSize cancels unfulfilled requests.
func (s *Server) NodeGroupDecreaseTargetSize(_ context.Context, req *pb.NodeGroupDecreaseTargetSizeRequest) (*pb.NodeGroupDecreaseTargetSizeResponse, error) {
	g, err := s.group(req.GetId())
	if err != nil {
		return nil, err
	}
	if err := g.DecreaseTargetSize(int(req.GetDelta())); err != nil {
		return nil, toStatus(err)
	}
	return &pb.NodeGroupDecreaseTargetSizeResponse{}, nil
}

// NodeGroupNodes lists the group's instances.
func (s *Server) NodeGroupNodes(_ context.Context, req *pb.NodeGroupNodesRequest) (*pb.NodeGroupNodesResponse, error) {
	g, err := s.group(req.GetId())
	if err != nil {
		return nil, err
	}
	instances := g.Instances()
	out := make([]*pb.Instance, len(instances))
	for i, inst := range instances {
		st := &pb.InstanceStatus{InstanceState: pb.InstanceStatus_InstanceState(inst.State)}
		if inst.Error != nil {
			st.ErrorInfo = &pb.InstanceErrorInfo{ErrorCode: inst.Error.Code, ErrorMessage: inst.Error.Message,
				InstanceErrorClass: int32(inst.Error.Class)}
		}
		out[i] = &pb.Instance{Id: inst.ID, Status: st}
	}
	return &pb.NodeGroupNodesResponse{Instances: out}, nil
}

// NodeGroupTemplateNodeInfo is the node a new member would become, in Kubernetes protobuf.
func (s *Server) NodeGroupTemplateNodeInfo(_ context.Context, req *pb.NodeGroupTemplateNodeInfoRequest) (*pb.NodeGroupTemplateNodeInfoResponse, error) {
	node, err := s.Provider.Template(req.GetId())
	if errors.Is(err, nodegroup.ErrNotFound) {
		if _, groupErr := s.Provider.Manager.Group(req.GetId()); groupErr == nil {
			// The group exists but its flavor is unknown: the contract's way to say "no template".
			return nil, status.Error(codes.Unimplemented, err.Error())
		}
	}
	if err != nil {
		return nil, toStatus(err)
	}
	raw, err := node.Marshal()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &pb.NodeGroupTemplateNodeInfoResponse{NodeBytes: raw}, nil
}

// NodeGroupGetOptions returns the autoscaler's defaults with the group's overrides applied, and
// no options at all for a group that sets none. That matters: cluster-autoscaler 1.36's client
// rebuilds its options from the released fields only, so any answer gives the group a
// maxNodeStartupTime of 0; an empty answer makes it use its own defaults.
func (s *Server) NodeGroupGetOptions(_ context.Context, req *pb.NodeGroupAutoscalingOptionsRequest) (*pb.NodeGroupAutoscalingOptionsResponse, error) {
	g, err := s.group(req.GetId())
	if err != nil {
		return nil, err
	}
	options := g.Config().Options
	if !options.Set() {
		return &pb.NodeGroupAutoscalingOptionsResponse{}, nil
	}
	return &pb.NodeGroupAutoscalingOptionsResponse{NodeGroupAutoscalingOptions: MergeOptions(req.GetDefaults(), options)}, nil
}

// MergeOptions overrides the defaults with every option the group sets.
func MergeOptions(defaults *pb.NodeGroupAutoscalingOptions, o config.Options) *pb.NodeGroupAutoscalingOptions {
	out := &pb.NodeGroupAutoscalingOptions{}
	if defaults != nil {
		out = &pb.NodeGroupAutoscalingOptions{
			ScaleDownUtilizationThreshold: defaults.ScaleDownUtilizationThreshold, ScaleDownGpuUtilizationThreshold: defaults.ScaleDownGpuUtilizationThreshold,
			ZeroOrMaxNodeScaling: defaults.ZeroOrMaxNodeScaling, IgnoreDaemonSetsUtilization: defaults.IgnoreDaemonSetsUtilization,
			ScaleDownUnneededDuration: defaults.ScaleDownUnneededDuration, ScaleDownUnreadyDuration: defaults.ScaleDownUnreadyDuration,
			MaxNodeProvisionDuration: defaults.MaxNodeProvisionDuration, MaxNodeStartupDuration: defaults.MaxNodeStartupDuration,
			AllowNonAtomicScaleUpToMax: defaults.AllowNonAtomicScaleUpToMax,
		}
	}
	if o.ScaleDownUtilizationThreshold > 0 {
		out.ScaleDownUtilizationThreshold = o.ScaleDownUtilizationThreshold
	}
	if o.ScaleDownGpuUtilizationThreshold > 0 {
		out.ScaleDownGpuUtilizationThreshold = o.ScaleDownGpuUtilizationThreshold
	}
	if o.ZeroOrMaxNodeScaling {
		out.ZeroOrMaxNodeScaling = true
	}
	if o.IgnoreDaemonSetsUtilization {
		out.IgnoreDaemonSetsUtilization = true
	}
	for _, d := range []struct {
		set config.Duration
		to  **durationpb.Duration
	}{
		{o.ScaleDownUnneededTime, &out.ScaleDownUnneededDuration},
		{o.ScaleDownUnreadyTime, &out.ScaleDownUnreadyDuration},
		{o.MaxNodeProvisionTime, &out.MaxNodeProvisionDuration},
		{o.MaxNodeStartupTime, &out.MaxNodeStartupDuration},
	} {
		if d.set.Duration > 0 {
			*d.to = durationpb.New(d.set.Duration)
		}
	}
	return out
}
