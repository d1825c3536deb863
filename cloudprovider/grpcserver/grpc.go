package grpcserver

import (
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
)

// NewGRPC is the gRPC server of the CloudProvider service, with opts (its credentials). Every
// call is counted and timed by method and code in reg (grpc_server_handled_total,
// grpc_server_handling_seconds), from the moment the server exists.
func NewGRPC(s *Server, reg prometheus.Registerer, opts ...grpc.ServerOption) *grpc.Server {
	m := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	reg.MustRegister(m)
	srv := grpc.NewServer(append(opts, grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor()))...)
	pb.RegisterCloudProviderServer(srv, s)
	m.InitializeMetrics(srv)
	return srv
}
