package grpcserver

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack/openstacktest"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/provider"
)

func groupsYAML(n, maxSize int) string {
	var b strings.Builder
	b.WriteString("cloud: {name: world}\nclusterName: world\nrefreshInterval: 1h\npodPricing: {perCoreHour: 0.02, perGiBHour: 0.005}\nnodeGroups:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `- name: g%d
  backend: nova
  minSize: 1
  maxSize: %d
  pricePerHour: 0.1
  labels: {pool: g%d}
  taints: [{key: dedicated, value: g%d, effect: NoSchedule}]
  reserved: {cpu: 100m}
  options: {scaleDownUnneededTime: 2m, scaleDownUtilizationThreshold: 0.3}
  nova: {flavor: m1.small, image: world-node-image}
`, i, maxSize, i, i)
	}
	return b.String()
}

type harness struct {
	cloud  *openstacktest.Cloud
	p      *provider.Provider
	client pb.CloudProviderClient
	reg    *prometheus.Registry // the gRPC server's metrics
}

// newHarness serves the provider over an in-memory gRPC connection, against recorded Nova.
func newHarness(t testing.TB, groups, maxSize int, seed func(*openstacktest.Cloud)) *harness {
	t.Helper()
	return newHarnessYAML(t, groupsYAML(groups, maxSize), seed)
}

func newHarnessYAML(t testing.TB, configYAML string, seed func(*openstacktest.Cloud)) *harness {
	t.Helper()
	cloud := openstacktest.NewCloud(t)
	if seed != nil {
		seed(cloud)
	}
	cfg, err := config.Parse([]byte(configYAML))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p, err := provider.New(ctx, cfg, cloud.Clients(), provider.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Manager.Start(ctx); err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	reg := prometheus.NewRegistry()
	srv := NewGRPC(&Server{Provider: p}, reg)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) {
		return lis.Dial()
	}), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &harness{cloud: cloud, p: p, client: pb.NewCloudProviderClient(conn), reg: reg}
}

func (h *harness) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never happened", what)
}

func members(c *openstacktest.Cloud, group string, n int) []string {
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, c.AddServer(fmt.Sprintf("world-%s-%d", group, i), "ACTIVE", membership.Metadata("world", group)))
	}
	return ids
}

func TestNodeGroupForNodeAnswersFromMembership(t *testing.T) {
	var g0, g1 []string
	var foreign, otherCluster string
	h := newHarness(t, 2, 5, func(c *openstacktest.Cloud) {
		g0, g1 = members(c, "g0", 2), members(c, "g1", 1)
		foreign = c.AddServer("bastion", "ACTIVE", nil)
		otherCluster = c.AddServer("staging-g0-1", "ACTIVE", membership.Metadata("staging", "g0"))
	})
	ctx := context.Background()
	groups, err := h.client.NodeGroups(ctx, &pb.NodeGroupsRequest{})
	if err != nil || len(groups.NodeGroups) != 2 || groups.NodeGroups[0].Id != "g0" || groups.NodeGroups[0].MinSize != 1 || groups.NodeGroups[0].MaxSize != 5 {
		t.Fatalf("NodeGroups = %v, %v", groups, err)
	}
	for providerID, want := range map[string]string{
		membership.ProviderID(g0[0]): "g0", membership.ProviderID(g0[1]): "g0", membership.ProviderID(g1[0]): "g1",
		membership.ProviderID(foreign): "", membership.ProviderID(otherCluster): "",
		"aws:///us-east-1a/i-0abc": "", "": "",
	} {
		resp, err := h.client.NodeGroupForNode(ctx, &pb.NodeGroupForNodeRequest{Node: &pb.ExternalGrpcNode{ProviderID: providerID}})
		if err != nil || resp.NodeGroup.GetId() != want {
			t.Errorf("NodeGroupForNode(%q) = %v, %v; want %q", providerID, resp, err, want)
		}
	}
}

func TestScaleUpAnswersAtOnceAndRespectsMax(t *testing.T) {
	h := newHarness(t, 1, 4, func(c *openstacktest.Cloud) { members(c, "g0", 1) })
	ctx := context.Background()
	if _, err := h.client.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "g0", Delta: 2}); err != nil {
		t.Fatal(err)
	}
	size, _ := h.client.NodeGroupTargetSize(ctx, &pb.NodeGroupTargetSizeRequest{Id: "g0"})
	if size.GetTargetSize() != 3 {
		t.Errorf("target right after +2 = %d, want 3", size.GetTargetSize())
	}
	_, err := h.client.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "g0", Delta: 2})
	if status.Code(err) != codes.OutOfRange || !strings.Contains(err.Error(), "maxSize 4") {
		t.Errorf("+2 more (to 5 > max 4): err = %v, want OutOfRange naming maxSize", err)
	}
	// Created: in the cloud, and known to the group (the POST's answer has been taken in).
	var nodes *pb.NodeGroupNodesResponse
	h.waitFor(t, "two servers created", func() bool {
		nodes, _ = h.client.NodeGroupNodes(ctx, &pb.NodeGroupNodesRequest{Id: "g0"})
		for _, inst := range nodes.GetInstances() {
			if !strings.HasPrefix(inst.Id, membership.ProviderIDPrefix) {
				return false
			}
		}
		return len(h.cloud.Servers()) == 3 && len(nodes.GetInstances()) == 3
	})
	states := map[pb.InstanceStatus_InstanceState]int{}
	for _, inst := range nodes.Instances {
		states[inst.Status.InstanceState]++
		if !strings.HasPrefix(inst.Id, membership.ProviderIDPrefix) {
			t.Errorf("instance id %q is not a providerID", inst.Id)
		}
	}
	if states[pb.InstanceStatus_instanceRunning] != 1 || states[pb.InstanceStatus_instanceCreating] != 2 {
		t.Errorf("instance states = %v, want 1 running + 2 creating (BUILD)", states)
	}
	if _, err := h.client.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "nope", Delta: 1}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown group: err = %v, want NotFound", err)
	}
}

func TestFailedCreationsCarryErrorInfo(t *testing.T) {
	h := newHarness(t, 1, 5, func(c *openstacktest.Cloud) {
		members(c, "g0", 1)
		c.AddServer("world-g0-nohost", "ERROR", membership.Metadata("world", "g0"))
		c.Quota = 2
	})
	ctx := context.Background()
	if _, err := h.client.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "g0", Delta: 1}); err != nil {
		t.Fatal(err)
	}
	var failed []*pb.Instance
	h.waitFor(t, "two failed instances", func() bool {
		nodes, _ := h.client.NodeGroupNodes(ctx, &pb.NodeGroupNodesRequest{Id: "g0"})
		failed = nil
		for _, inst := range nodes.GetInstances() {
			if inst.Status.GetErrorInfo().GetErrorCode() != "" {
				failed = append(failed, inst)
			}
		}
		return len(failed) == 2
	})
	codesSeen := map[string]bool{}
	for _, inst := range failed {
		info := inst.Status.ErrorInfo
		codesSeen[info.ErrorCode] = true
		if inst.Status.InstanceState != pb.InstanceStatus_instanceCreating || info.InstanceErrorClass != 1 {
			t.Errorf("failed instance %v: want creating with class 1 (out of resources)", inst)
		}
	}
	if !codesSeen["QUOTA_EXCEEDED"] || !codesSeen["NO_VALID_HOST"] {
		t.Errorf("error codes = %v, want QUOTA_EXCEEDED (403 on POST) and NO_VALID_HOST (server fault)", codesSeen)
	}
	// The autoscaler sees instances without a Node as unregistered nodes, whose providerID is
	// the instance id, and asks for their group (to count them, and to delete them after
	// --max-node-provision-time). A placeholder has no server and must still be found.
	var nodes []*pb.ExternalGrpcNode
	placeholders := 0
	for _, inst := range failed {
		nodes = append(nodes, &pb.ExternalGrpcNode{ProviderID: inst.Id})
		if !strings.HasPrefix(inst.Id, membership.ProviderIDPrefix) {
			placeholders++
		}
		resp, err := h.client.NodeGroupForNode(ctx, &pb.NodeGroupForNodeRequest{Node: &pb.ExternalGrpcNode{ProviderID: inst.Id}})
		if err != nil || resp.NodeGroup.GetId() != "g0" {
			t.Errorf("NodeGroupForNode(unregistered %q) = %v, %v; want g0", inst.Id, resp, err)
		}
	}
	if placeholders != 1 {
		t.Errorf("%d failed instances without a server, want 1 (the quota refusal)", placeholders)
	}
	// The autoscaler deletes both: the placeholder is dropped, the ERROR server deleted.
	if _, err := h.client.NodeGroupDeleteNodes(ctx, &pb.NodeGroupDeleteNodesRequest{Id: "g0", Nodes: nodes}); err != nil {
		t.Fatal(err)
	}
	for _, inst := range failed {
		if strings.HasPrefix(inst.Id, membership.ProviderIDPrefix) {
			continue
		}
		resp, err := h.client.NodeGroupForNode(ctx, &pb.NodeGroupForNodeRequest{Node: &pb.ExternalGrpcNode{ProviderID: inst.Id}})
		if err != nil || resp.NodeGroup.GetId() != "" {
			t.Errorf("NodeGroupForNode(%q) after its deletion = %v, %v; want no group", inst.Id, resp, err)
		}
	}
	size, _ := h.client.NodeGroupTargetSize(ctx, &pb.NodeGroupTargetSizeRequest{Id: "g0"})
	if size.GetTargetSize() != 1 {
		t.Errorf("target after deleting the failed ones = %d, want 1", size.GetTargetSize())
	}
	h.waitFor(t, "the ERROR server deleted", func() bool { return len(h.cloud.Servers()) == 1 })
}

// A server that ran and went to ERROR later is a broken node (for node repair), not a failed
// scale-up: the autoscaler must not be told to delete it as one.
func TestServerThatRanAndBrokeIsNotAFailedCreation(t *testing.T) {
	var ids []string
	h := newHarness(t, 1, 5, func(c *openstacktest.Cloud) {
		ids = members(c, "g0", 2)
		c.SetStatus(ids[1], "ERROR")
	})
	nodes, err := h.client.NodeGroupNodes(context.Background(), &pb.NodeGroupNodesRequest{Id: "g0"})
	if err != nil {
		t.Fatal(err)
	}
	for _, inst := range nodes.GetInstances() {
		if inst.Status.GetErrorInfo() != nil || inst.Status.GetInstanceState() != pb.InstanceStatus_instanceRunning {
			t.Errorf("instance %s = %v, want running with no error (it launched before breaking)", inst.Id, inst.Status)
		}
	}
	if len(nodes.GetInstances()) != 2 {
		t.Errorf("%d instances, want 2", len(nodes.GetInstances()))
	}
}

func TestDeleteNodesIsExactAndGuarded(t *testing.T) {
	var ids []string
	var stranger string
	h := newHarness(t, 1, 5, func(c *openstacktest.Cloud) {
		ids = members(c, "g0", 3)
		stranger = c.AddServer("database", "ACTIVE", nil)
	})
	ctx := context.Background()
	del := func(serverIDs ...string) error {
		req := &pb.NodeGroupDeleteNodesRequest{Id: "g0"}
		for _, id := range serverIDs {
			req.Nodes = append(req.Nodes, &pb.ExternalGrpcNode{ProviderID: membership.ProviderID(id)})
		}
		_, err := h.client.NodeGroupDeleteNodes(ctx, req)
		return err
	}
	// A request naming one stranger is refused whole: not even the member goes.
	if err := del(ids[0], stranger); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "not a member") {
		t.Errorf("deleting a non-member: err = %v, want InvalidArgument 'not a member'", err)
	}
	// Below minSize 1 is refused.
	if err := del(ids...); status.Code(err) != codes.OutOfRange || !strings.Contains(err.Error(), "minSize 1") {
		t.Errorf("deleting all 3 with min 1: err = %v, want OutOfRange naming minSize", err)
	}
	if got := len(h.cloud.Servers()); got != 4 {
		t.Fatalf("servers after refused deletions = %d, want 4", got)
	}
	if err := del(ids[0], ids[2]); err != nil {
		t.Fatal(err)
	}
	size, _ := h.client.NodeGroupTargetSize(ctx, &pb.NodeGroupTargetSizeRequest{Id: "g0"})
	if size.GetTargetSize() != 1 {
		t.Errorf("target right after deleting 2 of 3 = %d, want 1", size.GetTargetSize())
	}
	h.waitFor(t, "exactly the two deleted", func() bool { return len(h.cloud.Servers()) == 2 })
	left := strings.Join(h.cloud.Servers(), ",")
	if !strings.Contains(left, ids[1]) || !strings.Contains(left, stranger) {
		t.Errorf("servers left = %s, want %s and the stranger %s", left, ids[1], stranger)
	}
	// Nothing is unfulfilled: lowering the target is refused, it never deletes a member.
	if _, err := h.client.NodeGroupDecreaseTargetSize(ctx, &pb.NodeGroupDecreaseTargetSizeRequest{Id: "g0", Delta: -1}); status.Code(err) != codes.OutOfRange {
		t.Errorf("DecreaseTargetSize with nothing unfulfilled: err = %v, want OutOfRange", err)
	}
}

func TestTemplateOptionsPricesAndGPUs(t *testing.T) {
	h := newHarness(t, 1, 5, nil)
	ctx := context.Background()
	resp, err := h.client.NodeGroupTemplateNodeInfo(ctx, &pb.NodeGroupTemplateNodeInfoRequest{Id: "g0"})
	if err != nil {
		t.Fatal(err)
	}
	var node corev1.Node
	if err := node.Unmarshal(resp.NodeBytes); err != nil {
		t.Fatalf("nodeBytes is not a protobuf v1.Node: %v", err)
	}
	if cpu := node.Status.Allocatable.Cpu(); cpu.Cmp(resource.MustParse("1900m")) != 0 {
		t.Errorf("template allocatable cpu = %s, want 1900m (m1.small 2 cores - 100m)", cpu)
	}
	for k, v := range map[string]string{"pool": "g0", membership.NodeGroupLabel: "g0", "node.kubernetes.io/instance-type": "m1.small",
		"topology.kubernetes.io/region": "RegionOne", "kubernetes.io/os": "linux"} {
		if node.Labels[k] != v {
			t.Errorf("template label %s = %q, want %q", k, node.Labels[k], v)
		}
	}
	if len(node.Spec.Taints) != 1 || node.Spec.Taints[0].Value != "g0" {
		t.Errorf("template taints = %v", node.Spec.Taints)
	}

	defaults := &pb.NodeGroupAutoscalingOptions{ScaleDownUtilizationThreshold: 0.5, ScaleDownUnneededDuration: durationpb.New(10 * time.Minute),
		MaxNodeProvisionDuration: durationpb.New(15 * time.Minute)}
	opts, err := h.client.NodeGroupGetOptions(ctx, &pb.NodeGroupAutoscalingOptionsRequest{Id: "g0", Defaults: defaults})
	if err != nil {
		t.Fatal(err)
	}
	o := opts.NodeGroupAutoscalingOptions
	if o.ScaleDownUtilizationThreshold != 0.3 || o.ScaleDownUnneededDuration.AsDuration() != 2*time.Minute || o.MaxNodeProvisionDuration.AsDuration() != 15*time.Minute {
		t.Errorf("options = %v: want the group's 0.3 and 2m, the default 15m", o)
	}

	start := timestamppb.New(time.Unix(0, 0))
	end := timestamppb.New(time.Unix(0, 0).Add(2 * time.Hour))
	price, err := h.client.PricingNodePrice(ctx, &pb.PricingNodePriceRequest{Node: &pb.ExternalGrpcNode{Labels: node.Labels}, StartTimestamp: start, EndTimestamp: end})
	if err != nil || fmt.Sprintf("%.2f", price.Price) != "0.20" {
		t.Errorf("node price for 2h of a template node = %v, %v; want 0.20", price, err)
	}
	pod := corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi")}}}}}}
	raw, _ := pod.Marshal()
	podPrice, err := h.client.PricingPodPrice(ctx, &pb.PricingPodPriceRequest{PodBytes: raw, StartTimestamp: start, EndTimestamp: end})
	if err != nil || fmt.Sprintf("%.3f", podPrice.Price) != "0.120" {
		t.Errorf("pod price = %v, %v; want (2*0.02 + 4*0.005) * 2h = 0.120", podPrice, err)
	}
	label, _ := h.client.GPULabel(ctx, &pb.GPULabelRequest{})
	if label.GetLabel() == "" {
		t.Error("GPULabel is empty")
	}
	if _, err := h.client.NodeGroupTemplateNodeInfo(ctx, &pb.NodeGroupTemplateNodeInfoRequest{Id: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("template of an unknown group: err = %v, want NotFound", err)
	}
}

// The number of OpenStack calls a refresh makes does not grow with the number of nodes.
func TestRefreshCallsAreIndependentOfNodeCount(t *testing.T) {
	calls := func(servers int) map[string]int {
		h := newHarness(t, 20, 100, func(c *openstacktest.Cloud) {
			for i := 0; i < servers; i++ {
				c.AddServer(fmt.Sprintf("world-g%d-%d", i%20, i), "ACTIVE", membership.Metadata("world", fmt.Sprintf("g%d", i%20)))
			}
		})
		return h.cloud.Calls() // provider.New + one refresh
	}
	small, large := calls(20), calls(1000)
	if fmt.Sprint(small) != fmt.Sprint(large) {
		t.Errorf("calls with 20 nodes %v differ from calls with 1000 nodes %v", small, large)
	}
	if large["GET /servers/detail"] != 1 {
		t.Errorf("server listings per refresh = %d, want 1", large["GET /servers/detail"])
	}
}

// Where the cloud-controller-manager writes providerIDs with the region, instances are listed the
// same way (the autoscaler compares them with nodes' providerIDs as strings: an instance listed
// as openstack:///<id> beside a node openstack://RegionOne/<id> would look unregistered, and be
// deleted after --max-node-provision-time).
func TestRegionalProviderIDs(t *testing.T) {
	var ids []string
	text := strings.Replace(groupsYAML(1, 5), "clusterName: world\n", "clusterName: world\nproviderIDRegion: RegionOne\n", 1)
	h := newHarnessYAML(t, text, func(c *openstacktest.Cloud) { ids = members(c, "g0", 3) })
	ctx := context.Background()
	nodes, err := h.client.NodeGroupNodes(ctx, &pb.NodeGroupNodesRequest{Id: "g0"})
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, inst := range nodes.GetInstances() {
		listed[inst.Id] = true
	}
	for _, id := range ids {
		if !listed["openstack://RegionOne/"+id] {
			t.Errorf("instances %v: want openstack://RegionOne/%s", listed, id)
		}
	}
	regional := &pb.ExternalGrpcNode{ProviderID: "openstack://RegionOne/" + ids[0]}
	if resp, err := h.client.NodeGroupForNode(ctx, &pb.NodeGroupForNodeRequest{Node: regional}); err != nil || resp.NodeGroup.GetId() != "g0" {
		t.Errorf("NodeGroupForNode(%s) = %v, %v; want g0", regional.ProviderID, resp, err)
	}
	if _, err := h.client.NodeGroupDeleteNodes(ctx, &pb.NodeGroupDeleteNodesRequest{Id: "g0", Nodes: []*pb.ExternalGrpcNode{regional}}); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, "exactly the named server deleted", func() bool {
		left := h.cloud.Servers()
		return len(left) == 2 && !slices.Contains(left, ids[0])
	})
}

// stockClientOptions is what cluster-autoscaler 1.36.1's externalgrpc client makes of a
// NodeGroupGetOptions answer (its GetOptions and the node group config processor): no options
// means the defaults; otherwise only the released fields are read, and maxNodeStartupTime
// (not one of them) becomes 0.
func stockClientOptions(resp *pb.NodeGroupAutoscalingOptionsResponse, defaultStartup time.Duration) (startup, unneeded time.Duration) {
	o := resp.GetNodeGroupAutoscalingOptions()
	if o == nil {
		return defaultStartup, 0
	}
	return 0, o.GetScaleDownUnneededDuration().AsDuration()
}

// A group without options gets no options in the answer, so the stock client keeps its
// --max-node-startup-time for it (with any answer, nodes not Ready yet count as unready).
func TestGroupsWithoutOptionsKeepTheAutoscalersDefaults(t *testing.T) {
	h := newHarnessYAML(t, `cloud: {name: world}
clusterName: world
refreshInterval: 1h
nodeGroups:
- {name: plain, backend: nova, minSize: 0, maxSize: 3, nova: {flavor: m1.small, image: world-node-image}}
- {name: tuned, backend: nova, minSize: 0, maxSize: 3, options: {scaleDownUnneededTime: 2m}, nova: {flavor: m1.small, image: world-node-image}}
`, nil)
	defaults := &pb.NodeGroupAutoscalingOptions{ScaleDownUnneededDuration: durationpb.New(10 * time.Minute),
		MaxNodeProvisionDuration: durationpb.New(15 * time.Minute)}
	const flagStartup = 15 * time.Minute
	plain, err := h.client.NodeGroupGetOptions(context.Background(), &pb.NodeGroupAutoscalingOptionsRequest{Id: "plain", Defaults: defaults})
	if err != nil {
		t.Fatal(err)
	}
	if startup, _ := stockClientOptions(plain, flagStartup); startup != flagStartup {
		t.Errorf("group without options: the stock client would use maxNodeStartupTime %s, want its flag's %s (answer %v)", startup, flagStartup, plain)
	}
	tuned, err := h.client.NodeGroupGetOptions(context.Background(), &pb.NodeGroupAutoscalingOptionsRequest{Id: "tuned", Defaults: defaults})
	if err != nil {
		t.Fatal(err)
	}
	if _, unneeded := stockClientOptions(tuned, flagStartup); unneeded != 2*time.Minute {
		t.Errorf("group with scaleDownUnneededTime 2m: the stock client reads %s", unneeded)
	}
}

// Every call is counted by method and code, and timed: an operator sees the autoscaler's
// calls and their errors on /metrics.
func TestCallsAreCountedByMethodAndCode(t *testing.T) {
	h := newHarness(t, 1, 3, nil)
	ctx := context.Background()
	if _, err := h.client.NodeGroups(ctx, &pb.NodeGroupsRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "no-such-group", Delta: 1}); err == nil {
		t.Fatal("IncreaseSize of an unknown group succeeded")
	}
	got := func() string {
		mfs, err := h.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, mf := range mfs {
			if mf.GetName() != "grpc_server_handled_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetCounter().GetValue() == 0 {
					continue
				}
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				fmt.Fprintf(&b, "%s/%s=%v\n", labels["grpc_method"], labels["grpc_code"], m.GetCounter().GetValue())
			}
		}
		return b.String()
	}()
	if got != "NodeGroupIncreaseSize/NotFound=1\nNodeGroups/OK=1\n" {
		t.Errorf("grpc_server_handled_total, calls counted:\n%s", got)
	}
	if n, err := testutil.GatherAndCount(h.reg, "grpc_server_handling_seconds"); err != nil || n == 0 {
		t.Errorf("grpc_server_handling_seconds: %d series, %v", n, err)
	}
}

// providerIDRegion that does not match how the cluster's nodes carry their providerIDs makes
// every instance look unregistered to cluster-autoscaler (it compares the strings), and 1.36.1
// deletes unregistered instances after --max-node-provision-time: running nodes. A registered
// node of a group whose providerID is written another way is refused with the fix, counted in
// openstack_autoscaler_providerid_mismatch_total, and the autoscaler's loop stops there.
func TestProviderIDWrittenAnotherWayIsRefused(t *testing.T) {
	for _, c := range []struct{ region, nodeID string }{
		{"RegionOne", "openstack:///%s"},
		{"", "openstack://RegionOne/%s"},
		{"RegionOne", "openstack://RegionTwo/%s"},
	} {
		var ids []string
		text := groupsYAML(1, 5)
		if c.region != "" {
			text = strings.Replace(text, "clusterName: world\n", "clusterName: world\nproviderIDRegion: "+c.region+"\n", 1)
		}
		h := newHarnessYAML(t, text, func(oc *openstacktest.Cloud) { ids = members(oc, "g0", 1) })
		node := &pb.ExternalGrpcNode{Name: "world-g0-0", ProviderID: fmt.Sprintf(c.nodeID, ids[0])}
		_, err := h.client.NodeGroupForNode(context.Background(), &pb.NodeGroupForNodeRequest{Node: node})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "providerIDRegion") {
			t.Errorf("providerIDRegion %q, node %s: err = %v; want FailedPrecondition naming providerIDRegion", c.region, node.ProviderID, err)
		}
		if got := testutil.ToFloat64(h.p.Metrics.ProviderIDMismatches()); got != 1 {
			t.Errorf("providerIDRegion %q: openstack_autoscaler_providerid_mismatch_total = %v, want 1", c.region, got)
		}
	}
}
