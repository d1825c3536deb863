package grpcserver

import (
	"context"
	"fmt"
	"testing"
	"time"

	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack/openstacktest"
)

// One autoscaler loop over gRPC for a cluster of 1,000 nodes in 20 groups: Refresh, NodeGroups
// and NodeGroupForNode for every node (the calls the externalgrpc client makes each loop).
func BenchmarkAutoscalerLoop1000Nodes20Groups(b *testing.B) {
	var providerIDs []string
	h := newHarness(b, 20, 100, func(c *openstacktest.Cloud) {
		for i := 0; i < 1000; i++ {
			id := c.AddServer(fmt.Sprintf("world-g%d-%d", i%20, i), "ACTIVE", membership.Metadata("world", fmt.Sprintf("g%d", i%20)))
			providerIDs = append(providerIDs, membership.ProviderID(id))
		}
	})
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := h.client.Refresh(ctx, &pb.RefreshRequest{}); err != nil {
			b.Fatal(err)
		}
		if _, err := h.client.NodeGroups(ctx, &pb.NodeGroupsRequest{}); err != nil {
			b.Fatal(err)
		}
		for _, id := range providerIDs {
			resp, err := h.client.NodeGroupForNode(ctx, &pb.NodeGroupForNodeRequest{Node: &pb.ExternalGrpcNode{ProviderID: id}})
			if err != nil || resp.NodeGroup.GetId() == "" {
				b.Fatalf("NodeGroupForNode(%s) = %v, %v", id, resp, err)
			}
		}
	}
}

// IncreaseSize(+20): how long the call takes to answer, and how long until all 20 server
// creations have reached Nova (recorded responses, so Nova's own latency is not counted).
func BenchmarkIncreaseSize20(b *testing.B) {
	var answer, allIssued time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		h := newHarness(b, 1, 25, nil)
		ctx := context.Background()
		b.StartTimer()
		start := time.Now()
		if _, err := h.client.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "g0", Delta: 20}); err != nil {
			b.Fatal(err)
		}
		answer += time.Since(start)
		for h.cloud.Calls()["POST /servers"] < 20 {
			time.Sleep(time.Millisecond)
		}
		allIssued += time.Since(start)
	}
	b.ReportMetric(float64(answer.Microseconds())/float64(b.N)/1000, "answer-ms")
	b.ReportMetric(float64(allIssued.Microseconds())/float64(b.N)/1000, "all-creates-issued-ms")
}

// The transport's floor for comparison: as many calls as one loop makes (1,002), each answered
// with a constant (GPULabel).
func BenchmarkBaselineGRPCFloor1002Calls(b *testing.B) {
	h := newHarness(b, 1, 5, nil)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < 1002; j++ {
			if _, err := h.client.GPULabel(ctx, &pb.GPULabelRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	}
}
