package restriction

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/services/policy/internal/matchlist"
)

// compiler holds what restrictions are built from.
type compiler struct {
	cfg     *maincf.Config
	dest    *Destinations
	nets    *matchlist.Networks
	classes map[string]*List
	errs    []error
}

// Compile builds the engine for one configuration view. Every problem is
// reported, joined, each with the file:line and parameter it comes from:
// an unknown restriction name, a restriction class without a definition or
// referring to itself, a bad mynetworks or domain list, and Postfix's
// start-up safety check (no restriction in the relay or recipient list
// that refuses mail by default).
func Compile(cfg *maincf.Config) (*Engine, error) {
	c := &compiler{cfg: cfg, dest: &Destinations{}, classes: map[string]*List{}}
	e := &Engine{lists: map[ListKind]*List{}, delayReject: cfg.Bool("smtpd_delay_reject")}
	e.codes = Codes{
		Reject:     c.code("reject_code"),
		Defer:      c.code("defer_code"),
		Relay:      c.code("relay_domains_reject_code"),
		SoftBounce: cfg.Bool("soft_bounce"),
	}

	var err error
	if c.nets, err = matchlist.ParseNetworks(cfg.List("mynetworks")); err != nil {
		c.errs = append(c.errs, cfg.Errorf("mynetworks", "%v", err))
	}
	for _, name := range []string{"mydestination", "virtual_alias_domains", "virtual_mailbox_domains"} {
		d, err := matchlist.ParseDomains(cfg.List(name), false)
		if err != nil {
			c.errs = append(c.errs, cfg.Errorf(name, "%v", err))
			continue
		}
		c.dest.Final = append(c.dest.Final, d)
	}
	// relay_domains is in Postfix's parent_domain_matches_subdomains by
	// default: "example.com" also covers its subdomains.
	if c.dest.Relay, err = matchlist.ParseDomains(cfg.List("relay_domains"), true); err != nil {
		c.errs = append(c.errs, cfg.Errorf("relay_domains", "%v", err))
	}

	for _, name := range cfg.List("smtpd_restriction_classes") {
		c.class(name, nil)
	}
	for _, kind := range allLists() {
		e.lists[kind] = c.list(string(kind), nil)
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
	return e, nil
}

// required returns the restrictions of which the relay or the recipient
// list must hold one, so that an empty-handed evaluation cannot relay
// (rcpt_required in smtpd_check.c; defer_if_permit joins when implemented,
// check_relay_domains is gone from Postfix).
func required() []string {
	return []string{"reject_unauth_destination", "defer_unauth_destination", "reject", "defer"}
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
	l := &List{Name: name}
	for _, item := range c.cfg.List(name) {
		if r := c.restriction(name, item, stack); r != nil {
			l.Items = append(l.Items, r)
		}
	}
	return l
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
func (c *compiler) restriction(list, item string, stack []string) Restriction {
	switch strings.ToLower(item) {
	case "permit":
		return permitAll()
	case "reject":
		return rejectAll()
	case "defer":
		return deferAll()
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
	}
	// Postfix looks up classes after its built-in names.
	if c.cfg.IsClass(item) {
		if l := c.class(item, stack); l != nil {
			return class{l}
		}
		return nil
	}
	switch {
	case notYet(strings.ToLower(item)):
		c.errs = append(c.errs, c.cfg.Errorf(list, "restriction %q is not implemented yet", item))
	case strings.Contains(item, ":"):
		c.errs = append(c.errs, c.cfg.Errorf(list, "restriction %q: access tables are not implemented yet", item))
	default:
		c.errs = append(c.errs, c.cfg.Errorf(list, "unknown restriction %q", item))
	}
	return nil
}

// notYet reports Postfix restrictions smtpgate will implement but does not
// yet: a configuration using them is refused rather than half-understood.
func notYet(name string) bool {
	switch name {
	case "check_client_access", "check_reverse_client_hostname_access",
		"check_helo_access", "check_sender_access", "check_recipient_access",
		"check_etrn_access", "check_ccert_access", "check_sasl_access",
		"check_client_mx_access", "check_client_ns_access", "check_helo_mx_access",
		"check_helo_ns_access", "check_sender_mx_access", "check_sender_ns_access",
		"check_recipient_mx_access", "check_recipient_ns_access",
		"check_policy_service", "warn_if_reject", "defer_if_permit", "defer_if_reject",
		"reject_rbl_client", "reject_rhsbl_client", "reject_rhsbl_reverse_client",
		"reject_rhsbl_helo", "reject_rhsbl_sender", "reject_rhsbl_recipient",
		"permit_dnswl_client", "permit_rhswl_client",
		"reject_unknown_client_hostname", "reject_unknown_reverse_client_hostname",
		"reject_unknown_helo_hostname", "reject_invalid_helo_hostname",
		"reject_non_fqdn_helo_hostname", "reject_unknown_sender_domain",
		"reject_unknown_recipient_domain", "reject_non_fqdn_sender",
		"reject_non_fqdn_recipient", "reject_unlisted_sender", "reject_unlisted_recipient",
		"reject_unverified_sender", "reject_unverified_recipient",
		"reject_unauth_pipelining", "reject_multi_recipient_bounce",
		"reject_sender_login_mismatch", "reject_authenticated_sender_login_mismatch",
		"reject_known_sender_login_mismatch", "reject_unauthenticated_sender_login_mismatch",
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
