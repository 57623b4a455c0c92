// Package edge is smtpgate-edge: the SMTP server of smtpgate. It listens on
// the smtpd services of master.cf, runs the protocol engine
// (internal/smtpd) on each connection, asks smtpgate-policy for verdicts and
// smtpgate-auth for SASL over gRPC, and hands accepted mail to the next hop
// (internal/handoff) before it answers 250. It keeps no state beyond live
// sessions. It trusts the policy and auth services' answers, the next
// hop's replies (a refusal is passed on, never turned into a 250) and the
// counts of the shared Redis of smtpgate_connection_limit_redis (when it
// fails, each edge counts alone); it trusts nothing the SMTP client sends.
// When a dependency fails it refuses temporarily.
//
// The package has one shape: Load (settings.go) reads every parameter
// once into Settings; Server (this file) is the process, New → Run(ctx)
// → Close, with the listeners, the drain and Reload in lifecycle.go;
// clients.go adapts the gRPC clients to the engine's seams. The protocol
// itself is internal/smtpd's.
package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/smtpgate/smtpgate/pkg/grpcclient"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/handoff"
	"github.com/smtpgate/smtpgate/services/edge/internal/maillog"
	"github.com/smtpgate/smtpgate/services/edge/internal/smtpd"
)

// Config is what New needs besides the Settings.
type Config struct {
	Logger *slog.Logger
	// TracerProvider makes the client spans of the calls to policy and
	// auth and sends them the caller's trace context; nil: none.
	TracerProvider trace.TracerProvider
	// Metrics is where the edge registers its metrics (connections,
	// commands, replies, hand-offs, open sessions, its gRPC calls to
	// policy and auth); nil: none.
	Metrics prometheus.Registerer
	// MailLog, when set, gets a mail log in Postfix smtpd's words and
	// syslog's format (internal/maillog), for pflogsumm and the like
	// (Settings.OpenMailLog).
	MailLog *maillog.Log
}

// Server is the smtpgate-edge process: New opens what lives as long as
// the process (the gRPC clients of policy and auth, the connection
// limits' Redis client), Run listens and serves until its context ends
// (lifecycle.go), Reload swaps in a new generation built from new
// Settings, and Close closes what New opened, in reverse order.
type Server struct {
	cfg   Config
	log   *slog.Logger
	conns []*grpc.ClientConn
	// engine is the protocol engine with what lives as long as the
	// process (clients, metrics, connection limits, the drain); each
	// generation gets a copy with its settings (engineFor).
	engine *smtpd.Server
	drain  *smtpd.Drain
	// closeLimits stops the connection limits' Redis client.
	closeLimits func()
	closeOnce   sync.Once

	mu sync.Mutex
	// current is the configuration new connections get.
	current *generation
	// sockets are the open listeners by name (their address), while Run
	// serves; stopping: Run drains, no listener opens any more.
	sockets   map[string]*socket
	stopping  bool
	accepting sync.WaitGroup
	sessions  sync.WaitGroup
	// sessCtx is the sessions' context, cancelled only when the drain
	// gives up on them; errc gets an accept loop's failure.
	sessCtx context.Context
	errc    chan error
}

// generation is one configuration, built from its Settings: what a
// reload replaces. A session keeps the listener settings and engine it
// was accepted with.
type generation struct {
	set      Settings
	bindings []*binding // one per master.cf service, in order
}

// binding is what a connection accepted on one listener gets.
type binding struct {
	l      *smtpd.Listener
	proxy  *proxySettings
	engine *smtpd.Server
	cert   *certificate // nil without TLS
}

// socket is an open listener; cur is the binding of the configuration
// in use, swapped by a reload.
type socket struct {
	name   string
	ln     net.Listener
	cur    atomic.Pointer[binding]
	closed atomic.Bool
}

func (k *socket) close() {
	k.closed.Store(true)
	_ = k.ln.Close()
}

// New builds the edge from the settings Load returned, and opens its
// gRPC clients (which connect lazily and reconnect by themselves) and
// the connection limits' Redis client; the caller closes the Server. A
// Settings is for one Server: its listeners' next hops become the
// Server's.
func New(set Settings, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, drain: &smtpd.Drain{}}
	traced := grpcclient.WithTracerProvider(cfg.TracerProvider)
	popts, aopts := []grpcclient.Option{traced}, []grpcclient.Option{traced}
	if cfg.Metrics != nil {
		m := grpcclient.NewMetrics(cfg.Metrics)
		popts = append(popts, grpcclient.WithMetrics(m, &policyv1.PolicyService_ServiceDesc))
		aopts = append(aopts, grpcclient.WithMetrics(m, &authv1.AuthService_ServiceDesc))
	}
	pc, err := set.policy.Dial(cfg.Logger, popts...)
	if err != nil {
		return nil, fmt.Errorf("policy client: %w", err)
	}
	ac, err := set.auth.Dial(cfg.Logger, aopts...)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("auth client: %w", err)
	}
	s.conns = []*grpc.ClientConn{pc, ac}
	limits, closeLimits, err := connLimits(set, cfg)
	if err != nil {
		ac.Close()
		pc.Close()
		return nil, err
	}
	// Opened last: nothing after it fails, so New closes nothing more.
	s.closeLimits = closeLimits
	s.engine = &smtpd.Server{Config: smtpd.Config{
		Policy: policyClient{policyv1.NewPolicyServiceClient(pc)},
		Auth:   authClient{authv1.NewAuthServiceClient(ac)},
		Logger: cfg.Logger,
		Limits: limits,
		Memory: memoryBudget(set.memoryBudget),
		Drain:  s.drain,
	}}
	s.engine.MailLog = cfg.MailLog
	if cfg.Metrics != nil {
		s.engine.Metrics = smtpd.NewMetrics(cfg.Metrics)
		memoryMetrics(cfg.Metrics, s.engine.Memory)
		certificateMetrics(cfg.Metrics, s.certificates)
	}
	// Spans only when they go somewhere: a no-op tracer would still cost
	// an allocation or two per command.
	if telemetry.Recording(cfg.TracerProvider) {
		s.engine.Tracer = cfg.TracerProvider.Tracer("github.com/smtpgate/smtpgate/services/edge")
	}
	g := s.generation(set)
	s.mu.Lock() // a scrape reads it (certificates)
	s.current = g
	s.mu.Unlock()
	limits.SetReserves(g.reserves())
	return s, nil
}

// Close closes what New opened, in reverse order: the connection
// limits' Redis client, then the gRPC clients. Run must have returned;
// after the first call Close does nothing.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closeLimits()
		for i := len(s.conns) - 1; i >= 0; i-- {
			err = errors.Join(err, s.conns[i].Close())
		}
	})
	return err
}

// generation builds the listeners and engine of set: the same way for
// New and for Reload.
func (s *Server) generation(set Settings) *generation {
	eng := s.engineFor(set)
	g := &generation{set: set}
	for _, ls := range set.listeners {
		if p := ls.proxy; p != nil && p.trusted.Empty() {
			s.log.Warn("smtpd_upstream_proxy_protocol is on but smtpgate_proxy_networks is empty: every connection to this listener will be dropped", "listener", ls.l.Name)
		}
		if r, ok := ls.l.NextHop.(*handoff.Relay); ok {
			// What Postfix's smtp(8) logs about a message.
			r.Opts.Logger = s.log
		}
		s.engine.Metrics.Listen(ls.l)
		g.bindings = append(g.bindings, &binding{l: ls.l, proxy: ls.proxy, engine: eng, cert: ls.cert})
	}
	return g
}

// engineFor is the engine of a generation: s.engine's Config holds what
// lives as long as the process (its settings left zero: it serves no
// session), and the settings a reload may change come from set, here
// only, for New and Reload alike. The Config is swapped in whole
// (smtpd.Server.Reconfigured); TestNewSetsEngineWhole fails on a field
// of it left unset.
func (s *Server) engineFor(set Settings) *smtpd.Server {
	c := s.engine.Config
	c.PolicyTimeout = set.policy.Timeout
	c.PolicySkipTime = set.policySkipTime
	c.AuthTimeout = set.auth.Timeout
	return s.engine.Reconfigured(c)
}

// reserves are the listeners' smtpgate_connection_reserve by name.
func (g *generation) reserves() map[string]int {
	r := map[string]int{}
	for _, b := range g.bindings {
		r[b.l.Name] = b.l.ConnectionReserve
	}
	return r
}

// closeNextHops ends the connections g's next hops keep between
// messages (with QUIT); sessions still using g go on without them.
func (g *generation) closeNextHops() {
	for _, b := range g.bindings {
		if c, ok := b.l.NextHop.(io.Closer); ok {
			_ = c.Close()
		}
	}
}
