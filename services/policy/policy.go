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
package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

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
	"github.com/smtpgate/smtpgate/services/policy/internal/restriction"
	"github.com/smtpgate/smtpgate/services/policy/internal/table"
)

// Config is what the service is built from.
type Config struct {
	// Main is main.cf seen through Catalogue().
	Main *maincf.Config
	// Services are the master.cf listeners; a request names one by its
	// service column (e.g. "127.0.0.1:2587") to get its -o overrides.
	Services []maincf.Service
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

// Server implements policyv1.PolicyServiceServer.
type Server struct {
	policyv1.UnimplementedPolicyServiceServer
	cfg    Config
	log    *slog.Logger
	listen string
	// engines holds the compiled lists of every listener; "" is main.cf
	// alone.
	engines map[string]*restriction.Engine
	// permits are permitStages of each engine, computed once; responses
	// share them and nothing may change them.
	permits map[*restriction.Engine][]policyv1.Stage
	// authConn reaches smtpgate-auth for "auth:users" tables.
	authConn *grpc.ClientConn
	// dns is the resolver of the DNS restrictions; redis its shared
	// cache, nil without smtpgate_dns_redis.
	dns   *resolver.Resolver
	redis *redis.Client
	// shared holds check_rate_limit's and check_greylist's state.
	shared *shared
	// metrics are never nil (unregistered without Config.Metrics).
	metrics *metrics
	// steps holds *[]restriction.Step buffers for Check's trace, which
	// is only read before Check returns.
	steps sync.Pool
	// creds secure the gRPC listener (grpctls.Server); security says how.
	creds    credentials.TransportCredentials
	security grpctls.Mode
	// access says who may call which method (grpcserver.Access).
	access *grpcserver.Access
}

// Warnings returns what check says about a valid configuration: gRPC
// callers trusted with every method off loopback (no client
// certificates).
func Warnings(main *maincf.Config) []string {
	return grpcserver.Warnings(main, "smtpgate_policy_listen")
}

// Validate checks the configuration as smtpgate-policy reads it: unknown
// parameter names and bad values in main.cf and in the master.cf -o
// overrides, and the restriction lists of main.cf and of every listener.
// Every problem is reported, joined, each with its file:line.
func Validate(main *maincf.Config, services []maincf.Service) error {
	dns, rc, dnsErr := newResolver(main, nil)
	if rc != nil {
		defer rc.Close()
	}
	sh, err := openShared(main)
	if err != nil {
		return err
	}
	defer sh.Close()
	_, err = compileAll(main, services, nil, &authUsers{}, dns, dnsErr, sh)
	// The gRPC listener's and the auth client's TLS files, and plaintext
	// only on loopback.
	_, mode, serr := grpctls.Server(main, "smtpgate_policy_listen", nil)
	var aerr error
	if serr == nil {
		// Who may call which method (the client certificates' roles).
		_, aerr = grpcserver.NewAccess(main, "smtpgate_policy_listen", mode, nil)
	}
	_, _, cerr := grpctls.Client(main, "smtpgate_auth_service", nil)
	return errors.Join(err, serr, aerr, cerr)
}

// newResolver builds the resolver of the DNS restrictions from
// smtpgate_dns_servers, smtpgate_dns_timeout and smtpgate_dns_redis. It
// connects to nothing yet. Errors never quote the Redis URL: it may hold
// a password.
func newResolver(main *maincf.Config, log *slog.Logger) (*resolver.Resolver, *redis.Client, error) {
	cfg := resolver.Config{
		Servers: main.List("smtpgate_dns_servers"),
		Timeout: main.Duration("smtpgate_dns_timeout"),
		Logger:  log,
	}
	rc, err := openRedis(main, "smtpgate_dns_redis", time.Second)
	if err != nil {
		return nil, nil, err
	}
	if rc != nil {
		cfg.Redis = rc
	}
	r, err := resolver.New(cfg)
	if err != nil {
		if rc != nil {
			rc.Close()
		}
		return nil, nil, main.Errorf("smtpgate_dns_servers", "%v", err)
	}
	return r, rc, nil
}

// openRedis opens the Redis client of a URL parameter; nil when it is
// empty. The error never quotes the URL: it may hold a password.
func openRedis(main *maincf.Config, param string, timeout time.Duration) (*redis.Client, error) {
	u := main.Get(param)
	if u == "" {
		return nil, nil
	}
	c, err := redisclient.Open(u, timeout)
	if err != nil {
		return nil, main.Errorf(param, "not a valid redis:// or rediss:// URL (value not shown: it may hold a password)")
	}
	return c, nil
}

// shared is the state every listener's lists share: check_rate_limit's
// counts and check_greylist's triplets, in Redis when configured.
type shared struct {
	limits  ratelimit.Counter
	grey    greylist.Store
	clients []*redis.Client
	// failures counts the decisions taken without Redis.
	failures sharedFailures
}

// openShared builds the shared state from smtpgate_rate_limit_redis,
// smtpgate_greylist_redis and the smtpgate_greylist_* parameters.
func openShared(main *maincf.Config) (*shared, error) {
	gp, err := restriction.GreylistParams(main)
	if err != nil {
		return nil, err
	}
	sh := &shared{limits: ratelimit.NewMemory(100000, nil), grey: greylist.NewMemory(gp, 1000000)}
	rl, err := openRedis(main, "smtpgate_rate_limit_redis", 200*time.Millisecond)
	if err != nil {
		return nil, err
	}
	if rl != nil {
		sh.limits, sh.clients = countedLimits{ratelimit.NewRedis(rl), &sh.failures.rateLimit}, append(sh.clients, rl)
	}
	gr, err := openRedis(main, "smtpgate_greylist_redis", 200*time.Millisecond)
	if err != nil {
		sh.Close()
		return nil, err
	}
	if gr != nil {
		sh.grey, sh.clients = countedGreylist{greylist.NewRedis(gr, gp), &sh.failures.greylist}, append(sh.clients, gr)
	}
	return sh, nil
}

// Close closes the Redis clients.
func (sh *shared) Close() {
	for _, c := range sh.clients {
		c.Close()
	}
}

// compileAll compiles every listener's lists. dns is nil when it could
// not be built (dnsErr says why): that is only an error for a
// configuration that uses a DNS restriction.
func compileAll(main *maincf.Config, services []maincf.Service, log *slog.Logger, auth *authUsers,
	dns *resolver.Resolver, dnsErr error, sh *shared) (map[string]*restriction.Engine, error) {
	auth.timeout = main.Duration("smtpgate_auth_timeout")
	opts := restriction.Options{Logger: log, DNS: dns, RateLimits: sh.limits, Greylist: sh.grey, OpenTable: func(spec string) (table.Table, error) {
		if strings.HasPrefix(spec, "auth:") {
			return openAuthTable(spec, auth)
		}
		return table.Open(spec, table.Options{Dir: main.Dir(), Logger: log})
	}}
	errs := []error{main.Validate(maincf.Policy), maincf.ValidateServices(main, services, maincf.Policy)}
	engines := map[string]*restriction.Engine{}
	e, err := restriction.CompileWith(main, opts)
	if err != nil {
		errs = append(errs, err)
	}
	engines[""] = e
	for _, s := range services {
		if len(s.Overrides) == 0 {
			engines[s.Name] = engines[""]
			continue
		}
		e, err := restriction.CompileWith(main.WithOverrides(s.Overrides), opts)
		if err != nil && engines[""] != nil {
			// Only report what this listener's overrides add: errors of
			// main.cf alone were reported above.
			for _, e := range flatten(err) {
				errs = append(errs, fmt.Errorf("service %s: %w", s.Name, e))
			}
		}
		engines[s.Name] = e
	}
	if err := errors.Join(errs...); err != nil {
		if dnsErr != nil {
			err = errors.Join(dnsErr, err)
		}
		return nil, err
	}
	return engines, nil
}

// flatten returns the errors joined in err, or err alone.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// New compiles every listener's restriction lists; it fails on any
// configuration problem (see Validate).
func New(cfg Config) (*Server, error) {
	if cfg.Main == nil {
		return nil, errors.New("policy: no configuration")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The connection to smtpgate-auth is made on first use, by an
	// "auth:users" table.
	if cfg.Propagator == nil {
		cfg.Propagator = telemetry.Propagator()
	}
	creds, mode, err := grpctls.Server(cfg.Main, "smtpgate_policy_listen", log)
	if err != nil {
		return nil, err
	}
	access, err := grpcserver.NewAccess(cfg.Main, "smtpgate_policy_listen", mode, log)
	if err != nil {
		return nil, err
	}
	conn, err := grpcclient.DialService(cfg.Main, "smtpgate_auth_service", "smtpgate_auth_timeout", log,
		grpcclient.WithTracerProvider(cfg.TracerProvider), grpcclient.WithPropagator(cfg.Propagator))
	if err != nil {
		return nil, fmt.Errorf("smtpgate_auth_service: %w", err)
	}
	dns, rc, dnsErr := newResolver(cfg.Main, log)
	sh, err := openShared(cfg.Main)
	if err == nil {
		var engines map[string]*restriction.Engine
		auth := &authUsers{client: authv1.NewAuthServiceClient(conn),
			cache: newUserCache(cfg.Main.Duration("smtpgate_auth_users_cache_time"), userCacheSize, cfg.Now)}
		if engines, err = compileAll(cfg.Main, cfg.Services, log, auth, dns, dnsErr, sh); err == nil {
			s := newServer(cfg, log, conn, engines, dns, rc, dnsErr, sh)
			auth.counts.register(cfg.Metrics)
			s.creds, s.security, s.access = creds, mode, access
			return s, nil
		}
		sh.Close()
	}
	conn.Close()
	if rc != nil {
		rc.Close()
	}
	return nil, err
}

// newServer finishes New once everything compiled.
func newServer(cfg Config, log *slog.Logger, conn *grpc.ClientConn, engines map[string]*restriction.Engine,
	dns *resolver.Resolver, rc *redis.Client, dnsErr error, sh *shared) *Server {
	if dnsErr != nil {
		log.Warn("no resolver: DNS restrictions unavailable", "err", dnsErr)
	}
	if rc != nil && telemetry.Recording(cfg.TracerProvider) {
		// Keys are DNS names; commands are not recorded all the same.
		if err := redisotel.InstrumentTracing(rc, redisotel.WithTracerProvider(cfg.TracerProvider), redisotel.WithDBStatement(false)); err != nil {
			log.Warn("Redis calls not traced", "err", err)
		}
	}
	s := &Server{cfg: cfg, log: log, listen: cfg.Main.Get("smtpgate_policy_listen"), engines: engines, authConn: conn,
		dns: dns, redis: rc, shared: sh}
	s.permits = map[*restriction.Engine][]policyv1.Stage{}
	for _, e := range engines {
		s.permits[e] = permitStages(e)
	}
	s.metrics = newMetrics(cfg.Metrics, s.DNSStats)
	sh.failures.register(cfg.Metrics)
	return s
}

// Run logs the effective configuration, listens on smtpgate_policy_listen
// and serves until ctx is done, then stops gracefully.
func (s *Server) Run(ctx context.Context) error {
	s.logConfig(ctx)
	var lc net.ListenConfig
	lis, err := grpcserver.Listen(ctx, s.listen)
	if err != nil {
		return fmt.Errorf("smtpgate_policy_listen: %w", err)
	}
	addr := s.cfg.Main.Get("smtpgate_policy_delegation_listen")
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
	defer s.authConn.Close()
	if s.redis != nil {
		defer s.redis.Close()
	}
	defer s.shared.Close()
	g := grpcserver.New(grpcserver.WithTracerProvider(s.cfg.TracerProvider), grpcserver.WithPropagator(s.cfg.Propagator),
		grpcserver.WithMetrics(s.cfg.Metrics), grpcserver.WithCredentials(s.creds), grpcserver.WithAccess(s.access),
		grpcserver.WithAdmin(&grpcserver.Admin{Service: "policy", Owner: maincf.Policy, Main: s.cfg.Main, Services: s.cfg.Services}))
	policyv1.RegisterPolicyServiceServer(g.GRPC, s)
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
	for _, p := range s.cfg.Main.Effective(maincf.Policy) {
		attrs = append(attrs, slog.String(p.Name, p.Value))
	}
	s.log.InfoContext(ctx, "configuration", attrs...)
	cat := s.cfg.Main.Catalogue()
	for _, svc := range s.cfg.Services {
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

// Check implements PolicyService.Check.
func (s *Server) Check(ctx context.Context, req *policyv1.CheckRequest) (*policyv1.CheckResponse, error) {
	start := time.Now()
	f, e, err := s.prepare(req)
	if err != nil {
		return nil, err
	}
	buf, _ := s.steps.Get().(*[]restriction.Step)
	if buf == nil {
		buf = &[]restriction.Step{}
	}
	defer func() {
		// Drop the strings and lookups of this check, also those of a
		// failed one (whose steps are not returned).
		clear((*buf)[:cap(*buf)])
		*buf = (*buf)[:0]
		s.steps.Put(buf)
	}()
	v, steps, err := s.evaluate(ctx, e, f, *buf)
	*buf = steps
	if err != nil {
		s.metrics.failed(f.Stage)
		return nil, err
	}
	s.metrics.checked(f.Stage, v, time.Since(start))
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.String("smtpgate.stage", f.Stage.String()), attribute.String("smtpgate.action", v.Action.String()))
		if v.Action != restriction.ActionPermit {
			span.SetAttributes(attribute.String("smtpgate.restriction", v.Restriction), attribute.String("smtpgate.restriction.list", v.List),
				attribute.Int("smtpgate.reply.code", v.Reply.Code))
		}
	}
	s.logVerdict(ctx, req, f, v, steps)
	return &policyv1.CheckResponse{Verdict: verdict(v), PermitStages: s.permits[e]}, nil
}

// permitStages lists the stages e always permits (CheckResponse.permit_stages).
func permitStages(e *restriction.Engine) []policyv1.Stage {
	var out []policyv1.Stage
	for _, st := range []policyv1.Stage{policyv1.Stage_STAGE_CONNECT, policyv1.Stage_STAGE_HELO, policyv1.Stage_STAGE_MAIL,
		policyv1.Stage_STAGE_DATA, policyv1.Stage_STAGE_END_OF_DATA} {
		if e.AlwaysPermits(stageOf(st)) {
			out = append(out, st)
		}
	}
	return out
}

// Explain implements PolicyService.Explain: Check with the trace of every
// restriction evaluated.
func (s *Server) Explain(ctx context.Context, req *policyv1.ExplainRequest) (*policyv1.ExplainResponse, error) {
	f, e, err := s.prepare(req.GetCheck())
	if err != nil {
		return nil, err
	}
	lists, err := e.Lists(f)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	v, steps, err := s.evaluate(ctx, e, f, []restriction.Step{})
	if err != nil {
		return nil, err
	}
	out := &policyv1.ExplainResponse{Verdict: verdict(v)}
	for _, l := range lists {
		out.Lists = append(out.Lists, string(l))
	}
	for _, st := range steps {
		out.Steps = append(out.Steps, step(st))
	}
	return out, nil
}

// prepare checks a request and picks the listener's engine.
func (s *Server) prepare(req *policyv1.CheckRequest) (*restriction.Facts, *restriction.Engine, error) {
	f, err := facts(req)
	if err != nil {
		return nil, nil, status.Error(codes.InvalidArgument, err.Error())
	}
	listener := req.GetSession().GetListener()
	e, ok := s.engines[listener]
	if !ok {
		return nil, nil, status.Errorf(codes.InvalidArgument, "unknown listener %q: no such service in master.cf", listener)
	}
	return f, e, nil
}

// evaluate runs the engine, traced, so that the log says how a refusal
// was reached; the steps are appended to buf.
func (s *Server) evaluate(ctx context.Context, e *restriction.Engine, f *restriction.Facts, buf []restriction.Step) (restriction.Verdict, []restriction.Step, error) {
	// Always traced, once: a refusal is logged with its trace, and
	// evaluating a second time for the log would repeat what restrictions
	// do (count a rate limit, ask a policy server, greylist).
	v, steps, err := e.ExplainAppend(ctx, f, buf)
	if err != nil {
		s.log.ErrorContext(ctx, "check failed", "session", f.SessionID, "stage", f.Stage.String(), "err", err)
		return v, steps[:0], status.Error(codes.Unavailable, "restriction evaluation failed")
	}
	return v, steps, nil
}

// logVerdict logs refusals with their trace, and warnings, in the words
// Postfix uses (reject, reject_warning, warn, discard).
func (s *Server) logVerdict(ctx context.Context, req *policyv1.CheckRequest, f *restriction.Facts, v restriction.Verdict, steps []restriction.Step) {
	listener := req.GetSession().GetListener()
	for _, w := range v.Warnings {
		s.log.WarnContext(ctx, w, "session", f.SessionID, "listener", listener, "stage", f.Stage.String(), "client", f.NameAddr(),
			"from", f.Sender, "to", f.Recipient, "helo", f.HELO)
	}
	if v.Action == restriction.ActionPermit {
		return
	}
	var trace []string
	for _, st := range steps {
		trace = append(trace, traceLine(st))
	}
	s.log.InfoContext(ctx, "refused", "session", f.SessionID, "listener", listener, "stage", f.Stage.String(),
		"client", f.NameAddr(), "from", f.Sender, "to", f.Recipient, "helo", f.HELO,
		"action", v.Action.String(), "restriction", v.Restriction, "list", v.List, "reply", v.Reply.String(), "trace", trace)
}

// traceLine writes one step for the log: "smtpd_recipient_restrictions:
// check_sender_access hash:/x [a@b.c=REJECT] -> REFUSE 554 5.7.1 ...".
func traceLine(st restriction.Step) string {
	var b strings.Builder
	b.WriteString(strings.Repeat("  ", st.Depth))
	b.WriteString(st.List + ": " + st.Restriction)
	for _, l := range st.Lookups {
		if l.Found {
			fmt.Fprintf(&b, " [%s=%s]", l.Key, l.Value)
		} else {
			fmt.Fprintf(&b, " [%s?]", l.Key)
		}
	}
	b.WriteString(" -> " + st.Result.String())
	if st.Warned {
		b.WriteString(" (warned)")
	}
	if st.Reply.Code != 0 {
		b.WriteString(" " + st.Reply.String())
	}
	return b.String()
}

func step(st restriction.Step) *policyv1.Step {
	out := &policyv1.Step{List: st.List, Restriction: st.Restriction, Result: st.Result.String(), Depth: uint32(st.Depth), Warned: st.Warned}
	if st.Reply.Code != 0 {
		out.Reply = st.Reply.String()
	}
	for _, l := range st.Lookups {
		out.Lookups = append(out.Lookups, &policyv1.Lookup{Table: l.Table, Key: l.Key, Found: l.Found, Value: l.Value, Position: l.Pos})
	}
	return out
}

// facts checks a request and turns it into restriction facts.
func facts(req *policyv1.CheckRequest) (*restriction.Facts, error) {
	stage := stageOf(req.GetStage())
	if stage == restriction.StageUnspecified {
		return nil, fmt.Errorf("stage %v is not a check stage", req.GetStage())
	}
	sess := req.GetSession()
	if sess == nil {
		return nil, errors.New("session is missing")
	}
	f := &restriction.Facts{
		Stage:             stage,
		SessionID:         sess.GetId(),
		ClientName:        sess.GetClientName(),
		ReverseClientName: sess.GetReverseClientName(),
		HELO:              sess.GetHeloName(),
		SASLUsername:      sess.GetSasl().GetUsername(),
		SASLMethod:        sess.GetSasl().GetMethod(),
		UnauthPipelining:  sess.GetUnauthPipelining(),
		Stress:            sess.GetStress(),
		ETRNDomain:        req.GetEtrnDomain(),
	}
	if d := req.GetDeferIfPermit(); d != nil {
		if d.GetCode() < 400 || d.GetCode() > 499 {
			return nil, fmt.Errorf("defer_if_permit: code %d is not a 4xx code", d.GetCode())
		}
		f.DeferIfPermit = &restriction.Reply{Code: int(d.GetCode()), DSN: d.GetEnhancedCode(), Text: d.GetText()}
	}
	switch a := sess.GetClientAddress(); a {
	case "", "unknown":
		// Unknown (e.g. XCLIENT ADDR=[UNAVAILABLE]): matches no network.
	default:
		addr, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("session.client_address %q: %w", a, err)
		}
		f.ClientAddr = addr
	}
	if tx := req.GetTransaction(); tx != nil {
		f.InTransaction = true
		f.Sender = tx.GetSender()
		f.Recipient = tx.GetRecipient()
		f.RecipientCount = int(tx.GetRecipientCount())
		f.Size = int64(tx.GetSize())
	}
	switch stage {
	case restriction.HELO:
		if f.HELO == "" {
			return nil, errors.New("stage HELO needs session.helo_name")
		}
	case restriction.Mail, restriction.Data, restriction.EndOfData:
		if !f.InTransaction {
			return nil, fmt.Errorf("stage %s needs a transaction", stage)
		}
	case restriction.Rcpt:
		if !f.InTransaction || f.Recipient == "" {
			return nil, errors.New("stage RCPT needs a transaction with a recipient")
		}
	case restriction.VRFY:
		if f.Recipient == "" {
			return nil, errors.New("stage VRFY needs transaction.recipient")
		}
	case restriction.ETRN:
		if strings.TrimSpace(f.ETRNDomain) == "" {
			return nil, errors.New("stage ETRN needs etrn_domain")
		}
	}
	return f, nil
}

// stageOf maps the API's stage to the engine's; unknown values are
// StageUnspecified.
func stageOf(s policyv1.Stage) restriction.Stage {
	switch s {
	case policyv1.Stage_STAGE_CONNECT:
		return restriction.Connect
	case policyv1.Stage_STAGE_HELO:
		return restriction.HELO
	case policyv1.Stage_STAGE_MAIL:
		return restriction.Mail
	case policyv1.Stage_STAGE_RCPT:
		return restriction.Rcpt
	case policyv1.Stage_STAGE_DATA:
		return restriction.Data
	case policyv1.Stage_STAGE_END_OF_DATA:
		return restriction.EndOfData
	case policyv1.Stage_STAGE_ETRN:
		return restriction.ETRN
	case policyv1.Stage_STAGE_VRFY:
		return restriction.VRFY
	}
	return restriction.StageUnspecified
}

func verdict(v restriction.Verdict) *policyv1.Verdict {
	out := &policyv1.Verdict{Restriction: v.Restriction, List: v.List, Disconnect: v.Disconnect, Warnings: v.Warnings}
	for _, h := range v.Prepend {
		name, value, _ := strings.Cut(h, ":")
		out.Prepend = append(out.Prepend, &policyv1.Header{Name: name, Value: strings.TrimLeft(value, " \t")})
	}
	if d := v.DeferIfPermit; d != nil {
		out.DeferIfPermit = &policyv1.DeferredReply{Code: uint32(d.Code), EnhancedCode: d.DSN, Text: d.Text}
	}
	switch v.Action {
	case restriction.ActionPermit:
		out.Action = policyv1.Action_ACTION_PERMIT
		return out
	case restriction.ActionDiscard:
		out.Action = policyv1.Action_ACTION_DISCARD
		return out
	case restriction.ActionReject:
		out.Action = policyv1.Action_ACTION_REJECT
	case restriction.ActionDefer:
		out.Action = policyv1.Action_ACTION_DEFER
	}
	out.Code = uint32(v.Reply.Code)
	out.EnhancedCode = v.Reply.DSN
	out.Text = v.Reply.Text
	return out
}
