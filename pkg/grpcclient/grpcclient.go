// Package grpcclient makes the gRPC client connections smtpgate services
// use to reach each other (the edge to policy and auth, policy to auth).
package grpcclient

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// Dial makes a client for target ("host:port" or a gRPC target URI). It
// connects lazily and retries a lost connection within about a second, so
// a caller recovers by itself when the service returns.
func Dial(target string) (*grpc.ClientConn, error) {
	bc := backoff.DefaultConfig
	bc.MaxDelay = time.Second
	return grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: 2 * time.Second}))
}
