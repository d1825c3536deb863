package autoscaler

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
)

// provider answers as a group of one failed creation, one instance without a node, one
// registered node; it records what it was asked.
type provider struct {
	pb.UnimplementedCloudProviderServer
	mu        sync.Mutex
	deleted   []string
	decreased []int32
	refuse    string // a providerID whose deletion fails
}

func (p *provider) NodeGroupDeleteNodes(_ context.Context, req *pb.NodeGroupDeleteNodesRequest) (*pb.NodeGroupDeleteNodesResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range req.GetNodes() {
		if n.GetProviderID() == p.refuse {
			return nil, status.Error(codes.Unavailable, "refused by the test")
		}
		p.deleted = append(p.deleted, n.GetProviderID())
	}
	return &pb.NodeGroupDeleteNodesResponse{}, nil
}

func (p *provider) NodeGroupDecreaseTargetSize(_ context.Context, req *pb.NodeGroupDecreaseTargetSizeRequest) (*pb.NodeGroupDecreaseTargetSizeResponse, error) {
	p.decreased = append(p.decreased, req.GetDelta())
	return &pb.NodeGroupDecreaseTargetSizeResponse{}, nil
}

func driver(t *testing.T, p *provider, nodes ...corev1.Node) *Driver {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	pb.RegisterCloudProviderServer(srv, p)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	kube := fake.NewClientset()
	for _, n := range nodes {
		if _, err := kube.CoreV1().Nodes().Create(context.Background(), &n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return &Driver{Client: pb.NewCloudProviderClient(conn), Kube: kube}
}

// Housekeeping as 1.36.1 does it each loop: a failed creation is deleted at once, undrained
// (its node untouched: no taint); an instance without a node is deleted only after the
// provision time; a scale-up not fulfilled by then is reverted whole. A loop with nothing to
// do does nothing (it panicked on a group that had never scaled up).
func TestHousekeepingActsAsTheStockAutoscaler(t *testing.T) {
	node := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u1"}, Spec: corev1.NodeSpec{ProviderID: "openstack:///a"}}
	failedNode := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2", UID: "u2"}, Spec: corev1.NodeSpec{ProviderID: "openstack:///failed"}}
	p := &provider{}
	d := driver(t, p, node, failedNode)
	h := &Housekeeping{MaxNodeProvisionTime: time.Hour}
	quiet := &Loop{Nodes: []corev1.Node{node}, Instances: map[string][]*pb.Instance{"g": {
		{Id: "openstack:///a", Status: &pb.InstanceStatus{InstanceState: pb.InstanceStatus_instanceRunning}}}}}
	if did := h.Run(context.Background(), d, quiet); len(did.DeletedFailed)+len(did.DeletedUnregistered)+len(did.Errors) != 0 || len(p.deleted) != 0 {
		t.Fatalf("a loop with nothing to do did %+v, deleted %v", did, p.deleted)
	}
	loop := &Loop{Nodes: []corev1.Node{node, failedNode}, Instances: map[string][]*pb.Instance{"g": {
		{Id: "openstack:///a", Status: &pb.InstanceStatus{InstanceState: pb.InstanceStatus_instanceRunning}},
		{Id: "openstack:///failed", Status: &pb.InstanceStatus{InstanceState: pb.InstanceStatus_instanceCreating, ErrorInfo: &pb.InstanceErrorInfo{ErrorCode: "x"}}},
		{Id: "openstack:///unregistered", Status: &pb.InstanceStatus{InstanceState: pb.InstanceStatus_instanceCreating}},
	}}}
	h.ScaledUp("g", 2, 3)
	did := h.Run(context.Background(), d, loop)
	if len(did.DeletedFailed) != 1 || len(p.deleted) != 1 || p.deleted[0] != "openstack:///failed" {
		t.Errorf("failed creation: did %+v, deleted %v; want openstack:///failed deleted", did, p.deleted)
	}
	if n, _ := d.Kube.CoreV1().Nodes().Get(context.Background(), "n2", metav1.GetOptions{}); Tainted(*n) {
		t.Errorf("the failed creation's node was tainted: 1.36.1 deletes it undrained")
	}
	h.MaxNodeProvisionTime = time.Nanosecond // the provision time has passed
	time.Sleep(time.Millisecond)
	p.deleted = nil
	did = h.Run(context.Background(), d, loop)
	if len(did.DeletedUnregistered) != 1 || did.DeletedUnregistered[0] != "openstack:///unregistered" {
		t.Errorf("unregistered past the provision time: did %+v", did)
	}
	if len(p.decreased) != 1 || p.decreased[0] != -2 {
		t.Errorf("DecreaseTargetSize calls %v, want one of -2 (the whole increase)", p.decreased)
	}
}

// Two failed creations without a node, one whose deletion fails: each outcome is told apart
// (outcomes were keyed by node name, empty for both, and one hid the other).
func TestHousekeepingTellsEachFailedCreationsOutcome(t *testing.T) {
	p := &provider{refuse: "openstack:///f2"}
	d := driver(t, p)
	failed := func(id string) *pb.Instance {
		return &pb.Instance{Id: id, Status: &pb.InstanceStatus{InstanceState: pb.InstanceStatus_instanceCreating, ErrorInfo: &pb.InstanceErrorInfo{ErrorCode: "x"}}}
	}
	h := &Housekeeping{}
	did := h.Run(context.Background(), d, &Loop{Instances: map[string][]*pb.Instance{"g": {failed("openstack:///f1"), failed("openstack:///f2")}}})
	if len(did.DeletedFailed) != 1 || did.DeletedFailed[0] != "openstack:///f1" || len(did.Errors) != 1 {
		t.Errorf("deleted %v with errors %v; want openstack:///f1 deleted and one error for openstack:///f2", did.DeletedFailed, did.Errors)
	}
}
