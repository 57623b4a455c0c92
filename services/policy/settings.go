package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/smtpgate/smtpgate/pkg/grpcclient"
	"github.com/smtpgate/smtpgate/pkg/grpcserver"
	"github.com/smtpgate/smtpgate/pkg/grpctls"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/resolver"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	authparams "github.com/smtpgate/smtpgate/services/auth/params"
	edgeparams "github.com/smtpgate/smtpgate/services/edge/params"
	"github.com/smtpgate/smtpgate/services/policy/internal/greylist"
	"github.com/smtpgate/smtpgate/services/policy/internal/restriction"
	"github.com/smtpgate/smtpgate/services/policy/internal/table"
	policyparams "github.com/smtpgate/smtpgate/services/policy/params"
)

// The parameters pkg reads by name on the policy service's behalf.
const (
	// listenParam is the gRPC listener's: pkg/grpctls and pkg/grpcserver
	// read its TLS files and callers by its name.
	listenParam = "smtpgate_policy_listen"
	// authServiceParam is smtpgate-auth's target, for auth:users
	// tables: pkg/grpctls reads the client's TLS files by its name.
	authServiceParam = "smtpgate_auth_service"
	// authTimeoutParam is the deadline of each call to smtpgate-auth.
	authTimeoutParam = "smtpgate_auth_timeout"
)

// Settings are the policy service's parameters, read once by Load: the
// only place in this package that reads main.cf and master.cf by name.
// The restriction lists are compiled here, once; what they use at run
// time that only a running process may open (the smtpgate-auth
// connection, the resolver's and the shared state's Redis, the logger)
// they reach through the bindings New fills in, so one Settings serves
// one Server.
type Settings struct {
	// main and services are kept for the admin service's view and for
	// the configuration logged at start.
	main     *maincf.Config
	services []maincf.Service
	// listen is smtpgate_policy_listen; delegationListen is
	// smtpgate_policy_delegation_listen (empty: not served).
	listen           string
	delegationListen string
	// listeners are the compiled lists of main.cf ("") and of each
	// master.cf service (its -o overrides).
	listeners map[string]listener
	// dnsErr says why there is no resolver (bad smtpgate_dns_servers or
	// smtpgate_dns_redis): only an error for lists that use DNS, a
	// warning at start otherwise.
	dnsErr error
	// dnsRedis is smtpgate_dns_redis; rateLimitRedis is
	// smtpgate_rate_limit_redis; greylistRedis is smtpgate_greylist_redis
	// (empty: in process). Checked URLs: they may hold a password and
	// are never shown.
	dnsRedis, rateLimitRedis, greylistRedis string
	// greylist are the smtpgate_greylist_* parameters.
	greylist greylist.Params
	// usersCacheTime is smtpgate_auth_users_cache_time.
	usersCacheTime time.Duration
	// grpcSecurity secures the gRPC listener (its TLS files read once);
	// access says who may call which method.
	grpcSecurity grpctls.Security
	access       *grpcserver.Access
	// auth is smtpgate-auth's target, call deadline and client TLS (its
	// files read once), dialled by New.
	auth grpcclient.Target
	// bind is what the compiled lists hold and New binds.
	bind *bindings
}

// listener is one listener's compiled restriction lists, with the stages
// they always permit (CheckResponse.permit_stages), computed once:
// responses share them and nothing may change them.
type listener struct {
	engine  *restriction.Engine
	permits []policyv1.Stage
}

// Load reads and checks the policy service's part of the configuration
// and compiles every listener's restriction lists: every bad value is
// reported, with its file:line, in one joined error. It opens no
// connection: New does.
func Load(main *maincf.Config, services []maincf.Service) (Settings, error) {
	s := Settings{main: main, services: services, listen: main.Get(listenParam),
		delegationListen: main.Get("smtpgate_policy_delegation_listen"), bind: newBindings()}
	var typed []error
	dur := func(name string) time.Duration { return maincf.Collect(main, &typed, name, maincf.ParseDuration) }
	s.usersCacheTime = dur("smtpgate_auth_users_cache_time")
	var err error
	if s.auth, err = grpcclient.LoadTarget(main, authServiceParam, authTimeoutParam); err != nil {
		typed = append(typed, err)
	}
	s.bind.users.timeout = s.auth.Timeout

	// The shared state of check_rate_limit and check_greylist.
	var errs []error
	if s.greylist, err = restriction.GreylistParams(main); err != nil {
		errs = append(errs, err)
	}
	s.rateLimitRedis = redisURL(main, "smtpgate_rate_limit_redis", &errs)
	s.greylistRedis = redisURL(main, "smtpgate_greylist_redis", &errs)

	// The resolver of the DNS restrictions: without one, naming them is
	// an error.
	var dnsErrs []error
	s.dnsRedis = redisURL(main, "smtpgate_dns_redis", &dnsErrs)
	if len(dnsErrs) == 0 {
		s.bind.dns, err = resolver.NewUnbound(resolver.Config{Servers: main.List("smtpgate_dns_servers"), Timeout: dur("smtpgate_dns_timeout")})
		if err != nil {
			dnsErrs = append(dnsErrs, main.Errorf("smtpgate_dns_servers", "%v", err))
		}
	}
	s.dnsErr = errors.Join(dnsErrs...)

	s.listeners, err = compileListeners(main, services, s.bind)
	if err != nil {
		if s.dnsErr != nil {
			err = errors.Join(s.dnsErr, err)
		}
		errs = append(errs, err)
	}
	// The gRPC listener's and the auth client's TLS files (read here,
	// once), and plaintext only on loopback; who may call which method
	// (the client certificates' roles).
	if s.grpcSecurity, err = grpctls.ServerSecurity(main, listenParam); err != nil {
		errs = append(errs, err)
	} else if s.access, err = grpcserver.NewAccess(main, listenParam, s.grpcSecurity.Mode, nil); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, typed...)
	return s, errors.Join(errs...)
}

// Warnings returns what check says about a valid configuration: gRPC
// callers trusted with every method off loopback (no client
// certificates), and database or server tables that cannot be reached
// now (their lookups fail temporarily until they can).
func Warnings(set Settings) []string {
	out := set.access.Warnings()
	if set.bind != nil {
		out = append(out, set.bind.tables.probe(context.Background())...)
	}
	return out
}

// redisURL returns the checked Redis URL of param (empty: none); the
// error never quotes the URL: it may hold a password.
func redisURL(main *maincf.Config, param string, errs *[]error) string {
	u := main.Get(param)
	if u == "" {
		return ""
	}
	if err := maincf.CheckRedisURL(u); err != nil {
		*errs = append(*errs, main.Errorf(param, "%v", err))
		return ""
	}
	return u
}

// compileListeners compiles the lists of main.cf and of every listener
// against the bindings. Services without overrides share main.cf's.
func compileListeners(main *maincf.Config, services []maincf.Service, b *bindings) (map[string]listener, error) {
	opts := restriction.Options{DNS: b.dns, RateLimits: &b.limits, Greylist: &b.grey, OpenTable: func(spec string) (table.Table, error) {
		if strings.HasPrefix(spec, "auth:") {
			return openAuthTable(spec, &b.users)
		}
		return b.tables.open(spec, table.Options{Dir: main.Dir(), Logger: b.log})
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
			for _, e := range maincf.Flatten(err) {
				errs = append(errs, fmt.Errorf("service %s: %w", s.Name, e))
			}
		}
		engines[s.Name] = e
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := make(map[string]listener, len(engines))
	permits := map[*restriction.Engine][]policyv1.Stage{}
	for name, e := range engines {
		p, ok := permits[e]
		if !ok {
			p = permitStages(e)
			permits[e] = p
		}
		out[name] = listener{engine: e, permits: p}
	}
	return out, nil
}

// Catalogue is what smtpgate-policy reads main.cf through: its own parameters and
// every other service's, so that a name nobody owns is an error.
func Catalogue() *maincf.Catalogue {
	return maincf.NewCatalogue(slices.Concat(maincf.Shared(), edgeparams.Defs(), policyparams.Defs(), authparams.Defs())...)
}
