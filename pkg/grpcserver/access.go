package grpcserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/smtpgate/smtpgate/pkg/grpctls"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	adminv1 "github.com/smtpgate/smtpgate/proto/smtpgate/admin/v1"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

// Role is a set of the kinds of caller a gRPC method answers.
type Role uint8

// The roles. A caller's roles come from its client certificate (mutual
// TLS) and the smtpgate_grpc_*_identities parameters.
const (
	// RoleEdge is smtpgate-edge: policy checks of its SMTP sessions,
	// AUTH exchanges (the only caller whose client address, TLS state and
	// listener smtpgate-auth believes), user lookups.
	RoleEdge Role = 1 << iota
	// RolePolicy is smtpgate-policy: user lookups (auth:users).
	RolePolicy
	// RoleOperator is a person or a tool: reflection, AdminService
	// (the effective configuration), Explain and Check.
	RoleOperator

	// Anyone is every caller, with or without a role: health checks
	// (probes, and the clients' own health Watch).
	Anyone Role = 0xff
	// everyRole is what a caller gets when the listener does not ask for
	// client certificates (see Access).
	everyRole = RoleEdge | RolePolicy | RoleOperator
)

// The parameters naming, for each role, the client certificate identities
// that have it (see identities).
const (
	EdgeIdentities     = "smtpgate_grpc_edge_identities"
	PolicyIdentities   = "smtpgate_grpc_policy_identities"
	OperatorIdentities = "smtpgate_grpc_operator_identities"
	// LookupRateLimit is smtpgate-auth's limit of LookupUser calls per
	// second and caller.
	LookupRateLimit = "smtpgate_auth_lookup_rate_limit"
)

// methodRoles is who may call what: every method of every service a
// smtpgate gRPC server registers. A method missing here is refused to
// everyone (TestEveryMethodHasRoles keeps the table complete).
var methodRoles = map[string]Role{
	healthpb.Health_Check_FullMethodName: Anyone,
	healthpb.Health_Watch_FullMethodName: Anyone,
	healthpb.Health_List_FullMethodName:  Anyone,
	// Reflection (v1 and v1alpha) describes every service: operators.
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      RoleOperator,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": RoleOperator,
	// Version and the whole effective configuration.
	adminv1.AdminService_Status_FullMethodName: RoleOperator,
	// Check: the edge asks at every stage; operators try facts
	// (it counts rate limits and greylists as the edge's calls do).
	policyv1.PolicyService_Check_FullMethodName: RoleEdge | RoleOperator,
	// Explain shows mynetworks, tables and every restriction: operators.
	policyv1.PolicyService_Explain_FullMethodName: RoleOperator,
	// Mechanisms: what a listener offers, nothing about users.
	authv1.AuthService_Mechanisms_FullMethodName: RoleEdge | RoleOperator,
	// Authenticate believes the caller's client address, TLS state and
	// listener (throttling, noplaintext): the edge only.
	authv1.AuthService_Authenticate_FullMethodName: RoleEdge,
	// LookupUser says whether a user exists: the edge and policy
	// (auth:users), rate limited per caller.
	authv1.AuthService_LookupUser_FullMethodName: RoleEdge | RolePolicy,
}

// MethodRoles returns the roles that may call fullMethod
// ("/package.Service/Method"); 0 for a method nobody may call.
func MethodRoles(fullMethod string) Role { return methodRoles[fullMethod] }

// Access authorises each call of a server by its caller's identity.
//
// With mutual TLS (smtpgate_grpc_tls_client_ca_file), a caller is known by
// its verified client certificate: its names are the certificate's URI
// SANs, DNS SANs and subject common name, and it has each role one of its
// names is listed for (smtpgate_grpc_edge_identities,
// smtpgate_grpc_policy_identities, smtpgate_grpc_operator_identities). A
// call of a method its roles do not allow is refused with PermissionDenied
// before the service sees it, whatever the method and its arguments; the
// refusal says nothing else and is logged with the caller's names.
//
// Without client certificates (plaintext, which grpctls allows only on
// loopback and unix sockets unless smtpgate_grpc_allow_plaintext = yes, or
// TLS without smtpgate_grpc_tls_client_ca_file) callers cannot be told
// apart, and every caller has every role: whoever can connect is trusted.
// That is for one machine; Warning says so when the listener is not
// local.
//
// Rate limits (WithRateLimit) count calls per caller: with mutual TLS its
// identity (the first of its names listed for a role: every certificate
// with that name shares the count), else its IP address.
type Access struct {
	mtls    bool
	roles   map[string]Role // identity → roles
	limits  map[string]*limiter
	log     *slog.Logger
	refusal *refusalLog
	warning string
	// refused counts a refusal (nil: not counted); set by New.
	refused func(method string, code codes.Code)
}

// NewAccess returns the authorisation of the gRPC listener in main.cf's
// listenParam, secured as mode (grpctls.ServerSecurity's). Identities set without
// mutual TLS are an error naming the parameter. log (nil: none) gets the
// refusals.
func NewAccess(c *maincf.Config, listenParam string, mode grpctls.Mode, log *slog.Logger) (*Access, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Access{mtls: mode == grpctls.MutualTLS, roles: map[string]Role{}, limits: map[string]*limiter{}, log: log,
		refusal: &refusalLog{last: map[string]refusalEntry{}}}
	for param, r := range map[string]Role{EdgeIdentities: RoleEdge, PolicyIdentities: RolePolicy, OperatorIdentities: RoleOperator} {
		if !a.mtls && c.IsSet(param) {
			return nil, c.Errorf(param, "identities are client certificate names: they need mutual TLS (set %s)", grpctls.ClientCAFile)
		}
		for _, id := range c.List(param) {
			a.roles[id] |= r
		}
	}
	if !a.mtls && c.Get(listenParam) != "" && !grpctls.LocalListen(c.Get(listenParam)) {
		a.warning = fmt.Sprintf("%s %s: no client certificates (%s), so every caller that can connect may call every method, Authenticate with any client address included", listenParam, c.Get(listenParam), grpctls.ClientCAFile)
	}
	return a, nil
}

// Warning is what the operator should hear about a's setting ("" for
// nothing): callers trusted off loopback.
func (a *Access) Warning() string { return a.warning }

// Warnings is Warning as the lines check prints: none for nothing, and
// none for a nil Access (a configuration that did not load).
func (a *Access) Warnings() []string {
	if a == nil || a.warning == "" {
		return nil
	}
	return []string{a.warning}
}

// WithLogger returns a copy of a, made before any call, whose refusals go
// to log: a service's settings build the Access once, without a logger,
// and the service gives it its own when it starts.
func (a *Access) WithLogger(log *slog.Logger) *Access {
	if log == nil {
		return a
	}
	c := *a
	c.log = log
	return &c
}

// WithRateLimit limits fullMethod to perSecond calls per second and caller
// (bursts of up to a second's worth); beyond it the call is refused with
// ResourceExhausted. perSecond <= 0: no limit.
func (a *Access) WithRateLimit(fullMethod string, perSecond int) *Access {
	if perSecond > 0 {
		a.limits[fullMethod] = newLimiter(float64(perSecond), float64(perSecond), time.Now)
	}
	return a
}

// WithAccess authorises every call with a (see Access).
func WithAccess(a *Access) Option {
	return func(o *options) { o.access = a }
}

// Caller is who made a call.
type Caller struct {
	// Names are the verified client certificate's URI SANs, DNS SANs and
	// common name (nil without mutual TLS).
	Names []string
	// Identity is the first of Names listed in a role's parameter, else
	// the first of Names.
	Identity string
	// Addr is the peer's IP address (or the unix socket's name).
	Addr  string
	Roles Role
}

// String names the caller for logs and rate limits: its identity, or its
// address without mutual TLS.
func (c Caller) String() string {
	if c.Identity != "" {
		return c.Identity
	}
	return c.Addr
}

// callerOf returns who made the call in ctx.
func (a *Access) callerOf(ctx context.Context) Caller {
	var c Caller
	p, ok := peer.FromContext(ctx)
	if !ok {
		return c
	}
	if p.Addr != nil {
		c.Addr = p.Addr.String()
		if h, _, err := net.SplitHostPort(c.Addr); err == nil {
			c.Addr = h
		}
	}
	if !a.mtls {
		c.Roles = everyRole
		return c
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return c
	}
	cert := ti.State.VerifiedChains[0][0]
	for _, u := range cert.URIs {
		c.Names = append(c.Names, u.String())
	}
	c.Names = append(c.Names, cert.DNSNames...)
	if cert.Subject.CommonName != "" && !slices.Contains(c.Names, cert.Subject.CommonName) {
		c.Names = append(c.Names, cert.Subject.CommonName)
	}
	for _, n := range c.Names {
		r := a.roles[n]
		if r != 0 && c.Roles == 0 {
			c.Identity = n
		}
		c.Roles |= r
	}
	if c.Identity == "" && len(c.Names) > 0 {
		c.Identity = c.Names[0]
	}
	return c
}

// authorize returns nil when the caller in ctx may call method now, else
// the status error to answer.
func (a *Access) authorize(ctx context.Context, method string) error {
	want := methodRoles[method]
	if want == Anyone {
		return nil
	}
	c := a.callerOf(ctx)
	if want&c.Roles == 0 {
		a.refuse(ctx, c, method, codes.PermissionDenied)
		return status.Error(codes.PermissionDenied, "permission denied")
	}
	if l := a.limits[method]; l != nil && !l.allow(c.String()) {
		a.refuse(ctx, c, method, codes.ResourceExhausted)
		return status.Error(codes.ResourceExhausted, "too many calls")
	}
	return nil
}

func (a *Access) refuse(ctx context.Context, c Caller, method string, code codes.Code) {
	if a.refused != nil {
		a.refused(method, code)
	}
	if n, ok := a.refusal.due(c.String()+" "+method+" "+code.String(), time.Now()); ok {
		attrs := []any{"method", method, "caller", c.String(), "names", c.Names, "addr", c.Addr, "code", code.String()}
		if n > 0 {
			attrs = append(attrs, "also_refused_since_last_log", n)
		}
		a.log.WarnContext(ctx, "gRPC call refused", attrs...)
	}
}

func (a *Access) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	if err := a.authorize(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return next(ctx, req)
}

func (a *Access) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) error {
	if err := a.authorize(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return next(srv, ss)
}

// refusalLog logs a refusal of one caller, method and code at most once a
// minute, with the count of the ones not logged since, so that a caller
// hammering a method cannot flood the log.
type refusalLog struct {
	mu   sync.Mutex
	last map[string]refusalEntry
}

type refusalEntry struct {
	at      time.Time
	skipped int
}

const refusalLogEvery = time.Minute

// due reports whether the refusal key at now is logged, and how many
// refusals of key were not logged before it.
func (r *refusalLog) due(key string, now time.Time) (skipped int, log bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.last[key]
	if ok && now.Sub(e.at) < refusalLogEvery {
		e.skipped++
		r.last[key] = e
		return 0, false
	}
	if len(r.last) >= 10000 {
		for k, v := range r.last {
			if now.Sub(v.at) >= refusalLogEvery {
				delete(r.last, k)
			}
		}
	}
	if len(r.last) < 10000 {
		r.last[key] = refusalEntry{at: now}
	}
	return e.skipped, true
}

// limiter is a token bucket per key: rate tokens a second, at most burst.
type limiter struct {
	rate, burst float64
	now         func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxBuckets bounds the keys a limiter holds: when it is full, the buckets
// that have refilled are dropped, and a new key beyond it is refused.
const maxBuckets = 10000

func newLimiter(rate, burst float64, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: burst, now: now, buckets: map[string]*bucket{}}
}

func (l *limiter) allow(key string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			full := time.Duration(l.burst / l.rate * float64(time.Second))
			for k, v := range l.buckets {
				if now.Sub(v.at) >= full {
					delete(l.buckets, k)
				}
			}
			if len(l.buckets) >= maxBuckets {
				return false
			}
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// String lists the roles, for messages.
func (r Role) String() string {
	if r == Anyone {
		return "anyone"
	}
	var out []string
	for _, x := range []struct {
		r    Role
		name string
	}{{RoleEdge, "edge"}, {RolePolicy, "policy"}, {RoleOperator, "operator"}} {
		if r&x.r != 0 {
			out = append(out, x.name)
		}
	}
	if len(out) == 0 {
		return "nobody"
	}
	return strings.Join(out, ",")
}
