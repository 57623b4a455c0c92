// Package edge is smtpgate-edge: the SMTP server of smtpgate. It listens on
// the smtpd services of master.cf, runs the protocol engine
// (internal/smtpd) on each connection, asks smtpgate-policy for verdicts and
// smtpgate-auth for SASL over gRPC, and hands accepted mail to the next hop
// (internal/handoff) before it answers 250. It keeps no state beyond live
// sessions. It trusts the policy and auth services' answers and nothing the
// SMTP client sends; when a dependency fails it refuses temporarily.
package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/smtpgate/smtpgate/pkg/grpcclient"
	"github.com/smtpgate/smtpgate/pkg/grpctls"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/handoff"
	"github.com/smtpgate/smtpgate/services/edge/internal/listener"
	"github.com/smtpgate/smtpgate/services/edge/internal/maillog"
	"github.com/smtpgate/smtpgate/services/edge/internal/smtpd"
)

// Config is what New needs.
type Config struct {
	Main     *maincf.Config
	Services []maincf.Service
	Logger   *slog.Logger
	// TracerProvider makes the client spans of the calls to policy and
	// auth and sends them the caller's trace context; nil: none.
	TracerProvider trace.TracerProvider
	// Metrics is where the edge registers its metrics (connections,
	// commands, replies, hand-offs, open sessions); nil: none.
	Metrics prometheus.Registerer
	// MailLog, when set, gets a mail log in Postfix smtpd's words and
	// syslog's format (internal/maillog), for pflogsumm and the like.
	MailLog io.Writer
}

// Validate checks the edge's part of the configuration: names and values,
// the listeners, their certificates and next hops.
func Validate(main *maincf.Config, services []maincf.Service) error {
	errs := []error{main.Validate(maincf.Edge), maincf.ValidateServices(main, services, maincf.Edge), checkConnLimitRedis(main), checkReserves(main, services)}
	if len(services) == 0 {
		errs = append(errs, errors.New("master.cf: no smtpd services: the edge has nothing to listen on"))
	}
	if _, _, err := listeners(main, services); err != nil {
		errs = append(errs, err)
	}
	// The gRPC clients' TLS files, and plaintext only to loopback.
	for _, param := range []string{"smtpgate_policy_service", "smtpgate_auth_service"} {
		if _, _, err := grpctls.Client(main, param, nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// listeners compiles each master.cf service into the engine's settings.
func listeners(main *maincf.Config, services []maincf.Service) ([]*smtpd.Listener, []*certificate, error) {
	var out []*smtpd.Listener
	var certs []*certificate
	var errs []error
	for _, svc := range services {
		c := main.WithOverrides(svc.Overrides)
		l, cert, err := newListener(c, svc.Name)
		if err == nil {
			_, err = proxyOf(c)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: service %s: %w", svc.Pos, svc.Name, err))
			continue
		}
		out = append(out, l)
		if cert != nil {
			certs = append(certs, cert)
		}
	}
	return out, certs, errors.Join(errs...)
}

// newListener compiles one listener; cert is its certificate, nil
// without TLS.
func newListener(c *maincf.Config, name string) (l *smtpd.Listener, cert *certificate, err error) {
	l = &smtpd.Listener{
		Name:                   name,
		Hostname:               c.Get("myhostname"),
		Banner:                 c.Get("smtpd_banner"),
		Wrapper:                c.Bool("smtpd_tls_wrappermode"),
		SASL:                   c.Bool("smtpd_sasl_auth_enable"),
		TLSAuthOnly:            c.Bool("smtpd_tls_auth_only"),
		MaxMessageSize:         c.Int("message_size_limit"),
		MaxRecipients:          int(c.Int("smtpd_recipient_limit")),
		LineLimit:              int(c.Int("line_length_limit")),
		Timeout:                c.Duration("smtpd_timeout"),
		DisableVRFY:            c.Bool("disable_vrfy_command"),
		HELORequired:           c.Bool("smtpd_helo_required"),
		HardErrorLimit:         int(c.Int("smtpd_hard_error_limit")),
		SoftErrorLimit:         int(c.Int("smtpd_soft_error_limit")),
		ErrorSleep:             c.Duration("smtpd_error_sleep_time"),
		JunkCommandLimit:       int(c.Int("smtpd_junk_command_limit")),
		ForbidUnauthPipelining: c.Bool("smtpd_forbid_unauth_pipelining"),
		GreetPause:             c.Duration("smtpgate_greet_pause"),
		DisableSMTPUTF8:        !c.Bool("smtputf8_enable"),
		StrictSMTPUTF8:         c.Bool("strict_smtputf8"),
		ConnectionCountLimit:   int(c.Int("smtpd_client_connection_count_limit")),
		ConnectionRateLimit:    int(c.Int("smtpd_client_connection_rate_limit")),
		RateTimeUnit:           c.Duration("anvil_rate_time_unit"),
		MemoryMessageLimit:     c.Int("smtpgate_memory_message_limit"),
		SpoolDir:               c.Path("smtpgate_spool_directory"),
		SoftBounce:             c.Bool("soft_bounce"),
		// ETRN is advertised where Postfix's submission examples would
		// not want it: everywhere but on listeners with SASL on.
		ETRN: !c.Bool("smtpd_sasl_auth_enable"),
	}
	l.RecipientOvershootLimit = int(c.Int("smtpd_recipient_overshoot_limit"))
	xh, err := listener.ParseNetworks(c.List("smtpd_authorized_xclient_hosts"))
	if err != nil {
		return nil, nil, c.Errorf("smtpd_authorized_xclient_hosts", "%v", err)
	}
	l.XCLIENTHosts = xh
	ex, err := listener.ParseNetworks(c.List("smtpd_client_event_limit_exceptions"))
	if err != nil {
		return nil, nil, c.Errorf("smtpd_client_event_limit_exceptions", "%v (addresses and networks only; set it when mynetworks has host names or tables)", err)
	}
	l.EventLimitExceptions = ex
	l.NetworkCountLimit = int(c.Int("smtpgate_network_connection_count_limit"))
	l.IPv4Prefix, l.IPv6Prefix = int(c.Int("smtpgate_network_ipv4_prefix")), int(c.Int("smtpgate_network_ipv6_prefix"))
	l.ConnectionReserve = int(c.Int("smtpgate_connection_reserve"))
	// The settings that depend on ${stress}, read as they are under
	// stress, unless the listener forces stress with -o stress.
	if !c.StressForced() {
		normal, stressed := adaptive(c), adaptive(c.UnderStress())
		if stressed != normal {
			l.UnderStress = &stressed
		}
	}
	bx, err := listener.ParseNetworks(c.List("smtpd_forbid_bare_newline_exclusions"))
	if err != nil {
		return nil, nil, c.Errorf("smtpd_forbid_bare_newline_exclusions", "%v (addresses and networks only; set it when mynetworks has host names or tables)", err)
	}
	l.BareNewlineExclusions = bx
	switch strings.ToLower(c.Get("smtpd_forbid_bare_newline")) {
	case "reject":
		l.BareNewline = smtpd.BareNewlineReject
	case "no":
		l.BareNewline = smtpd.BareNewlineNo
	}
	l.BareNewlineCode = int(c.Int("smtpd_forbid_bare_newline_reject_code"))
	switch strings.ToLower(c.Get("smtpgate_listener_mode")) {
	case "submission":
		l.Submission = true
	case "":
		l.Submission = l.SASL
	}
	if file := c.Path("smtpd_tls_cert_file"); file != "" {
		cert, err = loadCertificate(file, c.Path("smtpd_tls_key_file"))
		if err != nil {
			return nil, nil, c.Errorf("smtpd_tls_cert_file", "%v", err)
		}
		l.TLS = &tls.Config{GetCertificate: cert.get, MinVersion: tls.VersionTLS12}
	}
	switch c.Get("smtpd_tls_security_level") {
	case "may":
		l.TLSLevel = smtpd.TLSMay
	case "encrypt":
		l.TLSLevel = smtpd.TLSEncrypt
	case "":
		if l.TLS != nil {
			l.TLSLevel = smtpd.TLSMay
		}
	}
	if (l.TLSLevel != smtpd.TLSNone || l.Wrapper) && l.TLS == nil {
		return nil, nil, c.Errorf("smtpd_tls_cert_file", "TLS is required on this listener but no certificate is configured")
	}
	target, err := handoff.Parse(c.Get("smtpgate_next_hop"), c.Resolve, handoff.Options{Hostname: l.Hostname, Timeout: c.Duration("smtpgate_next_hop_timeout"),
		IdleConnections: int(c.Int("smtpgate_next_hop_idle_connections")), IdleTimeout: c.Duration("smtpgate_next_hop_idle_timeout"),
		LineLengthLimit: int(c.Int("smtp_line_length_limit")), LMTPLineLengthLimit: int(c.Int("lmtp_line_length_limit"))})
	if err != nil {
		return nil, nil, c.Errorf("smtpgate_next_hop", "%v", err)
	}
	l.NextHop = target
	return l, cert, nil
}

// adaptive reads the settings that may depend on ${stress}
// (maincf.Def.Stress).
func adaptive(c *maincf.Config) smtpd.Adaptive {
	return smtpd.Adaptive{
		Timeout:          c.Duration("smtpd_timeout"),
		HardErrorLimit:   int(c.Int("smtpd_hard_error_limit")),
		SoftErrorLimit:   int(c.Int("smtpd_soft_error_limit")),
		ErrorSleep:       c.Duration("smtpd_error_sleep_time"),
		JunkCommandLimit: int(c.Int("smtpd_junk_command_limit")),
	}
}

// proxySettings is a listener's PROXY protocol configuration; nil when
// the protocol is off.
type proxySettings struct {
	trusted *listener.Networks
	timeout time.Duration
}

func proxyOf(c *maincf.Config) (*proxySettings, error) {
	if c.Get("smtpd_upstream_proxy_protocol") == "" {
		return nil, nil
	}
	trusted, err := listener.ParseNetworks(c.List("smtpgate_proxy_networks"))
	if err != nil {
		return nil, c.Errorf("smtpgate_proxy_networks", "%v", err)
	}
	return &proxySettings{trusted: trusted, timeout: c.Duration("smtpd_upstream_proxy_timeout")}, nil
}

// Server is the running edge.
type Server struct {
	cfg   Config
	log   *slog.Logger
	conns []*grpc.ClientConn
	// engine is the protocol engine with what lives as long as the
	// process (clients, metrics, connection limits, the drain); each
	// configuration gets a copy with its own settings (engineFor).
	engine *smtpd.Server
	drain  *smtpd.Drain
	// closeLimits stops the connection limits' Redis client.
	closeLimits func()

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

// generation is one configuration, compiled: what a reload replaces. A
// session keeps the listener settings and engine it was accepted with.
type generation struct {
	main     *maincf.Config
	bindings []*binding // one per master.cf service, in order
}

// binding is what a connection accepted on one listener gets.
type binding struct {
	l      *smtpd.Listener
	proxy  *proxySettings
	engine *smtpd.Server
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

// New builds the edge and its gRPC clients (which connect lazily and
// reconnect by themselves).
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, drain: &smtpd.Drain{}}
	traced := grpcclient.WithTracerProvider(cfg.TracerProvider)
	pc, err := grpcclient.DialService(cfg.Main, "smtpgate_policy_service", "smtpgate_policy_timeout", cfg.Logger, traced)
	if err != nil {
		return nil, fmt.Errorf("policy client: %w", err)
	}
	ac, err := grpcclient.DialService(cfg.Main, "smtpgate_auth_service", "smtpgate_auth_timeout", cfg.Logger, traced)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("auth client: %w", err)
	}
	s.conns = []*grpc.ClientConn{pc, ac}
	limits, closeLimits, err := connLimits(cfg)
	if err != nil {
		pc.Close()
		ac.Close()
		return nil, err
	}
	s.closeLimits = closeLimits
	s.engine = &smtpd.Server{Config: smtpd.Config{
		Policy:         policyClient{policyv1.NewPolicyServiceClient(pc)},
		Auth:           authClient{authv1.NewAuthServiceClient(ac)},
		Logger:         cfg.Logger,
		PolicyTimeout:  cfg.Main.Duration("smtpgate_policy_timeout"),
		PolicySkipTime: cfg.Main.Duration("smtpgate_policy_skip_time"),
		AuthTimeout:    cfg.Main.Duration("smtpgate_auth_timeout"),
		Limits:         limits,
		Memory:         memoryBudget(cfg.Main.Int("smtpgate_memory_budget")),
		Drain:          s.drain,
	}}
	if cfg.MailLog != nil {
		s.engine.MailLog = maillog.New(cfg.MailLog, cfg.Main.Get("myhostname"))
	}
	if cfg.Metrics != nil {
		s.engine.Metrics = smtpd.NewMetrics(cfg.Metrics)
		memoryMetrics(cfg.Metrics, s.engine.Memory)
	}
	// Spans only when they go somewhere: a no-op tracer would still cost
	// an allocation or two per command.
	if telemetry.Recording(cfg.TracerProvider) {
		s.engine.Tracer = cfg.TracerProvider.Tracer("github.com/smtpgate/smtpgate/services/edge")
	}
	g, err := s.compile(cfg.Main, cfg.Services)
	if err != nil {
		s.closeClients()
		return nil, err
	}
	s.current = g
	limits.SetReserves(g.reserves())
	return s, nil
}

// compile builds a configuration's listeners and engine.
func (s *Server) compile(main *maincf.Config, services []maincf.Service) (*generation, error) {
	ls, _, err := listeners(main, services)
	if err != nil {
		return nil, err
	}
	eng := s.engineFor(main)
	g := &generation{main: main}
	for i, svc := range services {
		p, err := proxyOf(main.WithOverrides(svc.Overrides))
		if err != nil {
			return nil, err
		}
		if p != nil && p.trusted.Empty() {
			s.log.Warn("smtpd_upstream_proxy_protocol is on but smtpgate_proxy_networks is empty: every connection to this listener will be dropped", "listener", svc.Name)
		}
		if r, ok := ls[i].NextHop.(*handoff.Relay); ok {
			// What Postfix's smtp(8) logs about a message.
			r.Opts.Logger = s.log
		}
		g.bindings = append(g.bindings, &binding{l: ls[i], proxy: p, engine: eng})
	}
	return g, nil
}

// engineFor is the engine with main's settings; what lives as long as
// the process is shared.
func (s *Server) engineFor(main *maincf.Config) *smtpd.Server {
	c := s.engine.Config
	c.PolicyTimeout = main.Duration("smtpgate_policy_timeout")
	c.PolicySkipTime = main.Duration("smtpgate_policy_skip_time")
	c.AuthTimeout = main.Duration("smtpgate_auth_timeout")
	return s.engine.Reconfigured(c)
}

// closeClients closes the gRPC clients and the connection limits' Redis
// client.
func (s *Server) closeClients() {
	for _, c := range s.conns {
		c.Close()
	}
	if s.closeLimits != nil {
		s.closeLimits()
	}
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

// policyClient adapts the generated client to the engine's seam.
type policyClient struct{ c policyv1.PolicyServiceClient }

func (p policyClient) Check(ctx context.Context, req *policyv1.CheckRequest) (*policyv1.CheckResponse, error) {
	return p.c.Check(ctx, req)
}

// authClient adapts the generated client to the engine's seam.
type authClient struct{ c authv1.AuthServiceClient }

func (a authClient) Mechanisms(ctx context.Context, req *authv1.MechanismsRequest) (*authv1.MechanismsResponse, error) {
	return a.c.Mechanisms(ctx, req)
}

func (a authClient) Authenticate(ctx context.Context) (smtpd.AuthStream, error) {
	return a.c.Authenticate(ctx)
}
