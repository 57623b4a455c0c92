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
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/xdg-go/scram"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/smtpgate/smtpgate/pkg/grpcserver"
	"github.com/smtpgate/smtpgate/pkg/grpctls"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	"github.com/smtpgate/smtpgate/services/auth/internal/dovecotauth"
	"github.com/smtpgate/smtpgate/services/auth/internal/passwdfile"
	"github.com/smtpgate/smtpgate/services/auth/internal/sasl"
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

// listener is one listener's compiled SASL settings.
type listener struct {
	mechanisms []sasl.Mechanism // in configured order
	plain      sasl.SecurityOptions
	tls        sasl.SecurityOptions
}

// Server implements authv1.AuthServiceServer.
type Server struct {
	authv1.UnimplementedAuthServiceServer
	set       Settings
	cfg       Config
	log       *slog.Logger
	users     *passwdfile.File
	listeners map[string]listener
	// dummy is verified for unknown users, so that they cost as much time
	// as a wrong password.
	dummy scheme.Stored
	// secret keys the salts SCRAM uses for {PLAIN} users and the fake
	// credentials it shows for users it cannot serve.
	secret []byte
	// limiter throttles failed authentications.
	limiter   *throttle.Limiter
	closeOnce sync.Once
	metrics   *metrics
	// sleep holds back the answer to a failure; tests replace it.
	sleep func(context.Context, time.Duration) error
	// creds secure the gRPC listener (grpctls.Server); security says how.
	creds    credentials.TransportCredentials
	security grpctls.Mode
	// access says who may call which method (grpcserver.Access).
	access *grpcserver.Access
}

// New builds the server from the settings Load returned.
func New(set Settings, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{set: set, cfg: cfg, log: cfg.Logger, listeners: set.listeners, users: set.users, sleep: sleep}
	var err error
	if s.creds, s.security, err = grpctls.Server(set.main, "smtpgate_auth_listen", cfg.Logger); err != nil {
		return nil, err
	}
	if s.access, err = newAccess(set, s.security, cfg.Logger); err != nil {
		return nil, err
	}
	if cfg.Propagator == nil {
		s.cfg.Propagator = telemetry.Propagator()
	}
	opts := set.throttle
	opts.Logger = s.log
	if telemetry.Recording(cfg.TracerProvider) {
		opts.TracerProvider = cfg.TracerProvider
	}
	if s.limiter, err = throttle.New(opts); err != nil {
		return nil, err
	}
	s.metrics = newMetrics(cfg.Metrics, s.limiter.RedisErrors)
	s.log.Info("authentication throttling", "shared", s.limiter.Shared(), "window", opts.Window, "lockout", opts.Lockout,
		"max_per_client", opts.MaxPerClient, "max_per_network", opts.MaxPerNetwork, "max_per_user", opts.MaxPerUser)
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	s.secret = make([]byte, 32)
	_, _ = rand.Read(s.secret)
	if s.dummy, err = scheme.Hash(scheme.SHA512Crypt, pw); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases what New opened (the Redis connections); Run calls it
// when it returns.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() { err = s.limiter.Close() })
	return err
}

// Run serves gRPC on smtpgate_auth_listen, and the Dovecot auth protocol
// on smtpgate_dovecot_auth_listen, until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	defer s.Close()
	lis, err := grpcserver.Listen(ctx, s.set.listen)
	if err != nil {
		return fmt.Errorf("smtpgate_auth_listen: %w", err)
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
	l := s.listeners[""]
	srv := &dovecotauth.Server{
		Mechanisms: l.offered,
		Backend:    s,
		Start:      s.start,
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
	authv1.RegisterAuthServiceServer(srv.GRPC, s)
	s.log.InfoContext(ctx, "listening", "addr", lis.Addr().String(), "security", string(s.security))
	if w := s.access.Warning(); w != "" {
		s.log.WarnContext(ctx, "gRPC callers are not authenticated", "detail", w)
	}
	return srv.Serve(ctx, lis)
}

// lookup finds user in the passwd-file; a failed reload is logged and the
// previous users are served.
func (s *Server) lookup(ctx context.Context, user string) (scheme.Stored, bool) {
	if s.users == nil {
		return scheme.Stored{}, false
	}
	st, ok, reloadErr := s.users.Lookup(user)
	if reloadErr != nil {
		s.log.WarnContext(ctx, "passwd-file reload failed; serving the previous users", "err", reloadErr)
	}
	return st, ok
}

// LookupUser implements AuthService.LookupUser: whether a user exists.
// The name is tried as given, then with its domain lower-cased, then all
// lower-case (Dovecot's default auth_username_format is %Lu).
func (s *Server) LookupUser(ctx context.Context, req *authv1.LookupUserRequest) (*authv1.LookupUserResponse, error) {
	name := req.GetUsername()
	if name == "" || len(name) > 1024 || strings.ContainsAny(name, "\x00\r\n") {
		return nil, status.Error(codes.InvalidArgument, "username: want a user name of at most 1024 octets without NUL, CR or LF")
	}
	candidates := []string{name}
	if i := strings.LastIndexByte(name, '@'); i >= 0 {
		candidates = append(candidates, name[:i+1]+strings.ToLower(name[i+1:]))
	}
	candidates = append(candidates, strings.ToLower(name))
	for _, c := range candidates {
		if _, ok := s.lookup(ctx, c); ok {
			return &authv1.LookupUserResponse{Exists: true, Username: c}, nil
		}
	}
	return &authv1.LookupUserResponse{}, nil
}

// Verify implements sasl.Verifier against the passwd-file. Unknown users
// are checked against a dummy hash so that they take as long as a wrong
// password.
func (s *Server) Verify(ctx context.Context, user string, password []byte) (bool, error) {
	st, ok := s.lookup(ctx, user)
	if !ok {
		s.dummy.Verify(password)
		return false, nil
	}
	return st.Verify(password), nil
}

// CRAMMD5 implements sasl.Secrets: the HMAC for users stored as {PLAIN}
// or {CRAM-MD5}. Other users, and unknown ones, cost the same work and fail.
func (s *Server) CRAMMD5(ctx context.Context, user string, challenge []byte) ([]byte, bool, error) {
	st, ok := s.lookup(ctx, user)
	digest, can := st.CRAMMD5Digest(challenge)
	if !ok || !can {
		scheme.Stored{Scheme: scheme.Plain}.CRAMMD5Digest(challenge)
		return nil, false, nil
	}
	return digest, true, nil
}

// SCRAMSHA256 implements sasl.SCRAMSecrets: the stored credentials of a
// {SCRAM-SHA-256} user, credentials derived for a {PLAIN} user, and for
// anyone else fake credentials of the same shape, so the exchange fails at
// the proof exactly like a wrong password.
func (s *Server) SCRAM(ctx context.Context, hash, user string) (scram.StoredCredentials, bool, error) {
	keyed := func(label string, n int) []byte {
		m := hmac.New(sha256.New, s.secret)
		m.Write([]byte(hash + "\x00" + label + "\x00" + user))
		return m.Sum(nil)[:n]
	}
	size := sha256.Size
	if hash == "SHA-1" {
		size = 20
	}
	salt := keyed("salt", 16)
	if st, ok := s.lookup(ctx, user); ok {
		creds := st.SCRAMCredentials
		if hash == "SHA-1" {
			creds = st.SCRAMSHA1Credentials
		}
		if salt, iters, stored, server, can := creds(salt); can {
			return scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: iters}, StoredKey: stored, ServerKey: server}, true, nil
		}
	}
	return scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: 4096}, StoredKey: keyed("stored", size), ServerKey: keyed("server", size)}, false, nil
}

func (s *Server) listener(sess *authv1.Session) (listener, error) {
	if sess == nil {
		return listener{}, status.Error(codes.InvalidArgument, "session is required")
	}
	l, ok := s.listeners[sess.GetListener()]
	if !ok {
		return listener{}, status.Errorf(codes.InvalidArgument, "unknown listener %q", sess.GetListener())
	}
	return l, nil
}

// offered returns the mechanisms l offers in the session's TLS state.
func (l listener) offered(tls bool) []sasl.Mechanism {
	return l.offeredWith(tls, false)
}

// offeredWith is offered, with the -PLUS mechanisms when the connection
// has a channel binding.
func (l listener) offeredWith(tls, binding bool) []sasl.Mechanism {
	opts := l.plain
	if tls {
		opts = l.tls
	}
	var out []sasl.Mechanism
	for _, m := range l.mechanisms {
		if opts.Allows(m) && (!m.Plus || binding) {
			out = append(out, m)
		}
	}
	return out
}

// Mechanisms implements authv1.AuthServiceServer.
func (s *Server) Mechanisms(_ context.Context, req *authv1.MechanismsRequest) (*authv1.MechanismsResponse, error) {
	l, err := s.listener(req.GetSession())
	if err != nil {
		return nil, err
	}
	resp := &authv1.MechanismsResponse{}
	_, binding := channelBinding(req.GetSession())
	for _, m := range l.offeredWith(req.GetSession().GetTls(), binding) {
		resp.Mechanisms = append(resp.Mechanisms, m.Name)
	}
	return resp, nil
}

// channelBinding returns the session's channel binding: only RFC 9266
// tls-exporter is taken (tls-unique is unsafe with TLS 1.3 resumption and
// the edge does not send it).
func channelBinding(sess *authv1.Session) (scram.ChannelBinding, bool) {
	if sess.GetChannelBindingType() != string(scram.ChannelBindingTLSExporter) || len(sess.GetChannelBinding()) == 0 || !sess.GetTls() {
		return scram.ChannelBinding{}, false
	}
	return scram.ChannelBinding{Type: scram.ChannelBindingTLSExporter, Data: sess.GetChannelBinding()}, true
}

// Authenticate implements authv1.AuthServiceServer: one SASL exchange per
// stream.
func (s *Server) Authenticate(stream grpc.BidiStreamingServer[authv1.AuthenticateRequest, authv1.AuthenticateResponse]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "the first message must be start")
	}
	l, err := s.listener(start.GetSession())
	if err != nil {
		return err
	}
	sess := start.GetSession()
	mech := strings.ToUpper(start.GetMechanism())
	logAttrs := []any{"session", sess.GetId(), "client", sess.GetClientAddress(), "mechanism", mech}

	var ex *attempt
	end := func(r authv1.Result, user string) error {
		if ex != nil {
			// Before the answer: the caller's next attempt finds the
			// place given back.
			ex.End(ctx)
		}
		s.metrics.authenticated(mech, r)
		lv := slog.LevelInfo
		s.log.Log(ctx, lv, "authentication", append(logAttrs, "username", user, "result", strings.TrimPrefix(r.String(), "RESULT_"))...)
		return stream.Send(&authv1.AuthenticateResponse{Step: &authv1.AuthenticateResponse_Outcome{Outcome: &authv1.Outcome{Result: r, Username: map[bool]string{true: user}[r == authv1.Result_RESULT_SUCCESS]}}})
	}

	cb, binding := channelBinding(sess)
	var m sasl.Mechanism
	found := false
	for _, o := range l.offeredWith(sess.GetTls(), binding) {
		if o.Name == mech {
			m, found = o, true
		}
	}
	if !found {
		if !sess.GetTls() {
			for _, o := range l.offered(true) {
				if o.Name == mech {
					return end(authv1.Result_RESULT_ENCRYPTION_REQUIRED, "")
				}
			}
		}
		return end(authv1.Result_RESULT_UNSUPPORTED_MECHANISM, "")
	}

	ex = s.startWith(m, sess.GetClientAddress(), cb)
	defer ex.End(ctx)
	var resp []byte
	if start.GetHasInitialResponse() {
		resp = start.GetInitialResponse()
		if resp == nil {
			resp = []byte{}
		}
	}
	for {
		challenge, done, err := ex.Next(ctx, resp)
		if done {
			switch {
			case err == nil:
				return end(authv1.Result_RESULT_SUCCESS, ex.Username())
			case errors.Is(err, sasl.ErrMalformed):
				return end(authv1.Result_RESULT_MALFORMED, ex.Username())
			case errors.Is(err, sasl.ErrFailed):
				return end(authv1.Result_RESULT_FAILURE, ex.Username())
			case errors.Is(err, throttle.ErrLocked):
				// Logged once by the limiter when the lockout began.
				s.log.DebugContext(ctx, "authentication refused", append(logAttrs, "err", err)...)
				s.metrics.lockedOut.Inc()
				return end(authv1.Result_RESULT_TEMPORARY_FAILURE, ex.Username())
			default:
				s.log.WarnContext(ctx, "authentication could not be checked", append(logAttrs, "err", err)...)
				return end(authv1.Result_RESULT_TEMPORARY_FAILURE, ex.Username())
			}
		}
		if err := stream.Send(&authv1.AuthenticateResponse{Step: &authv1.AuthenticateResponse_Challenge{Challenge: &authv1.Challenge{Data: challenge}}}); err != nil {
			return err
		}
		next, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return status.Error(codes.Canceled, "the edge ended the exchange")
		}
		if err != nil {
			return err
		}
		switch step := next.GetStep().(type) {
		case *authv1.AuthenticateRequest_Cancel:
			return end(authv1.Result_RESULT_CANCELLED, ex.Username())
		case *authv1.AuthenticateRequest_Response:
			resp = step.Response
			if resp == nil {
				resp = []byte{}
			}
		default:
			return status.Error(codes.InvalidArgument, "expected a response or cancel")
		}
	}
}
