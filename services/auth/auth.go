// Package auth is smtpgate-auth: the SASL authority of smtpgate. It serves
// smtpgate.auth.v1.AuthService to the edge over gRPC (with health and
// reflection), verifies credentials against a Dovecot passwd-file, and
// decides which mechanisms a listener may offer from Postfix's
// smtpd_sasl_security_options. It trusts the edge's word about the session
// (listener, TLS, client address) and nothing the SMTP client sends: every
// response is parsed as hostile. Passwords and SASL data are never logged.
//
// Failed authentications are throttled (internal/throttle): counted per
// client address, network and user name, in Redis when smtpgate_auth_redis
// is set (shared by every replica) or in process memory, answered after a
// growing delay, and locked out (454 4.7.0, no password checked) for
// smtpgate_auth_lockout_time once a count reaches its maximum. Besides its
// clients it talks only to that Redis, and trusts it with counts, never
// with passwords; when Redis fails each replica counts alone.
//
// The package has one shape: Load (settings.go) reads every parameter
// once into Settings; Server (this file) is the process, New → Run(ctx)
// → Close; handler (handler.go) is the gRPC face, with the proto
// conversions in convert.go; authority (authority.go, throttle.go) is the
// domain, and dovecot.go the Dovecot protocol's listener.
package auth

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"

	"github.com/smtpgate/smtpgate/pkg/grpcserver"
	"github.com/smtpgate/smtpgate/pkg/grpctls"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	"github.com/smtpgate/smtpgate/services/auth/internal/authcache"
	"github.com/smtpgate/smtpgate/services/auth/internal/dovecotauth"
	"github.com/smtpgate/smtpgate/services/auth/internal/dovecotclient"
	"github.com/smtpgate/smtpgate/services/auth/internal/scheme"
	"github.com/smtpgate/smtpgate/services/auth/internal/throttle"
)

// Config is what New needs besides the Settings.
type Config struct {
	Logger *slog.Logger
	// TracerProvider traces the gRPC calls (a server span per call, child
	// of the caller's) and the Redis calls; nil or no-op: no tracing.
	TracerProvider trace.TracerProvider
	// Propagator reads the trace context from gRPC metadata; nil: W3C
	// trace context.
	Propagator propagation.TextMapPropagator
	// Metrics receives the service's Prometheus metrics; nil: none.
	Metrics prometheus.Registerer
}

// Server is the smtpgate-auth process: New opens what the service needs
// (the throttle's Redis), Run serves gRPC and the Dovecot auth protocol
// on listeners it opens and closes itself, and Close closes what New
// opened, in reverse order. The gRPC handler (handler.go) and the domain
// (authority.go) own nothing.
type Server struct {
	set  Settings
	cfg  Config
	log  *slog.Logger
	auth *authority
	// creds secure the gRPC listener (grpctls.Security.Credentials); security says how.
	creds    credentials.TransportCredentials
	security grpctls.Mode
	// access says who may call which method (grpcserver.Access).
	access    *grpcserver.Access
	closeOnce sync.Once
}

// New builds the server from the settings Load returned.
func New(set Settings, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Propagator == nil {
		cfg.Propagator = telemetry.Propagator()
	}
	s := &Server{set: set, cfg: cfg, log: cfg.Logger}
	var err error
	s.creds, s.security = set.grpcSecurity.Credentials(cfg.Logger), set.grpcSecurity.Mode
	s.access = set.access.WithLogger(cfg.Logger)
	a := &authority{log: s.log, hostname: set.hostname, users: set.users, listeners: set.listeners, sleep: sleep}
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	a.secret = make([]byte, 32)
	_, _ = rand.Read(a.secret)
	if a.dummy, err = scheme.Hash(scheme.SHA512Crypt, pw); err != nil {
		return nil, err
	}
	if a.cache, err = authcache.New(set.cache); err != nil {
		return nil, err
	}
	// Dovecot's sockets: one client (one multiplexed connection, dialled
	// on first use) per socket, shared by the listeners that name it.
	a.dovecot = map[string]*dovecotclient.Client{}
	for _, l := range set.listeners {
		if l.dovecot == "" || a.dovecot[l.dovecot] != nil {
			continue
		}
		if a.dovecot[l.dovecot], err = dovecotclient.New(l.dovecot, set.dovecotTimeout); err != nil {
			return nil, fmt.Errorf("dovecot auth-client socket: %w", err)
		}
		s.log.Info("SASL through Dovecot", "socket", l.dovecot)
	}
	if set.userdb != "" {
		if a.userdb, err = dovecotclient.NewUserDB(set.userdb, set.dovecotTimeout); err != nil {
			return nil, fmt.Errorf("dovecot userdb socket: %w", err)
		}
		s.log.Info("users from Dovecot's userdb", "socket", set.userdb)
	}
	opts := set.throttle
	opts.Logger = s.log
	if telemetry.Recording(cfg.TracerProvider) {
		opts.TracerProvider = cfg.TracerProvider
	}
	// Opened last: nothing after it can fail, so New never has to close.
	if a.limiter, err = throttle.New(opts); err != nil {
		return nil, err
	}
	a.metrics = newMetrics(cfg.Metrics, a.limiter.RedisErrors, a.dovecotErrors)
	s.log.Info("authentication throttling", "shared", a.limiter.Shared(), "window", opts.Window, "lockout", opts.Lockout,
		"max_per_client", opts.MaxPerClient, "max_per_network", opts.MaxPerNetwork, "max_per_user", opts.MaxPerUser)
	s.log.Info("authentication cache", "on", a.cache != nil, "size", set.cache.Size, "ttl", set.cache.TTL)
	s.auth = a
	return s, nil
}

// Close closes what New opened (the throttle's Redis connections, the
// connections to Dovecot); after the first call it does nothing.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		for _, c := range s.auth.dovecot {
			c.Close()
		}
		if s.auth.userdb != nil {
			s.auth.userdb.Close()
		}
		err = s.auth.limiter.Close()
	})
	return err
}

// Run serves gRPC on smtpgate_auth_listen, and the Dovecot auth protocol
// on smtpgate_dovecot_auth_listen, until ctx ends; the listeners it opens
// it closes. The caller closes the Server.
func (s *Server) Run(ctx context.Context) error {
	lis, err := grpcserver.Listen(ctx, s.set.listen)
	if err != nil {
		return fmt.Errorf("%s: %w", listenParam, err)
	}
	var dovecot []net.Listener
	for _, a := range s.set.dovecotListen {
		ln, err := s.listenDovecot(a)
		if err != nil {
			lis.Close()
			for _, l := range dovecot {
				l.Close()
			}
			return err
		}
		dovecot = append(dovecot, ln)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(dovecot)+1)
	for _, ln := range dovecot {
		s.log.InfoContext(ctx, "listening", "addr", ln.Addr().String(), "protocol", "dovecot-auth")
		// Closed again once served: a unix socket's file goes with it.
		defer ln.Close()
		go func() { errc <- s.ServeDovecot(ctx, ln) }()
	}
	go func() { errc <- s.Serve(ctx, lis) }()
	var first error
	for range len(dovecot) + 1 {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// ServeDovecot serves the Dovecot auth protocol on ln until ctx ends. The
// mechanisms and security options are main.cf's (no listener overrides).
// Only the TCP callers of smtpgate_dovecot_auth_clients, and those of unix
// sockets, are let in; they are trusted with the rip= address the
// throttle counts.
func (s *Server) ServeDovecot(ctx context.Context, ln net.Listener) error {
	l, _ := s.auth.listenerNamed("")
	srv := &dovecotauth.Server{
		Mechanisms: l.offered,
		Backend:    s.auth,
		Start:      s.auth.start,
		Hostname:   s.set.hostname,
		Logger:     s.log.With("protocol", "dovecot-auth"),
		Clients:    s.set.dovecot.clients,
	}
	return srv.Serve(ctx, ln)
}

// Serve serves gRPC on lis until ctx ends.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	srv := grpcserver.New(grpcserver.WithTracerProvider(s.cfg.TracerProvider), grpcserver.WithPropagator(s.cfg.Propagator),
		grpcserver.WithMetrics(s.cfg.Metrics), grpcserver.WithCredentials(s.creds), grpcserver.WithAccess(s.access),
		grpcserver.WithAdmin(&grpcserver.Admin{Service: "auth", Owner: maincf.Auth, Main: s.set.main, Services: s.set.services}))
	authv1.RegisterAuthServiceServer(srv.GRPC, handler{auth: s.auth})
	s.log.InfoContext(ctx, "listening", "addr", lis.Addr().String(), "security", string(s.security))
	if w := s.access.Warning(); w != "" {
		s.log.WarnContext(ctx, "gRPC callers are not authenticated", "detail", w)
	}
	return srv.Serve(ctx, lis)
}
