package auth

import (
	"errors"
	"fmt"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/smtpgate/smtpgate/pkg/grpcserver"
	"github.com/smtpgate/smtpgate/pkg/grpctls"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	"github.com/smtpgate/smtpgate/services/auth/internal/authcache"
	"github.com/smtpgate/smtpgate/services/auth/internal/dovecotauth"
	"github.com/smtpgate/smtpgate/services/auth/internal/dovecotclient"
	"github.com/smtpgate/smtpgate/services/auth/internal/passwdfile"
	"github.com/smtpgate/smtpgate/services/auth/internal/sasl"
	"github.com/smtpgate/smtpgate/services/auth/internal/throttle"
	authparams "github.com/smtpgate/smtpgate/services/auth/params"
	edgeparams "github.com/smtpgate/smtpgate/services/edge/params"
	policyparams "github.com/smtpgate/smtpgate/services/policy/params"
)

// listenParam is the gRPC listener's parameter; pkg/grpctls and
// pkg/grpcserver read its TLS files and callers by its name.
const listenParam = "smtpgate_auth_listen"

// Settings are the auth service's parameters, read once by Load: the only
// place in this package that reads main.cf and master.cf by name.
type Settings struct {
	// main and services are kept for what pkg reads by the name of
	// smtpgate_auth_listen (the gRPC listener's TLS files and callers,
	// grpctls and grpcserver) and for the admin service's view.
	main     *maincf.Config
	services []maincf.Service
	// hostname is myhostname (the SASL server name).
	hostname string
	// listen is smtpgate_auth_listen.
	listen string
	// users is smtpgate_passwd_file, opened; nil when unset.
	users *passwdfile.File
	// listeners are the SASL settings of main.cf ("") and of each
	// master.cf service (its -o overrides).
	listeners map[string]listener
	// throttle are the smtpgate_auth_* throttling parameters.
	throttle throttle.Options
	// cache is smtpgate_auth_cache_size and smtpgate_auth_cache_ttl.
	cache authcache.Options
	// dovecotListen is smtpgate_dovecot_auth_listen; dovecot the rest of
	// the smtpgate_dovecot_auth_* parameters.
	dovecotListen []string
	dovecot       dovecotSettings
	// userdb is smtpgate_dovecot_userdb_path, resolved ("": none);
	// dovecotTimeout is smtpgate_dovecot_timeout. The listeners'
	// smtpd_sasl_path are in listeners.
	userdb         string
	dovecotTimeout time.Duration
	// grpcSecurity secures the gRPC listener (its TLS files read once);
	// access says who may call which method, with
	// smtpgate_auth_lookup_rate_limit on LookupUser.
	grpcSecurity grpctls.Security
	access       *grpcserver.Access
}

// Load reads and checks the auth service's part of the configuration:
// every bad value is reported, with its file:line, in one joined error.
func Load(main *maincf.Config, services []maincf.Service) (Settings, error) {
	s := Settings{main: main, services: services, hostname: main.Get("myhostname"), listen: main.Get(listenParam),
		dovecotListen: main.List("smtpgate_dovecot_auth_listen")}
	errs := []error{main.Validate(maincf.Auth), maincf.ValidateServices(main, services, maincf.Auth)}
	var err error
	if s.listeners, err = compileListeners(main, services); err != nil {
		errs = append(errs, err)
	}
	if p := main.Path("smtpgate_passwd_file"); p != "" {
		if s.users, err = passwdfile.Open(p); err != nil {
			errs = append(errs, fmt.Errorf("%s: smtpgate_passwd_file: %w", main.Pos("smtpgate_passwd_file"), err))
		}
	}
	var typed []error
	s.throttle = throttleOptions(main, &typed)
	s.cache = authcache.Options{
		Size: int(maincf.Collect(main, &typed, "smtpgate_auth_cache_size", maincf.ParseInt)),
		TTL:  maincf.Collect(main, &typed, "smtpgate_auth_cache_ttl", maincf.ParseDuration),
	}
	errs = append(errs, validateThrottle(main))
	s.dovecotTimeout = maincf.Collect(main, &typed, "smtpgate_dovecot_timeout", maincf.ParseDuration)
	if v := main.Get("smtpgate_dovecot_userdb_path"); v != "" {
		if s.userdb, err = dovecotSocket(v); err != nil {
			errs = append(errs, main.Errorf("smtpgate_dovecot_userdb_path", "%v", err))
		}
	}
	errs = append(errs, needUsers(main, s), authPossible(main, services, s))
	if s.dovecot, err = parseDovecot(main); err != nil {
		errs = append(errs, err)
	}
	// The gRPC listener's TLS files (read here, once), and plaintext
	// only on loopback; who may call which method.
	if s.grpcSecurity, err = grpctls.ServerSecurity(main, listenParam); err != nil {
		errs = append(errs, err)
	} else if s.access, err = newAccess(main, s.grpcSecurity.Mode); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, typed...)
	return s, errors.Join(errs...)
}

// Warnings returns what check says about a valid configuration: gRPC
// callers trusted with every method off loopback (no client
// certificates).
func Warnings(set Settings) []string { return set.access.Warnings() }

// newAccess returns who may call which method of the gRPC listener (the
// roles of the client certificates), with smtpgate_auth_lookup_rate_limit
// on LookupUser; the service gives it its logger (Access.WithLogger).
func newAccess(main *maincf.Config, mode grpctls.Mode) (*grpcserver.Access, error) {
	a, err := grpcserver.NewAccess(main, listenParam, mode, nil)
	if err != nil {
		return nil, err
	}
	n, err := maincf.ParseInt(main.Get(grpcserver.LookupRateLimit))
	if err != nil {
		return nil, main.Errorf(grpcserver.LookupRateLimit, "%v", err)
	}
	return a.WithRateLimit(authv1.AuthService_LookupUser_FullMethodName, int(min(n, 1<<30))), nil
}

// throttleOptions reads the smtpgate_auth_* throttling parameters.
func throttleOptions(c *maincf.Config, errs *[]error) throttle.Options {
	dur := func(name string) time.Duration { return maincf.Collect(c, errs, name, maincf.ParseDuration) }
	num := func(name string) int64 { return maincf.Collect(c, errs, name, maincf.ParseInt) }
	return throttle.Options{
		Params: throttle.Params{
			Window:        dur("smtpgate_auth_failure_window"),
			MaxPerClient:  num("smtpgate_auth_max_failures_per_client"),
			MaxPerNetwork: num("smtpgate_auth_max_failures_per_network"),
			MaxPerUser:    num("smtpgate_auth_max_failures_per_user"),
			Lockout:       dur("smtpgate_auth_lockout_time"),
			Delay:         dur("smtpgate_auth_failure_delay"),
			MaxDelay:      dur("smtpgate_auth_max_failure_delay"),
			KnownSource:   dur("smtpgate_auth_known_source_time"),
		},
		RedisURL: c.Get("smtpgate_auth_redis"),
		Timeout:  dur("smtpgate_auth_redis_timeout"),
	}
}

// validateThrottle checks what the catalogue's checks cannot.
func validateThrottle(c *maincf.Config) error {
	if u := c.Get("smtpgate_auth_redis"); u != "" {
		rc, err := throttle.NewRedisClient(u, time.Second)
		if err != nil {
			return fmt.Errorf("%s: smtpgate_auth_redis: %w", c.Pos("smtpgate_auth_redis"), err)
		}
		// Opened, not connected: nothing to wait for.
		_ = rc.Close()
	}
	return nil
}
func compileListeners(main *maincf.Config, services []maincf.Service) (map[string]listener, error) {
	out := map[string]listener{}
	var errs []error
	l, err := compileListener(main)
	if err != nil {
		errs = append(errs, err)
	}
	out[""] = l
	for _, s := range services {
		l, err := compileListener(main.WithOverrides(s.Overrides))
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", s.Name, err))
		}
		out[s.Name] = l
	}
	return out, errors.Join(errs...)
}

func compileListener(c *maincf.Config) (listener, error) {
	var l listener
	var errs []error
	known := sasl.Mechanisms()
	for _, name := range c.List("smtpgate_sasl_mechanisms") {
		m, ok := known[strings.ToUpper(name)]
		if !ok {
			errs = append(errs, c.Errorf("smtpgate_sasl_mechanisms", "unknown mechanism %q", name))
			continue
		}
		l.mechanisms = append(l.mechanisms, m)
	}
	var err error
	if l.plain, err = sasl.ParseSecurityOptions(c.List("smtpd_sasl_security_options")); err != nil {
		errs = append(errs, c.Errorf("smtpd_sasl_security_options", "%v", err))
	}
	if l.tls, err = sasl.ParseSecurityOptions(c.List("smtpd_sasl_tls_security_options")); err != nil {
		errs = append(errs, c.Errorf("smtpd_sasl_tls_security_options", "%v", err))
	}
	// A bad smtpd_sasl_type is the catalogue's check's to report.
	if c.Get("smtpd_sasl_type") == "dovecot" {
		if l.dovecot, err = dovecotSocket(c.Get("smtpd_sasl_path")); err != nil {
			errs = append(errs, c.Errorf("smtpd_sasl_path", "%v", err))
		}
	}
	return l, errors.Join(errs...)
}

// postfixQueue is Postfix's default queue_directory: Postfix resolves a
// relative smtpd_sasl_path there (its smtpd runs there, often chrooted),
// so a relative Dovecot socket path is taken from there too. smtpgate
// has no queue_directory; with another one, write the absolute path.
const postfixQueue = "/var/spool/postfix"

// dovecotSocket resolves a Dovecot socket path as Postfix resolves
// smtpd_sasl_path: inet:host:port, unix:/path or /path, and a relative
// path (with or without unix:) under postfixQueue. It returns
// inet:host:port or unix:/path.
func dovecotSocket(v string) (string, error) {
	if v == "" {
		return "", errors.New("empty: want inet:host:port, unix:/path or a path relative to /var/spool/postfix such as private/auth")
	}
	if !strings.HasPrefix(v, "inet:") {
		p := strings.TrimPrefix(v, "unix:")
		if !filepath.IsAbs(p) {
			p = filepath.Join(postfixQueue, p)
		}
		v = "unix:" + p
	}
	if _, _, err := dovecotclient.ParsePath(v); err != nil {
		return "", err
	}
	return v, nil
}

// needUsers refuses a configuration whose auth:users tables (valid
// recipients, sender login maps) have no user database to ask: no
// smtpgate_passwd_file and no smtpgate_dovecot_userdb_path.
func needUsers(c *maincf.Config, s Settings) error {
	if s.users != nil || s.userdb != "" || c.Get("smtpgate_passwd_file") != "" {
		return nil
	}
	for _, name := range c.Catalogue().Names() {
		if strings.Contains(c.Get(name), "auth:users") {
			return c.Errorf(name, "auth:users has no user database: set smtpgate_dovecot_userdb_path to Dovecot's auth-userdb socket "+
				"(service auth { unix_listener auth-userdb }), e.g. private/auth-userdb or inet:127.0.0.1:12346, or smtpgate_passwd_file")
		}
	}
	return nil
}

// parseDovecot reads the smtpgate_dovecot_auth_* parameters.
func parseDovecot(c *maincf.Config) (dovecotSettings, error) {
	d := dovecotSettings{uid: -1, gid: -1}
	var errs []error
	var err error
	if d.clients, err = dovecotauth.ParseClients(c.List("smtpgate_dovecot_auth_clients")); err != nil {
		errs = append(errs, c.Errorf("smtpgate_dovecot_auth_clients", "%v", err))
	}
	if d.mode, err = maincf.ParseFileMode(c.Get("smtpgate_dovecot_auth_socket_mode")); err != nil {
		errs = append(errs, c.Errorf("smtpgate_dovecot_auth_socket_mode", "%v", err))
	}
	if v := c.Get("smtpgate_dovecot_auth_socket_user"); v != "" {
		if d.uid, err = lookupID(v, func(n string) (string, error) {
			u, err := user.Lookup(n)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		}); err != nil {
			errs = append(errs, c.Errorf("smtpgate_dovecot_auth_socket_user", "%v", err))
		}
	}
	if v := c.Get("smtpgate_dovecot_auth_socket_group"); v != "" {
		if d.gid, err = lookupID(v, func(n string) (string, error) {
			g, err := user.LookupGroup(n)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		}); err != nil {
			errs = append(errs, c.Errorf("smtpgate_dovecot_auth_socket_group", "%v", err))
		}
	}
	return d, errors.Join(errs...)
}

// authPossible refuses a master.cf listener on which AUTH can never
// succeed: SASL on (smtpd_sasl_auth_enable) with no user database, or no
// mechanism left in any TLS state the listener can reach, after
// smtpd_sasl_security_options (before TLS) and
// smtpd_sasl_tls_security_options (after it), given its TLS settings
// (the edge's parameters, read here for this check only). A Dovecot
// listener's mechanisms are Dovecot's, known only when it answers: only
// the TLS states are checked for it.
func authPossible(c *maincf.Config, services []maincf.Service, s Settings) error {
	var errs []error
	for _, svc := range services {
		lc := c.WithOverrides(svc.Overrides)
		on, err := maincf.ParseBool(lc.Get("smtpd_sasl_auth_enable"))
		if err != nil || !on {
			continue // a bad value is the catalogue's to report
		}
		l := s.listeners[svc.Name]
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: service %s: smtpd_sasl_auth_enable = yes, but AUTH can never succeed here: %s",
				svc.Pos, svc.Name, fmt.Sprintf(format, args...)))
		}
		if l.dovecot == "" && s.users == nil && lc.Get("smtpgate_passwd_file") == "" {
			fail("there is no user database: set smtpgate_passwd_file, or smtpd_sasl_type = dovecot with smtpd_sasl_path")
			continue
		}
		wrapper, _ := maincf.ParseBool(lc.Get("smtpd_tls_wrappermode"))
		authOnly, _ := maincf.ParseBool(lc.Get("smtpd_tls_auth_only"))
		hasTLS := lc.Get("smtpd_tls_cert_file") != "" && (wrapper || lc.Get("smtpd_tls_security_level") != "none")
		before := !wrapper && !authOnly // AUTH offered before STARTTLS
		if !hasTLS && !before {
			fail("AUTH is offered only under TLS (smtpd_tls_auth_only = yes) and the listener has no TLS: set smtpd_tls_cert_file (and smtpd_tls_security_level = may or encrypt)")
			continue
		}
		if l.dovecot != "" {
			continue
		}
		var usable []sasl.Mechanism
		if before {
			usable = append(usable, l.offered(false)...)
		}
		if hasTLS {
			usable = append(usable, l.offered(true)...)
		}
		if len(usable) > 0 {
			continue
		}
		var names []string
		for _, m := range l.mechanisms {
			names = append(names, m.Name)
		}
		if hasTLS {
			fail("smtpd_sasl_tls_security_options = %s leaves none of smtpgate_sasl_mechanisms (%s): allow one of them, or add one it allows",
				lc.Get("smtpd_sasl_tls_security_options"), strings.Join(names, " "))
		} else {
			fail("the listener has no TLS and smtpd_sasl_security_options = %s leaves none of smtpgate_sasl_mechanisms (%s) before TLS: set smtpd_tls_cert_file (and smtpd_tls_security_level = may or encrypt) so that AUTH happens under TLS",
				lc.Get("smtpd_sasl_security_options"), strings.Join(names, " "))
		}
	}
	return errors.Join(errs...)
}

// Catalogue is what smtpgate-auth reads main.cf through: its own parameters and
// every other service's, so that a name nobody owns is an error.
func Catalogue() *maincf.Catalogue {
	return maincf.NewCatalogue(slices.Concat(maincf.Shared(), edgeparams.Defs(), policyparams.Defs(), authparams.Defs())...)
}
