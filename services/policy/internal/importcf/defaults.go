package importcf

import (
	"slices"
	"strconv"
	"strings"
)

// A parameter main.cf does not set has Postfix's default in Postfix and
// smtpgate's in smtpgate. Where the two differ and the difference shows,
// the import says so. TestDefaultsAgree compares every Postfix parameter
// of smtpgate's catalogue with postconf -d, so that a default changed in
// smtpgate is either the same as Postfix's or listed here.

// changedDefault is a parameter whose smtpgate default differs from
// Postfix 3.7's (with compatibility_level 3.6, Debian's).
type changedDefault struct {
	name string
	// postfix is Postfix's default as the report shows it.
	postfix string
	// change says what changes when main.cf does not set it; "" for a
	// difference that does not show (it is not reported).
	change string
	// applies says whether the difference shows for this configuration;
	// nil: always.
	applies func(r *Report) bool
}

var changedDefaults = []changedDefault{
	{name: "strict_smtputf8", postfix: "no",
		change: "smtpgate's default is yes: MAIL FROM or RCPT TO with a non-ASCII address and no SMTPUTF8 gets " +
			"\"553 5.6.7 Must declare SMTPUTF8 to send unicode address\", which Postfix accepts " +
			"(docs/postfix-differences.md D13); strict_smtputf8 = no keeps Postfix's behaviour"},
	{name: "disable_vrfy_command", postfix: "no",
		change: "smtpgate's default is yes: VRFY gets \"502 5.5.1 VRFY command is disabled\" where Postfix answers it " +
			"(docs/postfix-differences.md D3); disable_vrfy_command = no keeps Postfix's behaviour"},
	{name: "smtpd_forbid_bare_newline", postfix: "no",
		change: "smtpgate's default is normalize: a line ending in a bare LF is taken as ending in CRLF, but only " +
			"<CR><LF>.<CR><LF> ends DATA, where Postfix 3.7 also ends it at <LF>.<LF>; a bare CR ends a line " +
			"(docs/postfix-differences.md D8); smtpd_forbid_bare_newline = no keeps Postfix 3.7's behaviour for bare LF"},
	{name: "mynetworks", postfix: "the subnets of the machine's interfaces (mynetworks_style = subnet)",
		change: "smtpgate's default is 127.0.0.0/8 [::1]/128: clients on the machine's other subnets, which Postfix lets " +
			"relay (permit_mynetworks), are strangers to smtpgate; set mynetworks to those networks to keep them trusted",
		applies: func(r *Report) bool { return r.lookup("mynetworks_style") == nil }},
	{name: "virtual_mailbox_domains", postfix: "$virtual_mailbox_maps",
		change: "Postfix takes the domains of virtual_mailbox_maps as virtual mailbox domains; smtpgate's default is empty, " +
			"so mail for them is not local to smtpgate and strangers' mail for them is refused (Relay access denied); " +
			"set virtual_mailbox_domains to those domains",
		applies: func(r *Report) bool { s := r.lookup("virtual_mailbox_maps"); return s != nil && s.Value != "" }},
	{name: "virtual_alias_domains", postfix: "$virtual_alias_maps",
		change: "Postfix takes the domains of virtual_alias_maps as virtual alias domains; smtpgate's default is empty, " +
			"so strangers' mail for them is refused (Relay access denied); set virtual_alias_domains to those domains",
		applies: func(r *Report) bool { s := r.lookup("virtual_alias_maps"); return s != nil && s.Value != "" }},
	{name: "smtpd_sasl_security_options", postfix: "noanonymous",
		change: "smtpgate's default adds noplaintext: without TLS it offers no PLAIN or LOGIN, which Postfix offers, " +
			"so a client that logs in without STARTTLS cannot; smtpd_sasl_security_options = noanonymous keeps Postfix's behaviour",
		applies: (*Report).plaintextAuth},
	// Differences that do not show.
	{name: "mail_name", postfix: "Postfix"},     // the name in the greeting: smtpgate names itself
	{name: "process_name", postfix: "postconf"}, // read-only, the program's name
	{name: "smtputf8_enable", postfix: "no (compatibility_level below 1)",
		change:  "smtpgate's default is yes (Postfix's from compatibility_level 1): EHLO offers SMTPUTF8, which Postfix does not",
		applies: func(r *Report) bool { return r.compatBelow(1) }},
	{name: "smtpd_relay_restrictions", postfix: "empty (compatibility_level below 1): relay control is smtpd_recipient_restrictions' alone",
		change: "smtpgate's default is Postfix's from compatibility_level 1, permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination: " +
			"a stranger's relay attempt gets 454 4.7.1 Relay access denied (a temporary refusal) before smtpd_recipient_restrictions is asked",
		applies: func(r *Report) bool { return r.compatBelow(1) }},
	{name: "relay_domains", postfix: "$mydestination (compatibility_level below 2)",
		change: "smtpgate's default is empty (Postfix's from compatibility_level 2): mail from strangers for subdomains of the " +
			"mydestination domains, which Postfix relays, is refused (Relay access denied)",
		applies: func(r *Report) bool { return r.compatBelow(2) }},
	{name: "smtpd_sasl_type", postfix: "cyrus"},                // judged by sasl
	{name: "local_recipient_maps", postfix: ""},                // judged by localRecipients
	{name: "virtual_alias_maps", postfix: ""},                  // $virtual_maps, which is empty unless set
	{name: "smtpd_sasl_tls_security_options", postfix: ""},     // noanonymous with TLS in both
	{name: "smtpd_client_event_limit_exceptions", postfix: ""}, // $mynetworks in both
	{name: "syslog_name", postfix: ""},                         // postfix in both (no multi_instance_name in smtpgate)
}

// defaults reports the parameters main.cf leaves to a default that
// differs in smtpgate.
func (r *Report) defaults() {
	for _, d := range changedDefaults {
		if d.change == "" || r.lookup(d.name) != nil || d.applies != nil && !d.applies(r) {
			continue
		}
		s := r.defaultSetting(d.name, BehavesDifferently, d.change)
		s.Value = d.postfix
	}
}

// plaintextAuth reports whether a listener offers AUTH without TLS in
// Postfix (SASL on, smtpd_tls_auth_only off, not wrapped in TLS).
func (r *Report) plaintextAuth() bool {
	get := func(name string, over []*Setting) string {
		v, _ := r.effective(name)
		for _, o := range over {
			if o.Name == name {
				v = o.Value
			}
		}
		return strings.ToLower(v)
	}
	contexts := [][]*Setting{nil}
	if r.MasterPath != "" {
		contexts = nil
		for _, l := range r.listeners {
			contexts = append(contexts, l.all)
		}
	}
	for _, over := range contexts {
		if slices.ContainsFunc(over, func(o *Setting) bool { return o.Name == "smtpd_sasl_security_options" }) {
			continue // the listener sets its own
		}
		if en := r.enabler(over); en != nil && en.Verdict == CannotHonour {
			continue // AUTH is not written there
		}
		if get("smtpd_sasl_auth_enable", over) == "yes" && get("smtpd_tls_auth_only", over) != "yes" && get("smtpd_tls_wrappermode", over) != "yes" {
			return true
		}
	}
	return false
}

// compatBelow reports whether main.cf's compatibility_level (Postfix's
// default: 0) is below level.
func (r *Report) compatBelow(level int) bool {
	v, _ := r.effective("compatibility_level")
	major, _, _ := strings.Cut(strings.TrimSpace(v), ".")
	n, err := strconv.Atoi(major)
	return err != nil || n < level
}

// enabler is the setting that decides smtpd_sasl_auth_enable for a
// listener with these overrides (nil: Postfix's default).
func (r *Report) enabler(over []*Setting) *Setting {
	en := r.lookup("smtpd_sasl_auth_enable")
	for _, o := range over {
		if o.Name == "smtpd_sasl_auth_enable" {
			en = o
		}
	}
	return en
}

// protocols judges inet_protocols: smtpgate's listeners without an
// address listen on every IPv4 and IPv6 address, whatever it says.
func (r *Report) protocols() {
	s := r.lookup("inet_protocols")
	if s == nil || s.Verdict != Ignored {
		return
	}
	v := map[string]bool{}
	for _, w := range strings.Fields(strings.ReplaceAll(strings.ToLower(s.Value), ",", " ")) {
		v[w] = true
	}
	if v["all"] || v["ipv4"] && v["ipv6"] {
		return
	}
	wildcard := r.MasterPath == "" && r.lookup("inet_interfaces") == nil
	for _, l := range r.listeners {
		for _, a := range l.addrs {
			if strings.HasPrefix(a, ":") {
				wildcard = true
			}
		}
	}
	if !wildcard {
		return
	}
	s.Verdict = BehavesDifferently
	s.Reason = "Postfix accepts connections over " + s.Value + " only; smtpgate's listeners without an address (:port) accept IPv4 and IPv6 " +
		"clients alike: give each master.cf listener the address it should listen on (host:port)"
}
