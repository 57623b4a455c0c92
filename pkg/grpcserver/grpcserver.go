// Package grpcserver sets up the gRPC servers of the smtpgate services the
// same way: the standard health service and server reflection are always
// registered, so grpcurl and health probes work out of the box.
package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// Server is a gRPC server with health and reflection.
type Server struct {
	GRPC   *grpc.Server
	Health *health.Server
}

// New returns a server with health and reflection registered. Register the
// service implementations on s.GRPC, then call Serve.
func New(opts ...grpc.ServerOption) *Server {
	g := grpc.NewServer(opts...)
	h := health.NewServer()
	healthpb.RegisterHealthServer(g, h)
	reflection.Register(g)
	return &Server{GRPC: g, Health: h}
}

// Serve marks every registered service SERVING and serves on lis until ctx
// is done, then stops gracefully.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	for name := range s.GRPC.GetServiceInfo() {
		s.Health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	s.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	errc := make(chan error, 1)
	go func() { errc <- s.GRPC.Serve(lis) }()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpc serve %s: %w", lis.Addr(), err)
		}
		return nil
	case <-ctx.Done():
		s.Health.Shutdown()
		s.GRPC.GracefulStop()
		<-errc
		return nil
	}
}
