// Package grpcclient makes the gRPC client connections smtpgate services
// use to reach each other (the edge to policy and auth, policy to auth).
package grpcclient

import (
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/smtpgate/smtpgate/pkg/telemetry"
)

type options struct {
	tp    trace.TracerProvider
	prop  propagation.TextMapPropagator
	extra []grpc.DialOption
}

// WithDialOptions adds gRPC dial options (tests use it for a manual
// resolver).
func WithDialOptions(d ...grpc.DialOption) Option {
	return func(o *options) { o.extra = append(o.extra, d...) }
}

// roundRobin spreads the calls over every address the target resolves to
// (several policy or auth replicas behind dns:///name), rather than
// gRPC's default of sticking to the first.
const roundRobin = `{"loadBalancingConfig": [{"round_robin": {}}]}`

// Option configures Dial.
type Option func(*options)

// WithTracerProvider makes a client span per call with tp and sends the
// trace context of the call's ctx to the server, so that the server's
// spans join the caller's trace.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tp = tp }
}

// WithPropagator sets how the trace context is written into the
// metadata; telemetry.Propagator() (W3C trace context) by default.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(o *options) { o.prop = p }
}

// Dial makes a client for target ("host:port" or a gRPC target URI such
// as dns:///smtpgate-policy:10040). It connects lazily, balances calls
// round robin over the target's addresses, and retries a lost connection
// within about a second, so a caller recovers by itself when a replica
// returns.
func Dial(target string, opts ...Option) (*grpc.ClientConn, error) {
	o := options{prop: telemetry.Propagator()}
	for _, f := range opts {
		f(&o)
	}
	bc := backoff.DefaultConfig
	bc.MaxDelay = time.Second
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: 2 * time.Second}),
		grpc.WithDefaultServiceConfig(roundRobin),
	}
	if telemetry.Recording(o.tp) {
		dopts = append(dopts, grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(o.tp),
			otelgrpc.WithPropagators(o.prop),
			otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		)))
	}
	return grpc.NewClient(target, append(dopts, o.extra...)...)
}
