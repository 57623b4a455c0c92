package grpcclient

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

type countingHealth struct {
	healthpb.UnimplementedHealthServer
	n atomic.Int64
}

func (h *countingHealth) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.n.Add(1)
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// Calls are spread over every replica the target resolves to.
func TestRoundRobin(t *testing.T) {
	var servers []*countingHealth
	var addrs []resolver.Address
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g := grpc.NewServer()
		h := &countingHealth{}
		healthpb.RegisterHealthServer(g, h)
		go func() { _ = g.Serve(ln) }()
		t.Cleanup(g.Stop)
		servers = append(servers, h)
		addrs = append(addrs, resolver.Address{Addr: ln.Addr().String()})
	}
	r := manual.NewBuilderWithScheme("test")
	r.InitialState(resolver.State{Addresses: addrs})
	conn, err := Dial("test:///replicas", WithDialOptions(grpc.WithResolvers(r)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := healthpb.NewHealthClient(conn)
	call := func() {
		t.Helper()
		if _, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
			t.Fatal(err)
		}
	}
	// The first calls go to whichever replica is ready first; wait until
	// both are in the rotation, then count.
	for i := 0; servers[0].n.Load() == 0 || servers[1].n.Load() == 0; i++ {
		if i == 1000 {
			t.Fatalf("after 1000 calls one replica still has none: %d, %d", servers[0].n.Load(), servers[1].n.Load())
		}
		call()
	}
	servers[0].n.Store(0)
	servers[1].n.Store(0)
	for range 20 {
		call()
	}
	a, b := servers[0].n.Load(), servers[1].n.Load()
	if a+b != 20 || a < 5 || b < 5 {
		t.Errorf("calls per replica: %d and %d, want both used", a, b)
	}
}
