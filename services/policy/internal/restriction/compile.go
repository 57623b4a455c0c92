package restriction

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/smtpgate/smtpgate/pkg/mailname"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/resolver"
	"github.com/smtpgate/smtpgate/services/policy/internal/greylist"
	"github.com/smtpgate/smtpgate/services/policy/internal/matchlist"
	"github.com/smtpgate/smtpgate/services/policy/internal/ratelimit"
	"github.com/smtpgate/smtpgate/services/policy/internal/table"
)

// Options are what Compile needs besides the configuration.
type Options struct {
	// OpenTable opens a lookup table "type:name"; nil opens it with
	// table.Open relative to the configuration directory. Tables named
	// twice are opened once.
	OpenTable func(spec string) (table.Table, error)
	// Logger gets table reload problems; nil discards them.
	Logger *slog.Logger
	// DNS is the resolver of the DNS-based restrictions
	// (reject_rbl_client, reject_unknown_sender_domain, check_spf...);
	// without one, naming them is a configuration error.
	DNS *resolver.Resolver
	// RateLimits keeps the counts of check_rate_limit; nil counts in
	// process.
	RateLimits ratelimit.Counter
	// Greylist keeps check_greylist's state; nil keeps it in process.
	Greylist greylist.Store
	// Now is the clock of check_greylist (nil: time.Now).
	Now func() time.Time
}

// compiler holds what restrictions are built from.
type compiler struct {
	cfg     *maincf.Config
	opts    Options
	dest    *Destinations
	nets    *matchlist.Networks
	classes map[string]*List
	tables  map[string]table.Table
	env     *accessEnv
	valid   *validRecipients
	logins  maps
	// rblReplies is rbl_reply_maps, opened on first use.
	rblReplies *maps
	errs       []error
	// limits are the smtpgate_rate_limits definitions, parsed on first use.
	limits map[string]rateLimit
	// param is the parameter whose list is being compiled.
	param string
	// runtime is set while compiling an access table value during
	// evaluation: no table may be opened then.
	runtime bool
}

// Compile builds the engine for one configuration view. Every problem is
// reported, joined, each with the file:line and parameter it comes from:
// an unknown restriction name, a restriction class without a definition or
// referring to itself, a bad mynetworks or domain list, a table that cannot
// be read or holds an action smtpgate cannot honour, and Postfix's
// start-up safety check (no restriction in the relay or recipient list
// that refuses mail by default).
func Compile(cfg *maincf.Config) (*Engine, error) {
	return CompileWith(cfg, Options{})
}

// CompileWith is Compile with options.
func CompileWith(cfg *maincf.Config, opts Options) (*Engine, error) {
	if opts.OpenTable == nil {
		log := opts.Logger
		opts.OpenTable = func(spec string) (table.Table, error) {
			return table.Open(spec, table.Options{Dir: cfg.Dir(), Logger: log})
		}
	}
	if opts.RateLimits == nil {
		opts.RateLimits = ratelimit.NewMemory(100000, nil)
	}
	c := &compiler{cfg: cfg, opts: opts, dest: &Destinations{}, classes: map[string]*List{}, tables: map[string]table.Table{}}
	e := &Engine{lists: map[ListKind]*List{}, delayReject: cfg.Bool("smtpd_delay_reject"), dns: opts.DNS, peernameLookup: cfg.Bool("smtpd_peername_lookup")}
	e.codes = Codes{
		Reject:                c.code("reject_code"),
		Defer:                 c.code("defer_code"),
		Relay:                 c.code("relay_domains_reject_code"),
		AccessReject:          c.code("access_map_reject_code"),
		AccessDefer:           c.code("access_map_defer_code"),
		InvalidHostname:       c.code("invalid_hostname_reject_code"),
		NonFQDN:               c.code("non_fqdn_reject_code"),
		UnknownLocal:          c.code("unknown_local_recipient_reject_code"),
		UnknownVirtualMailbox: c.code("unknown_virtual_mailbox_reject_code"),
		UnknownVirtualAlias:   c.code("unknown_virtual_alias_reject_code"),
		UnknownRelay:          c.code("unknown_relay_recipient_reject_code"),
		SoftBounce:            cfg.Bool("soft_bounce"),
	}
	e.unlisted = unlistedPolicy{sender: cfg.Bool("smtpd_reject_unlisted_sender"), recipient: cfg.Bool("smtpd_reject_unlisted_recipient")}

	var err error
	if c.nets, err = matchlist.ParseNetworks(cfg.List("mynetworks")); err != nil {
		c.errs = append(c.errs, cfg.Errorf("mynetworks", "%v", err))
	}
	// Tables in domain lists (virtual_mailbox_domains =
	// sqlite:/etc/postfix/domains.cf) are opened once, as elsewhere.
	openList := func(spec string) (table.Table, error) {
		if t, ok := c.tables[spec]; ok {
			return t, nil
		}
		t, err := c.opts.OpenTable(spec)
		if err != nil {
			return nil, err
		}
		c.tables[spec] = t
		return t, nil
	}
	for _, name := range []string{"mydestination", "virtual_alias_domains", "virtual_mailbox_domains"} {
		d, err := matchlist.ParseDomainsWith(cfg.List(name), false, openList)
		if err != nil {
			c.errs = append(c.errs, cfg.Errorf(name, "%v", err))
			d, _ = matchlist.ParseDomains(nil, false)
		}
		c.dest.Final = append(c.dest.Final, d)
	}
	// relay_domains is in Postfix's parent_domain_matches_subdomains by
	// default: "example.com" also covers its subdomains.
	if c.dest.Relay, err = matchlist.ParseDomainsWith(cfg.List("relay_domains"), true, openList); err != nil {
		c.errs = append(c.errs, cfg.Errorf("relay_domains", "%v", err))
	}

	delimiter := cfg.Get("recipient_delimiter")
	e.values = &valueCache{lists: map[string]*List{}, bad: map[string]bool{}}
	c.env = &accessEnv{
		parentStyle: slices.Contains(cfg.List("parent_domain_matches_subdomains"), "smtpd_access_maps"),
		nullKey:     cfg.Get("smtpd_null_access_lookup_key"),
		delimiter:   delimiter,
		values:      e.values,
	}
	c.valid = &validRecipients{
		dest:           c.dest,
		local:          c.maps("local_recipient_maps"),
		virtualAlias:   c.maps("virtual_alias_maps"),
		virtualMailbox: c.maps("virtual_mailbox_maps"),
		relay:          c.maps("relay_recipient_maps"),
		delimiter:      delimiter,
		showTable:      cfg.Bool("show_user_unknown_table_name"),
	}
	e.valid = c.valid
	c.logins = c.maps("smtpd_sender_login_maps")

	for _, name := range cfg.List("smtpd_restriction_classes") {
		c.class(name, nil)
	}
	for _, kind := range allLists() {
		e.lists[kind] = c.list(string(kind), nil)
		if kind.defaultAccess() == "" {
			for _, r := range e.lists[kind].Items {
				if _, ok := r.(bareTable); ok {
					c.errs = append(c.errs, cfg.Errorf(string(kind), "table %s: say which access check it is for (check_client_access, check_sender_access...); %s has no default", r.Name(), kind))
				}
			}
		}
	}
	if !c.hasRequired(e.lists[RelayList]) && !c.hasRequired(e.lists[RecipientList]) {
		pos := cfg.Pos(string(RelayList))
		if !cfg.IsSet(string(RelayList)) && cfg.IsSet(string(RecipientList)) {
			pos = cfg.Pos(string(RecipientList))
		}
		// Postfix's wording (fail_required() in smtpd_check.c), listing
		// the restrictions smtpgate implements.
		c.errs = append(c.errs, fmt.Errorf("%s: in parameter %s or %s, specify at least one working instance of: %s",
			pos, RelayList, RecipientList, orList(required())))
	}
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	// From here on, access table values are compiled on first use.
	rc := *c
	rc.runtime = true
	e.values.compile = func(value string) (*List, bool) {
		vc := rc
		vc.errs = nil
		l := &List{Name: value}
		l.Items = vc.items("", maincf.SplitList(value), nil)
		return l, len(vc.errs) == 0
	}
	e.planAll()
	if err := e.relayCheck(func(k ListKind) string { return cfg.Pos(string(k)).String() }); err != nil {
		return nil, err
	}
	return e, nil
}

// maps opens the tables of a table-list parameter.
func (c *compiler) maps(param string) maps {
	m := maps{param: param}
	for _, spec := range c.cfg.List(param) {
		if t := c.table(param, spec); t != nil {
			m.tables = append(m.tables, t)
		}
	}
	return m
}

// table opens a table once.
func (c *compiler) table(param, spec string) table.Table {
	if t, ok := c.tables[spec]; ok {
		return t
	}
	if c.runtime {
		c.errs = append(c.errs, fmt.Errorf("table %s named at run time", spec))
		return nil
	}
	t, err := c.opts.OpenTable(spec)
	if err != nil {
		if param == "" {
			c.errs = append(c.errs, err)
		} else {
			c.errs = append(c.errs, c.cfg.Errorf(param, "%v", err))
		}
		return nil
	}
	c.tables[spec] = t
	return t
}

// accessTable opens a table used as an access map and checks its
// entries: actions smtpgate cannot honour, lookup tables and unknown
// restrictions in values are configuration errors, reported at the entry.
func (c *compiler) accessTable(param, spec string) table.Table {
	_, seen := c.tables[spec]
	t := c.table(param, spec)
	if t == nil || seen {
		return t
	}
	table.Range(t, func(_, value string, at table.At) bool {
		c.checkAccessValue(spec, value, at)
		return true
	})
	return t
}

// checkAccessValue reports an access table entry whose action smtpgate
// cannot honour. It allocates nothing for the common actions: a table
// may have a million entries.
func (c *compiler) checkAccessValue(spec, value string, at table.At) {
	v := strings.TrimSpace(value)
	cmd := v
	if i := strings.IndexFunc(v, unicode.IsSpace); i >= 0 {
		cmd = v[:i]
	}
	upper := strings.ToUpper(cmd)
	switch {
	case strings.Contains(v, "$"):
		// A regexp substitution: judged when it is looked up.
	case queueActions[upper]:
		c.errs = append(c.errs, fmt.Errorf("%s: %s: action %s needs a mail queue, and smtpgate has none; "+
			"let the next hop do it (e.g. a header_checks or access rule in the Postfix behind smtpgate)", at, spec, upper))
	case knownAction(upper, v):
	case strings.Contains(v, ":"):
		c.errs = append(c.errs, fmt.Errorf("%s: %s: entry %q names a lookup table; define a restriction class and name it instead", at, spec, v))
	default:
		vc := *c
		vc.errs = nil
		vc.items("", maincf.SplitList(v), nil)
		for _, err := range vc.errs {
			c.errs = append(c.errs, fmt.Errorf("%s: %s: entry %q: %w", at, spec, v, err))
		}
	}
}

// knownAction reports an access(5) action word (upper case) of value.
func knownAction(upper, value string) bool {
	switch upper {
	case "OK", "RELAY", "REJECT", "DEFER", "DUNNO", "WARN", "DISCARD", "DEFER_IF_PERMIT", "DEFER_IF_REJECT", "PREPEND":
		return true
	}
	if mailname.AllDigits(value) {
		return true
	}
	return len(upper) == 3 && (upper[0] == '4' || upper[0] == '5') && mailname.AllDigits(upper[1:3])
}

// required returns the restrictions of which the relay or the recipient
// list must hold one, so that an empty-handed evaluation cannot relay
// (rcpt_required in smtpd_check.c; check_relay_domains is gone from
// Postfix).
func required() []string {
	return []string{"reject_unauth_destination", "defer_unauth_destination", "reject", "defer", "defer_if_permit"}
}

func (c *compiler) hasRequired(l *List) bool {
	if l == nil {
		return false
	}
	for _, r := range l.Items {
		if slices.Contains(required(), r.Name()) {
			return true
		}
		if cl, ok := r.(class); ok && c.hasRequired(cl.list) {
			return true
		}
	}
	return false
}

func (c *compiler) code(name string) int {
	n, err := strconv.Atoi(c.cfg.Get(name))
	if err != nil {
		c.errs = append(c.errs, c.cfg.Errorf(name, "want a reply code, got %q", c.cfg.Get(name)))
	}
	return n
}

// list compiles the restriction list held by parameter name; stack is the
// chain of classes being compiled, to catch loops.
func (c *compiler) list(name string, stack []string) *List {
	return &List{Name: name, Items: c.items(name, c.cfg.List(name), stack)}
}

// items compiles the words of a restriction list; param is the parameter
// errors are reported against ("" for a table value).
func (c *compiler) items(param string, words []string, stack []string) []Restriction {
	var out []Restriction
	saved := c.param
	c.param = param
	defer func() { c.param = saved }()
	errorf := func(format string, args ...any) {
		if param == "" {
			c.errs = append(c.errs, fmt.Errorf(format, args...))
			return
		}
		c.errs = append(c.errs, c.cfg.Errorf(param, format, args...))
	}
	for i := 0; i < len(words); i++ {
		item := words[i]
		lower := strings.ToLower(item)
		if lower == "check_rate_limit" {
			if i+1 == len(words) {
				errorf("restriction check_rate_limit needs the name of a limit of smtpgate_rate_limits after it")
				continue
			}
			i++
			if r := c.compileRateLimit(errorf, words[i]); r != nil {
				out = append(out, r)
			}
			continue
		}
		if rest, ok := strings.CutPrefix(lower, "check_policy_service"); ok && (rest == "" || strings.HasPrefix(strings.TrimSpace(rest), "{")) {
			if rest != "" {
				// "check_policy_service { inet:..., timeout=... }" comes
				// as one element: split it again.
				words = append(words[:i+1], append([]string{strings.TrimSpace(item[len("check_policy_service"):])}, words[i+1:]...)...)
			}
			if i+1 == len(words) {
				errorf("restriction check_policy_service needs inet:host:port, unix:/path or { ... } after it")
				continue
			}
			i++
			if c.runtime {
				errorf("check_policy_service inside an access table value")
				continue
			}
			p, err := parsePolicyService(words[i], c.cfg.Get)
			if err != nil {
				errorf("%v", err)
				continue
			}
			p.env = c.env
			out = append(out, p)
			continue
		}
		if target, ok := accessRestrictions[lower]; ok {
			if i+1 == len(words) || !strings.Contains(words[i+1], ":") {
				errorf("restriction %s needs a lookup table (type:name) after it", lower)
				continue
			}
			i++
			if t := c.accessTable(param, words[i]); t != nil {
				out = append(out, accessMap{name: lower, spec: words[i], tbl: t, target: target, env: c.env})
			}
			continue
		}
		if spec, ok := serverAccessRestrictions[lower]; ok {
			if i+1 == len(words) || !strings.Contains(words[i+1], ":") {
				errorf("restriction %s needs a lookup table (type:name) after it", lower)
				continue
			}
			i++
			if c.opts.DNS == nil {
				errorf("%s", needsResolver(lower))
				continue
			}
			if t := c.accessTable(param, words[i]); t != nil {
				out = append(out, serverAccess{accessMap: accessMap{name: lower, spec: words[i], tbl: t, target: spec.target, env: c.env}, qtype: spec.qtype, dns: c.opts.DNS})
			}
			continue
		}
		if _, ok := dnsxlRestrictions[lower]; ok {
			if i+1 == len(words) || strings.Contains(words[i+1], ":") || !strings.Contains(words[i+1], ".") {
				errorf("restriction %s needs a domain name after it", lower)
				continue
			}
			i++
			if r := c.dnsxl(errorf, lower, words[i]); r != nil {
				out = append(out, r)
			}
			continue
		}
		if r := c.restriction(errorf, item, stack); r != nil {
			out = append(out, r)
		}
	}
	return out
}

// class compiles (once) the restriction class name.
func (c *compiler) class(name string, stack []string) *List {
	if slices.Contains(stack, name) {
		c.errs = append(c.errs, c.cfg.Errorf(name, "restriction class %s refers to itself (%s)", name, strings.Join(append(stack, name), " -> ")))
		return nil
	}
	if l, ok := c.classes[name]; ok {
		return l
	}
	if c.runtime {
		return nil
	}
	if len(c.cfg.List(name)) == 0 {
		c.errs = append(c.errs, c.cfg.Errorf("smtpd_restriction_classes", "restriction class `%s' needs a definition", name))
		c.classes[name] = nil
		return nil
	}
	l := c.list(name, append(stack, name))
	c.classes[name] = l
	return l
}

// restriction builds one list element, or records why it cannot.
func (c *compiler) restriction(errorf func(string, ...any), item string, stack []string) Restriction {
	switch name := strings.ToLower(item); name {
	case "permit":
		return permitAll()
	case "reject":
		return rejectAll()
	case "defer":
		return deferAll()
	case "warn_if_reject":
		return warnIfReject{}
	case "defer_if_permit":
		return deferIfRestriction{permit: true}
	case "defer_if_reject":
		return deferIfRestriction{}
	case "reject_unauth_pipelining":
		return unauthPipelining{}
	case "check_greylist":
		if c.opts.Greylist == nil {
			p, err := GreylistParams(c.cfg)
			if err != nil {
				c.errs = append(c.errs, err)
				return nil
			}
			c.opts.Greylist = greylist.NewMemory(p, 1000000)
		}
		now := c.opts.Now
		if now == nil {
			now = time.Now
		}
		return checkGreylist{store: c.opts.Greylist, nets: c.nets, now: now}
	case "reject_dnsbl_score":
		return c.compileDNSBLScore(errorf)
	case "permit_mynetworks":
		return myNetworks{c.nets}
	case "permit_sasl_authenticated":
		return saslAuthenticated{}
	case "permit_auth_destination":
		return permitAuthDestination(c.dest)
	case "reject_unauth_destination":
		return rejectUnauthDestination(c.dest)
	case "defer_unauth_destination":
		return deferUnauthDestination(c.dest)
	case "reject_invalid_helo_hostname", "reject_invalid_hostname":
		return heloCheck{name: name}
	case "reject_non_fqdn_helo_hostname", "reject_non_fqdn_hostname":
		return heloCheck{name: name, fqdn: true}
	case "reject_non_fqdn_sender":
		return nonFQDNAddress{name: name}
	case "reject_non_fqdn_recipient":
		return nonFQDNAddress{name: name, recipient: true}
	case "reject_unlisted_sender":
		return unlisted{name: name, sender: true, valid: c.valid}
	case "reject_unlisted_recipient", "check_recipient_maps":
		return unlisted{name: name, valid: c.valid}
	case "reject_authenticated_sender_login_mismatch", "reject_unauthenticated_sender_login_mismatch",
		"reject_known_sender_login_mismatch", "reject_sender_login_mismatch":
		if c.logins.empty() {
			errorf("restriction %s needs smtpd_sender_login_maps", name)
			return nil
		}
		r := senderLogin{name: name, owners: c.logins, delimiter: c.env.delimiter}
		switch name {
		case "reject_authenticated_sender_login_mismatch":
			r.auth = true
		case "reject_unauthenticated_sender_login_mismatch":
			r.unauth = true
		case "reject_known_sender_login_mismatch":
			r.auth, r.unauth, r.allowUnknown = true, true, true
		default:
			r.auth, r.unauth = true, true
		}
		return r
	}
	if r, ok := c.dnsRestriction(errorf, strings.ToLower(item)); ok {
		return r
	}
	// Postfix looks up classes after its built-in names.
	if c.cfg.IsClass(item) {
		if l := c.class(item, stack); l != nil {
			return class{l}
		}
		if c.runtime {
			errorf("restriction class %q is not usable", item)
		}
		return nil
	}
	switch {
	case notYet(strings.ToLower(item)):
		errorf("restriction %q is not implemented yet", item)
	case strings.Contains(item, ":"):
		if c.runtime {
			errorf("lookup table %q inside an access table value", item)
			return nil
		}
		if t := c.accessTable(c.param, item); t != nil {
			return bareTable{spec: item, tbl: t, env: c.env}
		}
	default:
		errorf("unknown restriction %q", item)
	}
	return nil
}

// notYet reports Postfix restrictions smtpgate will implement but does not
// yet: a configuration using them is refused rather than half-understood.
func notYet(name string) bool {
	switch name {
	case "check_ccert_access",
		"reject_unverified_sender", "reject_unverified_recipient",
		"reject_multi_recipient_bounce",
		"permit_tls_clientcerts", "permit_tls_all_clientcerts", "permit_mx_backup",
		"permit_inet_interfaces", "reject_plaintext_session", "sleep",
		"check_relay_domains":
		return true
	}
	return false
}

// orList writes "a, b, c or d".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// GreylistParams reads the smtpgate_greylist_* parameters.
func GreylistParams(cfg *maincf.Config) (greylist.Params, error) {
	var errs []error
	d := func(name string) time.Duration {
		v, err := maincf.ParseDuration(cfg.Get(name))
		if err != nil || v <= 0 {
			errs = append(errs, cfg.Errorf(name, "want a positive time"))
		}
		return v
	}
	n, err := strconv.Atoi(cfg.Get("smtpgate_greylist_auto_allowlist_clients"))
	if err != nil || n < 0 {
		errs = append(errs, cfg.Errorf("smtpgate_greylist_auto_allowlist_clients", "want a whole number"))
	}
	p := greylist.Params{Delay: d("smtpgate_greylist_delay"), RetryWindow: d("smtpgate_greylist_retry_window"),
		MaxAge: d("smtpgate_greylist_max_age"), AutoAllowlist: n}
	return p, errors.Join(errs...)
}
