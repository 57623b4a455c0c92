// Package grpcserver sets up the gRPC servers of the smtpgate services the
// same way: the standard health service and server reflection are always
// registered, so grpcurl and health probes work out of the box; every
// other call is traced (OpenTelemetry, W3C trace context taken from the
// caller) and counted and timed when asked, under the names of
// go-grpc-middleware's Prometheus provider (grpc_server_handled_total,
// grpc_server_handling_seconds…), which stock gRPC dashboards read.
// Transport security comes from WithCredentials (pkg/grpctls makes it from
// main.cf), and who may call which method from WithAccess (the caller's
// client certificate; see Access and methodRoles); keepalives are the
// same on every server (see keepaliveOptions), and so is the transport's
// tuning for many small calls (see transportOptions).
//
// Trust: with mutual TLS, a caller is known by its verified client
// certificate and may call only the methods its roles allow (Access);
// the rest are refused with PermissionDenied before the service sees
// them, and health checks answer anyone. Without client certificates
// (plaintext on loopback, or TLS without a client CA) whoever can
// connect is trusted with every method. The trace context a caller sends
// is taken only as the parent of the server's spans. What a request
// carries is left to the service's handlers, which treat it as data from
// SMTP clients.
package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/smtpgate/smtpgate/pkg/telemetry"
	adminv1 "github.com/smtpgate/smtpgate/proto/smtpgate/admin/v1"
)

// Server is a gRPC server with health and reflection.
type Server struct {
	GRPC   *grpc.Server
	Health *health.Server
	// metrics are the call metrics (nil without WithMetrics), refused
	// smtpgate_grpc_server_refused_total (nil without WithAccess too);
	// Serve makes their series for every method registered by then.
	metrics *grpcprom.ServerMetrics
	refused *prometheus.CounterVec
	access  *Access
}

type options struct {
	tp       trace.TracerProvider
	prop     propagation.TextMapPropagator
	reg      prometheus.Registerer
	admin    *Admin
	access   *Access
	creds    credentials.TransportCredentials
	grpcOpts []grpc.ServerOption
}

// Option configures New.
type Option func(*options)

// WithTracerProvider traces every call but health checks and reflection
// with tp (a server span per call, child of the caller's span).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tp = tp }
}

// WithPropagator sets how the caller's trace context is read from the
// metadata; telemetry.Propagator() (W3C trace context) by default.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(o *options) { o.prop = p }
}

// WithMetrics registers on r the metrics of go-grpc-middleware's
// Prometheus provider, under its names and labels (grpc_type,
// grpc_service, grpc_method, and grpc_code for the ended calls):
// grpc_server_started_total, grpc_server_handled_total,
// grpc_server_handling_seconds (with HandlingBuckets),
// grpc_server_msg_received_total and grpc_server_msg_sent_total. Health
// checks and reflection are left out, as they are from the traces:
// probes would swamp the call rates, and a health Watch lasts as long as
// its connection. Every series of every method registered when Serve
// starts exists from then on, at zero; and
// smtpgate_grpc_server_refused_total{method,code} counts the calls
// refused by WithAccess.
func WithMetrics(r prometheus.Registerer) Option {
	return func(o *options) { o.reg = r }
}

// WithServerOptions passes opts to grpc.NewServer.
func WithServerOptions(opts ...grpc.ServerOption) Option {
	return func(o *options) { o.grpcOpts = append(o.grpcOpts, opts...) }
}

// WithCredentials secures the server with creds (grpctls.ServerSecurity); without
// it the server speaks plaintext.
func WithCredentials(creds credentials.TransportCredentials) Option {
	return func(o *options) { o.creds = creds }
}

// keepaliveOptions are every server's keepalive settings:
//   - a client may ping every 10s, even with no call open (smtpgate's
//     clients ping every 30s; more often is answered with GOAWAY
//     "too_many_pings" by gRPC);
//   - the server pings a connection idle for a minute and closes it when
//     the answer takes more than 20s, so a vanished client (a node gone
//     without a FIN) does not hold it forever;
//   - a connection is closed gracefully (GOAWAY) after about 5 minutes,
//     calls in flight given 5 more, so that clients resolve the replicas
//     again and spread over new ones (an autoscaled policy or auth), and
//     new connections pick up renewed certificates.
func keepaliveOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  time.Minute,
			Timeout:               20 * time.Second,
			MaxConnectionAge:      5 * time.Minute,
			MaxConnectionAgeGrace: 5 * time.Minute,
		}),
	}
}

// WindowSize is the static HTTP/2 flow-control window, per stream and per
// connection, of every smtpgate server and client (pkg/grpcclient uses it
// too). smtpgate's messages are a few hundred bytes, so 1 MiB lets
// thousands of calls pass before a WINDOW_UPDATE, and a static window
// turns off gRPC's bandwidth-delay estimation, which otherwise sends a
// PING (and gets a PING ack) for bursts of received data: a frame each
// way, a write system call and allocations on both sides for nothing
// that a loopback or LAN link needs.
const WindowSize = 1 << 20

// transportOptions tune every server for many small unary calls:
//   - static flow-control windows (WindowSize), without BDP pings;
//   - stream workers: a call runs on one of a pool of goroutines that
//     live for many calls (gRPC renews each after 65536), not on a new
//     goroutine whose stack starts small and is copied as it grows
//     (runtime.copystack was a tenth of smtpgate-policy's CPU). A call
//     that finds every worker busy gets a goroutine of its own, as
//     before, so the pool never queues a call. A stream holds its worker
//     while it lasts: each client connection's health Watch (see
//     pkg/grpcclient) and each AUTH exchange take one.
func transportOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.StaticStreamWindowSize(WindowSize),
		grpc.StaticConnWindowSize(WindowSize),
		grpc.NumStreamWorkers(streamWorkers()),
	}
}

// streamWorkers is the size of the stream worker pool: 16 per CPU, at
// least 32, room for the calls in flight from several edges and their
// health Watch streams. An idle worker is a goroutine blocked on a
// channel.
func streamWorkers() uint32 {
	return uint32(max(32, 16*runtime.GOMAXPROCS(0)))
}

// Listen listens on addr, "host:port" or "unix:/path" (a stale socket
// file is replaced; the socket is made readable and writable by the
// group, for clients running under another user of it).
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	p, unix := strings.CutPrefix(addr, "unix:")
	if !unix {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		return ln, nil
	}
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(p)
	}
	ln, err := lc.Listen(ctx, "unix", p)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if err := os.Chmod(p, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", p, err)
	}
	return ln, nil
}

// untraced are the services neither traced nor timed: probes and tools.
func untraced(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.") || strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

// HandlingBuckets are the bounds of the histograms of the time a call
// took, on the servers and the clients: smtpgate's calls take well under
// a millisecond on a LAN, and an AUTH exchange waits for its client.
var HandlingBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Measured selects the calls the metrics count, on the servers and the
// clients: not health checks or reflection.
var Measured = selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
	return !untraced(c.FullMethod())
})

// timedServices lists the services of p the metrics count: the untraced
// ones left out, so that their series are not made either.
type timedServices struct {
	p reflection.ServiceInfoProvider
}

func (t timedServices) GetServiceInfo() map[string]grpc.ServiceInfo {
	out := map[string]grpc.ServiceInfo{}
	for name, info := range t.p.GetServiceInfo() {
		if !untraced("/" + name + "/") {
			out[name] = info
		}
	}
	return out
}

// New returns a server with health and reflection registered. Register the
// service implementations on s.GRPC, then call Serve.
func New(opts ...Option) *Server {
	o := options{prop: telemetry.Propagator()}
	for _, f := range opts {
		f(&o)
	}
	gopts := append(append(keepaliveOptions(), transportOptions()...), o.grpcOpts...)
	if o.creds != nil {
		gopts = append(gopts, grpc.Creds(o.creds))
	}
	if telemetry.Recording(o.tp) {
		gopts = append(gopts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(o.tp),
			otelgrpc.WithPropagators(o.prop),
			// otelgrpc's own metrics are not used (see WithMetrics):
			// an explicit no-op keeps it off the global provider.
			otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
			otelgrpc.WithFilter(filters.None(
				filters.HealthCheck(),
				filters.ServicePrefix("grpc.reflection."),
			)),
		)))
	}
	var refused *prometheus.CounterVec
	if o.access != nil && o.reg != nil {
		refused = telemetry.Register(o.reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgate_grpc_server_refused_total",
			Help: "Calls refused before the service saw them, by method and status code: PermissionDenied (the caller's certificate has no role that may call the method), ResourceExhausted (the caller's rate limit).",
		}, []string{"method", "code"}))
		o.access.refused = func(method string, code codes.Code) { refused.WithLabelValues(method, code.String()).Inc() }
	}
	var sm *grpcprom.ServerMetrics
	if o.reg != nil {
		sm = telemetry.Register(o.reg, grpcprom.NewServerMetrics(
			grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(HandlingBuckets))))
		gopts = append(gopts,
			grpc.ChainUnaryInterceptor(selector.UnaryServerInterceptor(sm.UnaryServerInterceptor(), Measured)),
			grpc.ChainStreamInterceptor(selector.StreamServerInterceptor(sm.StreamServerInterceptor(), Measured)),
		)
	}
	if o.access != nil {
		// After the timing: refused calls are timed with their code too.
		gopts = append(gopts, grpc.ChainUnaryInterceptor(o.access.unary), grpc.ChainStreamInterceptor(o.access.stream))
	}
	g := grpc.NewServer(gopts...)
	h := health.NewServer()
	healthpb.RegisterHealthServer(g, h)
	reflection.Register(g)
	if o.admin != nil {
		adminv1.RegisterAdminServiceServer(g, o.admin)
	}
	return &Server{GRPC: g, Health: h, metrics: sm, refused: refused, access: o.access}
}

// Serve marks every registered service SERVING and serves on lis until ctx
// is done, then stops gracefully.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	if s.metrics != nil {
		s.metrics.InitializeMetrics(timedServices{s.GRPC})
	}
	if s.refused != nil {
		// The refusals each method can get: PermissionDenied unless
		// anyone may call it, ResourceExhausted when it is rate limited.
		for name, info := range s.GRPC.GetServiceInfo() {
			for _, m := range info.Methods {
				full := "/" + name + "/" + m.Name
				if MethodRoles(full) != Anyone {
					s.refused.WithLabelValues(full, codes.PermissionDenied.String())
				}
				if s.access.limits[full] != nil {
					s.refused.WithLabelValues(full, codes.ResourceExhausted.String())
				}
			}
		}
	}
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
