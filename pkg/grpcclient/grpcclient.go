// Package grpcclient makes the gRPC client connections smtpgate services
// use to reach each other (the edge to policy and auth, policy to auth).
//
// Every connection balances round robin over the target's addresses,
// pings an idle connection every 30s (a dead peer is noticed within
// about 40s), gives every call a deadline (the caller's, or one of its
// own), and retries on UNAVAILABLE only the calls that are safe to
// repeat (see serviceConfig). Its HTTP/2 flow-control windows are static
// (grpcserver.WindowSize), so no bandwidth-delay PINGs follow the calls.
//
// Trust: the target and the transport credentials come from main.cf
// (trusted; pkg/grpctls verifies the server's certificate, and refuses
// plaintext off loopback unless the operator allows it). A peer is
// believed only as far as that verification goes; what it answers is the
// caller's to judge (the edge fails closed on any error).
package grpcclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	// Registers client-side health checking (healthCheckConfig below).
	_ "google.golang.org/grpc/health"
	"google.golang.org/grpc/keepalive"

	"github.com/smtpgate/smtpgate/pkg/grpcserver"
	"github.com/smtpgate/smtpgate/pkg/grpctls"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

type options struct {
	tp      trace.TracerProvider
	prop    propagation.TextMapPropagator
	creds   credentials.TransportCredentials
	timeout time.Duration
	metrics *Metrics
	extra   []grpc.DialOption
}

// WithCredentials secures the connection with creds (grpctls.ClientSecurity);
// without it the client speaks plaintext.
func WithCredentials(creds credentials.TransportCredentials) Option {
	return func(o *options) { o.creds = creds }
}

// WithTimeout is the deadline of every unary call whose caller set none
// (DefaultTimeout when not given). A caller's own deadline is kept, so
// that the edge's timeouts, which a reload may change, are the ones that
// apply.
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// WithDialOptions adds gRPC dial options (tests use it for a manual
// resolver).
func WithDialOptions(d ...grpc.DialOption) Option {
	return func(o *options) { o.extra = append(o.extra, d...) }
}

// DefaultTimeout bounds a unary call when WithTimeout is not given.
const DefaultTimeout = 10 * time.Second

// AuthenticateTimeout bounds a whole AUTH exchange (the Authenticate
// stream), which waits for the SMTP client between its steps; the edge
// bounds each wait on smtpgate-auth by smtpgate_auth_timeout.
const AuthenticateTimeout = 10 * time.Minute

// serviceConfig is the connection's gRPC service config
// (https://github.com/grpc/grpc/blob/master/doc/service_config.md):
//
//   - round_robin spreads the calls over every address the target
//     resolves to (several policy or auth replicas behind dns:///name),
//     rather than gRPC's default of sticking to the first;
//   - health checking per address (grpc.health.v1 Watch) takes a replica
//     that is shutting down (NOT_SERVING) out of the rotation before its
//     connection closes;
//   - the AUTH stream has a deadline (AuthenticateTimeout); unary calls
//     get theirs from the caller or from deadlineInterceptor;
//   - calls that are safe to repeat are retried on UNAVAILABLE, on
//     another replica when there is one: AuthService Mechanisms and
//     LookupUser (reads), health checks and AdminService (reads). Never
//     PolicyService Check or Explain: an evaluation may count a rate
//     limit, greylist or ask a policy server, and a call that failed with
//     UNAVAILABLE may have done so before failing; never
//     AuthService Authenticate, which counts failed AUTHs. gRPC's
//     transparent retry still applies to every call: a call that never
//     left this client (the connection was refused or closing) is sent
//     again, which cannot count anything twice;
//   - retryThrottling stops retrying while more than half the calls fail.
func serviceConfig() string {
	type name struct {
		Service string `json:"service,omitempty"`
		Method  string `json:"method,omitempty"`
	}
	type retry struct {
		MaxAttempts          int      `json:"maxAttempts"`
		InitialBackoff       string   `json:"initialBackoff"`
		MaxBackoff           string   `json:"maxBackoff"`
		BackoffMultiplier    float64  `json:"backoffMultiplier"`
		RetryableStatusCodes []string `json:"retryableStatusCodes"`
	}
	type method struct {
		Name        []name `json:"name"`
		Timeout     string `json:"timeout,omitempty"`
		RetryPolicy *retry `json:"retryPolicy,omitempty"`
	}
	secs := func(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }
	authSvc, policySvc := authv1.AuthService_ServiceDesc.ServiceName, policyv1.PolicyService_ServiceDesc.ServiceName
	sc := map[string]any{
		"loadBalancingConfig": []any{map[string]any{"round_robin": map[string]any{}}},
		"healthCheckConfig":   map[string]string{"serviceName": ""},
		"retryThrottling":     map[string]any{"maxTokens": 10, "tokenRatio": 0.5},
		"methodConfig": []method{
			{
				Name: []name{
					{Service: authSvc, Method: "Mechanisms"},
					{Service: authSvc, Method: "LookupUser"},
					{Service: "grpc.health.v1.Health", Method: "Check"},
					{Service: "smtpgate.admin.v1.AdminService"},
				},
				RetryPolicy: &retry{MaxAttempts: 3, InitialBackoff: "0.05s", MaxBackoff: "0.5s", BackoffMultiplier: 2,
					RetryableStatusCodes: []string{"UNAVAILABLE"}},
			},
			// No retry, stated for the reader: Check, Explain.
			{Name: []name{{Service: policySvc, Method: "Check"}, {Service: policySvc, Method: "Explain"}}},
			{Name: []name{{Service: authSvc, Method: "Authenticate"}}, Timeout: secs(AuthenticateTimeout)},
		},
	}
	b, err := json.Marshal(sc)
	if err != nil {
		panic("grpcclient: service config: " + err.Error())
	}
	return string(b)
}

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
// returns. The service config of the resolver (DNS TXT records) is
// ignored: serviceConfig is always used.
func Dial(target string, opts ...Option) (*grpc.ClientConn, error) {
	o := options{prop: telemetry.Propagator(), creds: insecure.NewCredentials(), timeout: DefaultTimeout}
	for _, f := range opts {
		f(&o)
	}
	if o.timeout <= 0 {
		o.timeout = DefaultTimeout
	}
	bc := backoff.DefaultConfig
	bc.MaxDelay = time.Second
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(o.creds),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: 2 * time.Second}),
		grpc.WithDisableServiceConfig(),
		grpc.WithDefaultServiceConfig(serviceConfig()),
		grpc.WithChainUnaryInterceptor(deadlineInterceptor(o.timeout)),
		grpc.WithStaticStreamWindowSize(grpcserver.WindowSize),
		grpc.WithStaticConnWindowSize(grpcserver.WindowSize),
		// Within grpcserver's enforcement policy (10s at least).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
	}
	if o.metrics != nil {
		// First in the chain: a call is timed with its deadline's wait.
		dopts = append([]grpc.DialOption{
			grpc.WithChainUnaryInterceptor(selector.UnaryClientInterceptor(interceptors.UnaryClientInterceptor(o.metrics), grpcserver.Measured)),
			grpc.WithChainStreamInterceptor(selector.StreamClientInterceptor(interceptors.StreamClientInterceptor(o.metrics), grpcserver.Measured)),
		}, dopts...)
	}
	if telemetry.Recording(o.tp) {
		dopts = append(dopts, grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(o.tp),
			otelgrpc.WithPropagators(o.prop),
			otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
			otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
		)))
	}
	conn, err := grpc.NewClient(target, append(dopts, o.extra...)...)
	if err != nil {
		return nil, fmt.Errorf("grpc client for %s: %w", target, err)
	}
	return conn, nil
}

// deadlineInterceptor gives a unary call without a deadline one of d.
func deadlineInterceptor(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// Target is a gRPC service a process calls, read from main.cf once: its
// address, the deadline of a unary call whose caller set none, and how the
// connection is secured (the smtpgate_grpc_tls_* parameters).
type Target struct {
	// Param is the parameter that names the target
	// (smtpgate_policy_service, smtpgate_auth_service).
	Param    string
	Address  string
	Timeout  time.Duration
	Security grpctls.Security
}

// LoadTarget reads the target main.cf names in param, its timeout in
// timeoutParam and its security (grpctls.ClientSecurity, which reads the
// TLS files); every problem, joined, with its file:line.
func LoadTarget(c *maincf.Config, param, timeoutParam string) (Target, error) {
	t := Target{Param: param, Address: c.Get(param)}
	var errs []error
	d, err := maincf.Typed(c, timeoutParam, maincf.ParseDuration)
	if err != nil {
		errs = append(errs, err)
	}
	t.Timeout = d
	if t.Security, err = grpctls.ClientSecurity(c, param); err != nil {
		errs = append(errs, err)
	}
	return t, errors.Join(errs...)
}

// Dial makes the client of t. log (nil: none) gets the certificate reloads
// and a line saying how the connection is secured. opts come after t's own
// and may override them.
func (t Target) Dial(log *slog.Logger, opts ...Option) (*grpc.ClientConn, error) {
	if log != nil {
		log.Info("gRPC client", "target", t.Address, "param", t.Param, "security", string(t.Security.Mode))
	}
	base := []Option{WithCredentials(t.Security.Credentials(log)), WithTimeout(t.Timeout)}
	return Dial(t.Address, append(base, opts...)...)
}
