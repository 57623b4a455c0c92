// Package policy is smtpgate-policy: the gRPC service
// smtpgate.policy.v1.PolicyService that the edge asks, at every stage of an
// SMTP session, for the verdict of the Postfix smtpd restriction lists of
// main.cf (and of the listener's master.cf -o overrides).
//
// Trust: the configuration is trusted. Requests come from the edge, which
// is trusted to report what it saw, but what it saw (addresses, HELO
// names) comes from SMTP clients and is not. A request that is malformed
// gets InvalidArgument, and any failure is an error status, never a
// permit: the edge then answers 451 4.3.0 (fail closed).
//
// It talks to smtpgate-auth (AuthService/LookupUser) when a table is
// "auth:users", and to the recursive DNS servers of smtpgate_dns_servers
// (or /etc/resolv.conf) for the DNS-based restrictions, through one
// resolver per process whose answers may be shared with other replicas
// in the Redis of smtpgate_dns_redis. DNS answers are untrusted data: a
// DNS failure defers or gives the benefit of the doubt as Postfix does,
// never a permit.
//
// The package has one shape, as smtpgate-auth's: Load (settings.go)
// reads every parameter once into Settings and compiles the restriction
// lists; Server (this file) is the process, New → Run(ctx) → Close;
// handler (handler.go) is the gRPC face, with the proto conversions in
// convert.go; delegation.go serves Postfix's policy delegation protocol
// off the Server. The domain is internal/restriction.
package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/smtpgate/smtpgate/pkg/grpcclient"
	"github.com/smtpgate/smtpgate/pkg/grpcserver"
	"github.com/smtpgate/smtpgate/pkg/grpctls"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/redisclient"
	"github.com/smtpgate/smtpgate/pkg/resolver"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/policy/internal/greylist"
	"github.com/smtpgate/smtpgate/services/policy/internal/ratelimit"
)

// Config is what New needs besides the Settings.
type Config struct {
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// TracerProvider traces the gRPC calls (server spans, and client
	// spans to smtpgate-auth), each restriction evaluated and each Redis
	// call; nil or a no-op provider: no tracing.
	TracerProvider trace.TracerProvider
	// Propagator reads and writes the trace context in gRPC metadata;
	// nil: W3C trace context.
	Propagator propagation.TextMapPropagator
	// Metrics receives the service's Prometheus metrics; nil: none.
	Metrics prometheus.Registerer
	// Now is the clock of the auth:users cache
	// (smtpgate_auth_users_cache_time); nil: time.Now.
	Now func() time.Time
}

// Server is the smtpgate-policy process: New opens what the compiled
// lists use (the smtpgate-auth connection, made on first use, the
// resolver's Redis and the shared state's), Run serves gRPC and the
// policy delegation protocol on listeners it opens and closes itself,
// and Close closes what New opened, in reverse order. The gRPC handler
// (handler.go) owns nothing.
type Server struct {
	set Settings
	cfg Config
	log *slog.Logger
	// handler answers PolicyService.
	handler *handler
	// creds secure the gRPC listener (grpctls.Security.Credentials); security says how.
	creds    credentials.TransportCredentials
	security grpctls.Mode
	// access says who may call which method (grpcserver.Access).
	access *grpcserver.Access

	// What New opened, in order; Close closes it in reverse.
	// authConn reaches smtpgate-auth for "auth:users" tables.
	authConn *grpc.ClientConn
	// dnsRedis is the resolver's shared cache, nil without
	// smtpgate_dns_redis; dns the resolver, nil without one.
	dnsRedis redis.UniversalClient
	dns      *resolver.Resolver
	// shared holds check_rate_limit's and check_greylist's state.
	shared    *shared
	closeOnce sync.Once
	closeErr  error
}

// shared is the state every listener's lists share: check_rate_limit's
// counts and check_greylist's triplets, in Redis when configured.
type shared struct {
	// clients are the Redis clients opened for them, in order.
	clients []redis.UniversalClient
	// failures counts the decisions taken without Redis.
	failures sharedFailures
}

// New opens what the lists Load compiled use and binds it to them. A
// Settings serves one Server: Load again for another.
func New(set Settings, cfg Config) (*Server, error) {
	if set.bind == nil {
		return nil, errors.New("policy: settings not made by Load")
	}
	if !set.bind.taken.CompareAndSwap(false, true) {
		return nil, errors.New("policy: these settings already serve a server; Load again")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Propagator == nil {
		cfg.Propagator = telemetry.Propagator()
	}
	log := cfg.Logger
	s := &Server{set: set, cfg: cfg, log: log, shared: &shared{}}
	s.creds, s.security = set.grpcSecurity.Credentials(log), set.grpcSecurity.Mode
	s.access = set.access.WithLogger(log)
	if err := s.open(); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	// The tables' warnings held since Load, then every later one.
	set.bind.held.bind(log.Handler())
	if set.dnsErr != nil {
		log.Warn("no resolver: DNS restrictions unavailable", "err", set.dnsErr)
	}
	if s.dnsRedis != nil && telemetry.Recording(cfg.TracerProvider) {
		// Keys are DNS names; commands are not recorded all the same.
		if err := redisotel.InstrumentTracing(s.dnsRedis, redisotel.WithTracerProvider(cfg.TracerProvider), redisotel.WithDBStatement(false)); err != nil {
			log.Warn("Redis calls not traced", "err", err)
		}
	}
	m := newMetrics(cfg.Metrics, s.DNSStats)
	s.shared.failures.register(cfg.Metrics)
	set.bind.users.counts.register(cfg.Metrics)
	s.handler = &handler{log: log, listeners: set.listeners, metrics: m}
	return s, nil
}

// open opens, in order, the smtpgate-auth connection (made on first
// use, by an "auth:users" table), the resolver's Redis and the shared
// state's, and binds them to the lists.
func (s *Server) open() error {
	set, b := s.set, s.set.bind
	opts := []grpcclient.Option{grpcclient.WithTracerProvider(s.cfg.TracerProvider), grpcclient.WithPropagator(s.cfg.Propagator)}
	if s.cfg.Metrics != nil {
		opts = append(opts, grpcclient.WithMetrics(grpcclient.NewMetrics(s.cfg.Metrics), &authv1.AuthService_ServiceDesc))
	}
	conn, err := set.auth.Dial(s.log, opts...)
	if err != nil {
		return fmt.Errorf("%s: %w", authServiceParam, err)
	}
	s.authConn = conn
	b.users.client = authv1.NewAuthServiceClient(conn)
	b.users.cache = newUserCache(set.usersCacheTime, userCacheSize, s.cfg.Now)

	if b.dns != nil {
		if s.dnsRedis, err = openRedis(set.dnsRedis, time.Second); err != nil {
			return err
		}
		b.dns.Bind(s.log, s.dnsRedis)
		s.dns = b.dns
	}

	var limits ratelimit.Counter = ratelimit.NewMemory(100000, nil)
	var grey greylist.Store = greylist.NewMemory(set.greylist, 1000000)
	rl, err := openRedis(set.rateLimitRedis, 200*time.Millisecond)
	if err != nil {
		return err
	}
	if rl != nil {
		s.shared.clients = append(s.shared.clients, rl)
		limits = countedLimits{ratelimit.NewRedis(rl), &s.shared.failures.rateLimit}
	}
	gr, err := openRedis(set.greylistRedis, 200*time.Millisecond)
	if err != nil {
		return err
	}
	if gr != nil {
		s.shared.clients = append(s.shared.clients, gr)
		grey = countedGreylist{greylist.NewRedis(gr, set.greylist), &s.shared.failures.greylist}
	}
	b.limits.Counter, b.grey.Store = limits, grey
	return nil
}

// openRedis opens the Redis client of a URL Load checked; nil when it
// is empty. The error never quotes the URL: it may hold a password.
func openRedis(url string, timeout time.Duration) (redis.UniversalClient, error) {
	if url == "" {
		return nil, nil
	}
	return redisclient.Open(url, timeout)
}

// Close closes what New opened, in reverse order: the shared state's
// Redis clients, the resolver's, the smtpgate-auth connection, and the
// database and server tables' connections (opened by their first
// lookups). After the
// first call it does nothing.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		for i := len(s.shared.clients) - 1; i >= 0; i-- {
			errs = append(errs, s.shared.clients[i].Close())
		}
		if s.dnsRedis != nil {
			errs = append(errs, s.dnsRedis.Close())
		}
		if s.authConn != nil {
			errs = append(errs, s.authConn.Close())
		}
		errs = append(errs, s.set.bind.tables.close())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Run logs the effective configuration, listens on smtpgate_policy_listen
// (and smtpgate_policy_delegation_listen when set) and serves until ctx
// is done, then stops gracefully; the listeners it opens it closes. The
// caller closes the Server.
func (s *Server) Run(ctx context.Context) error {
	s.logConfig(ctx)
	var lc net.ListenConfig
	lis, err := grpcserver.Listen(ctx, s.set.listen)
	if err != nil {
		return fmt.Errorf("%s: %w", listenParam, err)
	}
	addr := s.set.delegationListen
	if addr == "" {
		return s.Serve(ctx, lis)
	}
	dl, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		lis.Close()
		return fmt.Errorf("smtpgate_policy_delegation_listen %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- s.ServeDelegation(ctx, dl)
		cancel() // one server down stops the other
	}()
	err = s.Serve(ctx, lis)
	cancel()
	return errors.Join(err, <-done)
}

// Serve serves PolicyService, health and reflection on lis until ctx is
// done.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	g := grpcserver.New(grpcserver.WithTracerProvider(s.cfg.TracerProvider), grpcserver.WithPropagator(s.cfg.Propagator),
		grpcserver.WithMetrics(s.cfg.Metrics), grpcserver.WithCredentials(s.creds), grpcserver.WithAccess(s.access),
		grpcserver.WithAdmin(&grpcserver.Admin{Service: "policy", Owner: maincf.Policy, Main: s.set.main, Services: s.set.services}))
	policyv1.RegisterPolicyServiceServer(g.GRPC, s.handler)
	s.log.InfoContext(ctx, "listening", "addr", lis.Addr().String(), "security", string(s.security))
	if w := s.access.Warning(); w != "" {
		s.log.WarnContext(ctx, "gRPC callers are not authenticated", "detail", w)
	}
	if err := g.Serve(ctx, lis); err != nil {
		return fmt.Errorf("serve policy: %w", err)
	}
	return nil
}

// logConfig logs the effective configuration: main.cf, then each
// listener's overrides of policy parameters, secrets (smtpgate_dns_redis)
// redacted.
func (s *Server) logConfig(ctx context.Context) {
	var attrs []any
	for _, p := range s.set.main.Effective(maincf.Policy) {
		attrs = append(attrs, slog.String(p.Name, p.Value))
	}
	s.log.InfoContext(ctx, "configuration", attrs...)
	cat := s.set.main.Catalogue()
	for _, svc := range s.set.services {
		attrs := []any{slog.String("listener", svc.Name)}
		for _, o := range svc.Overrides {
			d, known := cat.Def(o.Name)
			if known && d.Owner&maincf.Policy == 0 {
				continue // another service's setting
			}
			v := o.Value
			if d.Secret {
				v = "(redacted)"
			}
			attrs = append(attrs, slog.String(o.Name, v))
		}
		s.log.InfoContext(ctx, "listener configuration", attrs...)
	}
}

// DNSStats returns the counters of the DNS restrictions' resolver (zero
// without one).
func (s *Server) DNSStats() resolver.Stats {
	if s.dns == nil {
		return resolver.Stats{}
	}
	return s.dns.Stats()
}
