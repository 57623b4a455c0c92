package edge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/smtpgate/smtpgate/pkg/grpcclient"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	authparams "github.com/smtpgate/smtpgate/services/auth/params"
	"github.com/smtpgate/smtpgate/services/edge/internal/handoff"
	"github.com/smtpgate/smtpgate/services/edge/internal/listener"
	"github.com/smtpgate/smtpgate/services/edge/internal/maillog"
	"github.com/smtpgate/smtpgate/services/edge/internal/smtpd"
	edgeparams "github.com/smtpgate/smtpgate/services/edge/params"
	policyparams "github.com/smtpgate/smtpgate/services/policy/params"
)

// Settings are the edge's parameters, read once by Load: the only place
// in this package that reads main.cf and master.cf by name. A reload
// builds new Settings and the Server swaps them in whole (Reload).
type Settings struct {
	// hostname is main.cf's myhostname (the mail log's host).
	hostname string
	// listeners are the master.cf services, compiled, in order.
	listeners []listenerSettings
	// policy and auth are the gRPC clients' targets, credentials
	// (smtpgate_grpc_tls_*, files read) and call deadlines
	// (smtpgate_policy_timeout, smtpgate_auth_timeout).
	policy, auth grpcclient.Target
	// policySkipTime is smtpgate_policy_skip_time.
	policySkipTime time.Duration
	// maxConnections is smtpgate_max_connections; stressThreshold
	// (percent of it) and stressHoldTime are smtpgate_stress_*.
	maxConnections  int
	stressThreshold int
	stressHoldTime  time.Duration
	// connLimitRedis is smtpgate_connection_limit_redis (a URL that may
	// hold a password; never logged).
	connLimitRedis string
	// memoryBudget is smtpgate_memory_budget.
	memoryBudget int64
	// shutdownTimeout is smtpgate_shutdown_timeout.
	shutdownTimeout time.Duration
	// mailLog is where the mail log goes (maillog_file, its old name
	// smtpgate_maillog_file, smtpgate_syslog_socket, syslog_name,
	// syslog_facility; OpenMailLog).
	mailLog maillog.Destination
	// startOnly are the values of the parameters in restartOnly.
	startOnly []string
}

// listenerSettings are one master.cf service's: the engine's settings
// (with its certificate, read from its files, and its next hop) and its
// PROXY protocol; nil when off.
type listenerSettings struct {
	l     *smtpd.Listener
	proxy *proxySettings
	// cert is l's certificate (nil without one), for its expiry metric.
	cert *certificate
}

// proxySettings is a listener's PROXY protocol configuration.
type proxySettings struct {
	trusted *listener.Networks
	timeout time.Duration
}

// shutdownTimeoutParam names smtpgate_shutdown_timeout in the drain's log.
const shutdownTimeoutParam = "smtpgate_shutdown_timeout"

// restartOnly are the parameters a reload cannot apply: they are read
// once, when the process starts. (The gRPC TLS files themselves are read
// again at each new gRPC connection: a renewed certificate needs no
// reload; only a new file name does.)
var restartOnly = []string{"smtpgate_policy_service", "smtpgate_auth_service", "smtpgate_max_connections", "smtpgate_memory_budget",
	"smtpgate_grpc_tls_ca_file", "smtpgate_grpc_tls_client_cert_file", "smtpgate_grpc_tls_client_key_file",
	"smtpgate_grpc_tls_server_name", "smtpgate_grpc_allow_plaintext",
	"smtpgate_connection_limit_redis", "smtpgate_stress_threshold", "smtpgate_stress_hold_time", "maillog_file", "smtpgate_maillog_file", "smtpgate_syslog_socket", "syslog_name", "syslog_facility", "smtpgate_edge_metrics_listen", "smtpgate_edge_pprof_listen",
	"smtpgate_log_format", "smtpgate_log_level"}

// Load reads and checks the edge's part of the configuration: names and
// values, the listeners, their certificates (read from their files) and
// next hops, the gRPC clients' TLS files. Every bad value is reported,
// with its file:line, in one joined error.
func Load(main *maincf.Config, services []maincf.Service) (Settings, error) {
	var typed []error
	p := params{main, &typed}
	s := Settings{
		hostname:        main.Get("myhostname"),
		policySkipTime:  p.duration("smtpgate_policy_skip_time"),
		maxConnections:  int(p.int("smtpgate_max_connections")),
		stressThreshold: int(p.int("smtpgate_stress_threshold")),
		stressHoldTime:  p.duration("smtpgate_stress_hold_time"),
		connLimitRedis:  main.Get("smtpgate_connection_limit_redis"),
		memoryBudget:    p.int("smtpgate_memory_budget"),
		shutdownTimeout: p.duration(shutdownTimeoutParam),
		mailLog: maillog.Destination{File: main.Path("maillog_file"), Socket: main.Path("smtpgate_syslog_socket"),
			Name: main.Get("syslog_name"), Facility: main.Get("syslog_facility"), Host: main.Get("myhostname")},
	}
	if s.mailLog.File == "" {
		s.mailLog.File = main.Path("smtpgate_maillog_file")
	}
	for _, name := range restartOnly {
		s.startOnly = append(s.startOnly, main.Get(name))
	}
	errs := []error{main.Validate(maincf.Edge), maincf.ValidateServices(main, services, maincf.Edge), checkConnLimitRedis(main, s.connLimitRedis)}
	var listenerErrs []error
	for _, svc := range services {
		ls, err := compileListener(main.WithOverrides(svc.Overrides), svc, &typed)
		if err != nil {
			listenerErrs = append(listenerErrs, err)
			continue
		}
		s.listeners = append(s.listeners, ls)
	}
	tickets := sessionTickets{timeout: p.duration("smtpd_tls_session_cache_timeout")}
	if path := main.Path("smtpgate_tls_session_ticket_keys_file"); path != "" {
		keys, err := readTicketKeys(path)
		if err != nil {
			errs = append(errs, main.Errorf("smtpgate_tls_session_ticket_keys_file", "%v", err))
		}
		tickets.keys = keys
	}
	for _, ls := range s.listeners {
		if ls.l.TLS != nil {
			tickets.apply(ls.l.TLS)
		}
	}
	errs = append(errs, checkReserves(main, services, s.maxConnections, &typed))
	if len(services) == 0 {
		errs = append(errs, errors.New("master.cf: no smtpd services: the edge has nothing to listen on"))
	}
	errs = append(errs, listenerErrs...)
	// The gRPC clients' TLS files, and plaintext only to loopback.
	var err error
	if s.policy, err = grpcclient.LoadTarget(p.c, "smtpgate_policy_service", "smtpgate_policy_timeout"); err != nil {
		errs = append(errs, err)
	}
	if s.auth, err = grpcclient.LoadTarget(p.c, "smtpgate_auth_service", "smtpgate_auth_timeout"); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, typed...)
	return s, errors.Join(errs...)
}

// OpenMailLog opens the mail log, in Postfix's words and program names:
// maillog_file (or its old name smtpgate_maillog_file) appended to,
// "/dev/stdout" or "/dev/stderr", or else syslog through
// smtpgate_syslog_socket, as syslog_name and syslog_facility say.
func (s Settings) OpenMailLog() (*maillog.Log, error) {
	l, err := maillog.Open(s.mailLog)
	if err != nil {
		return nil, fmt.Errorf("maillog_file: %w", err)
	}
	return l, nil
}

// changedAtStart are the parameters of restartOnly whose value differs
// between old and s.
func (s Settings) changedAtStart(old Settings) []string {
	var out []string
	for i, name := range restartOnly {
		if old.startOnly[i] != s.startOnly[i] {
			out = append(out, name)
		}
	}
	return out
}

// params reads typed values from a configuration: a bad value is added to
// errs unless the catalogue's own check (which Load runs) reports it
// already, so that none is silently read as zero and none is reported
// twice.
type params struct {
	c    *maincf.Config
	errs *[]error
}

func (p params) bool(name string) bool { return maincf.Collect(p.c, p.errs, name, maincf.ParseBool) }

func (p params) int(name string) int64 { return maincf.Collect(p.c, p.errs, name, maincf.ParseInt) }

func (p params) duration(name string) time.Duration {
	return maincf.Collect(p.c, p.errs, name, maincf.ParseDuration)
}

// overridden is the value of name when svc's -o options set it; "" when
// main.cf's applies.
func overridden(svc maincf.Service, c *maincf.Config, name string) string {
	for _, o := range svc.Overrides {
		if o.Name == name {
			return c.Get(name)
		}
	}
	return ""
}

// compileListener compiles one master.cf service (c is main.cf with its
// -o overrides) into the engine's settings. Every problem is reported,
// each with the service's master.cf line before its own file:line.
func compileListener(c *maincf.Config, svc maincf.Service, typed *[]error) (listenerSettings, error) {
	var errs []error
	fail := func(err error) {
		errs = append(errs, fmt.Errorf("%s: service %s: %w", svc.Pos, svc.Name, err))
	}
	p := params{c, typed}
	l := &smtpd.Listener{
		SyslogName:             overridden(svc, c, "syslog_name"),
		Name:                   svc.Name,
		Hostname:               c.Get("myhostname"),
		Banner:                 c.Get("smtpd_banner"),
		Wrapper:                p.bool("smtpd_tls_wrappermode"),
		SASL:                   p.bool("smtpd_sasl_auth_enable"),
		TLSAuthOnly:            p.bool("smtpd_tls_auth_only"),
		MaxMessageSize:         p.int("message_size_limit"),
		MaxRecipients:          int(p.int("smtpd_recipient_limit")),
		LineLimit:              int(p.int("line_length_limit")),
		DisableVRFY:            p.bool("disable_vrfy_command"),
		HELORequired:           p.bool("smtpd_helo_required"),
		ForbidUnauthPipelining: p.bool("smtpd_forbid_unauth_pipelining"),
		GreetPause:             p.duration("smtpgate_greet_pause"),
		DisableSMTPUTF8:        !p.bool("smtputf8_enable"),
		StrictSMTPUTF8:         p.bool("strict_smtputf8"),
		ConnectionCountLimit:   int(p.int("smtpd_client_connection_count_limit")),
		ConnectionRateLimit:    int(p.int("smtpd_client_connection_rate_limit")),
		RateTimeUnit:           p.duration("anvil_rate_time_unit"),
		MemoryMessageLimit:     p.int("smtpgate_memory_message_limit"),
		SoftBounce:             p.bool("soft_bounce"),
	}
	// ETRN is advertised where Postfix's submission examples would not
	// want it: everywhere but on listeners with SASL on.
	l.ETRN = !l.SASL
	normal := adaptive(p)
	l.Timeout, l.HardErrorLimit, l.SoftErrorLimit, l.ErrorSleep, l.JunkCommandLimit =
		normal.Timeout, normal.HardErrorLimit, normal.SoftErrorLimit, normal.ErrorSleep, normal.JunkCommandLimit
	l.RecipientOvershootLimit = int(p.int("smtpd_recipient_overshoot_limit"))
	var err error
	if l.XCLIENTHosts, err = listener.ParseNetworks(c.List("smtpd_authorized_xclient_hosts")); err != nil {
		fail(c.Errorf("smtpd_authorized_xclient_hosts", "%v", err))
	}
	if l.EventLimitExceptions, err = listener.ParseNetworks(c.List("smtpd_client_event_limit_exceptions")); err != nil {
		fail(c.Errorf("smtpd_client_event_limit_exceptions", "%v (addresses and networks only; set it when mynetworks has host names or tables)", err))
	}
	l.NetworkCountLimit = int(p.int("smtpgate_network_connection_count_limit"))
	l.IPv4Prefix, l.IPv6Prefix = int(p.int("smtpgate_network_ipv4_prefix")), int(p.int("smtpgate_network_ipv6_prefix"))
	l.ConnectionReserve = int(p.int("smtpgate_connection_reserve"))
	// The settings that depend on ${stress}, read as they are under
	// stress, unless the listener forces stress with -o stress.
	if !c.StressForced() {
		if stressed := adaptive(params{c.UnderStress(), typed}); stressed != normal {
			l.UnderStress = &stressed
		}
	}
	if l.BareNewlineExclusions, err = listener.ParseNetworks(c.List("smtpd_forbid_bare_newline_exclusions")); err != nil {
		fail(c.Errorf("smtpd_forbid_bare_newline_exclusions", "%v (addresses and networks only; set it when mynetworks has host names or tables)", err))
	}
	switch strings.ToLower(c.Get("smtpd_forbid_bare_newline")) {
	case "reject":
		l.BareNewline = smtpd.BareNewlineReject
	case "no":
		l.BareNewline = smtpd.BareNewlineNo
	}
	l.BareNewlineCode = int(p.int("smtpd_forbid_bare_newline_reject_code"))
	switch strings.ToLower(c.Get("smtpgate_listener_mode")) {
	case "submission":
		l.Submission = true
	case "":
		l.Submission = l.SASL
	}
	certFile := c.Path("smtpd_tls_cert_file")
	var cert *certificate
	if certFile != "" {
		// Read here, at every load: a reload picks up a renewed pair.
		var err error
		cert, err = loadCertificate(certFile, c.Path("smtpd_tls_key_file"))
		if err != nil {
			fail(c.Errorf("smtpd_tls_cert_file", "%v", err))
		} else {
			l.TLS = &tls.Config{GetCertificate: cert.get, MinVersion: tls.VersionTLS12}
		}
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
	if (l.TLSLevel != smtpd.TLSNone || l.Wrapper) && certFile == "" {
		fail(c.Errorf("smtpd_tls_cert_file", "TLS is required on this listener but no certificate is configured"))
	}
	l.NextHop, err = handoff.Parse(c.Get("smtpgate_next_hop"), c.Resolve, handoff.Options{Hostname: l.Hostname, Timeout: p.duration("smtpgate_next_hop_timeout"),
		IdleConnections: int(p.int("smtpgate_next_hop_idle_connections")), IdleTimeout: p.duration("smtpgate_next_hop_idle_timeout"),
		LineLengthLimit: int(p.int("smtp_line_length_limit")), LMTPLineLengthLimit: int(p.int("lmtp_line_length_limit"))})
	if err != nil {
		fail(c.Errorf("smtpgate_next_hop", "%v", err))
	}
	proxy, err := proxyOf(p)
	if err != nil {
		fail(err)
	}
	return listenerSettings{l: l, proxy: proxy, cert: cert}, errors.Join(errs...)
}

// adaptive reads the settings that may depend on ${stress}
// (maincf.Def.Stress).
func adaptive(p params) smtpd.Adaptive {
	return smtpd.Adaptive{
		Timeout:          p.duration("smtpd_timeout"),
		HardErrorLimit:   int(p.int("smtpd_hard_error_limit")),
		SoftErrorLimit:   int(p.int("smtpd_soft_error_limit")),
		ErrorSleep:       p.duration("smtpd_error_sleep_time"),
		JunkCommandLimit: int(p.int("smtpd_junk_command_limit")),
	}
}

// proxyOf reads a listener's PROXY protocol settings; nil when off.
func proxyOf(p params) (*proxySettings, error) {
	c := p.c
	if c.Get("smtpd_upstream_proxy_protocol") == "" {
		return nil, nil
	}
	trusted, err := listener.ParseNetworks(c.List("smtpgate_proxy_networks"))
	if err != nil {
		return nil, c.Errorf("smtpgate_proxy_networks", "%v", err)
	}
	return &proxySettings{trusted: trusted, timeout: p.duration("smtpd_upstream_proxy_timeout")}, nil
}

// checkReserves checks that the listeners' smtpgate_connection_reserve
// leave room within smtpgate_max_connections (limit).
func checkReserves(main *maincf.Config, services []maincf.Service, limit int, typed *[]error) error {
	if limit <= 0 {
		return nil
	}
	var sum int64
	for _, svc := range services {
		sum += params{main.WithOverrides(svc.Overrides), typed}.int("smtpgate_connection_reserve")
		if sum > int64(limit) {
			return fmt.Errorf("%s: service %s: smtpgate_connection_reserve: the listeners' reserves add up to %d (so far), more than smtpgate_max_connections = %d", svc.Pos, svc.Name, sum, limit)
		}
	}
	return nil
}

// checkConnLimitRedis checks that smtpgate_connection_limit_redis (url)
// parses.
func checkConnLimitRedis(main *maincf.Config, url string) error {
	rc, err := connLimitRedis(url)
	if err != nil {
		return main.Errorf("smtpgate_connection_limit_redis", "%v (value not shown: it may hold a password)", err)
	}
	if rc != nil {
		return rc.Close()
	}
	return nil
}

// Catalogue is what smtpgate-edge reads main.cf through: its own parameters and
// every other service's, so that a name nobody owns is an error.
func Catalogue() *maincf.Catalogue {
	return maincf.NewCatalogue(slices.Concat(maincf.Shared(), edgeparams.Defs(), policyparams.Defs(), authparams.Defs())...)
}
