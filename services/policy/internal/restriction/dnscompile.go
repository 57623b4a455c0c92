package restriction

import (
	"strings"

	"github.com/smtpgate/smtpgate/pkg/mailname"
)

// Compiling the DNS-based restrictions.

// dnsxl compiles a DNS list restriction and its "domain[=filter]".
func (c *compiler) dnsxl(errorf func(string, ...any), name, arg string) Restriction {
	if c.opts.DNS == nil {
		errorf("%s", needsResolver(name))
		return nil
	}
	spec := dnsxlRestrictions[name]
	domain, filter, hasFilter := strings.Cut(arg, "=")
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	if !mailname.ValidHostname(domain) {
		errorf("restriction %s: %q is not a domain name", name, domain)
		return nil
	}
	r := dnsxl{name: name, full: name + " " + arg, arg: arg, domain: domain, target: spec.target, allow: spec.allow, class: spec.class,
		dns: c.opts.DNS, dest: c.dest, code: c.code("maps_rbl_reject_code")}
	if hasFilter {
		f, err := parseIPFilter(filter)
		if err != nil {
			errorf("restriction %s %s: %v", name, arg, err)
			return nil
		}
		r.filter = f
	}
	if !spec.allow {
		if c.rblReplies == nil {
			m := c.maps("rbl_reply_maps")
			c.rblReplies = &m
		}
		r.reply = *c.rblReplies
	}
	return r
}

// dnsRestriction compiles the DNS restrictions without an argument; ok
// is false for other names.
func (c *compiler) dnsRestriction(errorf func(string, ...any), name string) (Restriction, bool) {
	switch name {
	case "reject_unknown_client_hostname", "reject_unknown_client", "reject_unknown_reverse_client_hostname",
		"reject_unknown_helo_hostname", "reject_unknown_hostname",
		"reject_unknown_sender_domain", "reject_unknown_recipient_domain", "check_spf":
	default:
		return nil, false
	}
	if c.opts.DNS == nil {
		errorf("%s", needsResolver(name))
		return nil, true
	}
	r := c.opts.DNS
	switch name {
	case "reject_unknown_client_hostname", "reject_unknown_client":
		return unknownClient{name: name, dns: r, code: c.code("unknown_client_reject_code")}, true
	case "reject_unknown_reverse_client_hostname":
		return unknownClient{name: name, reverse: true, dns: r, code: c.code("unknown_client_reject_code")}, true
	case "reject_unknown_helo_hostname", "reject_unknown_hostname":
		return unknownHELO{name: name, dns: r, code: c.code("unknown_hostname_reject_code"),
			action: c.tempfail("unknown_helo_hostname_tempfail_action")}, true
	case "reject_unknown_sender_domain", "reject_unknown_recipient_domain":
		return unknownDomain{name: name, recipient: name == "reject_unknown_recipient_domain", dns: r, dest: c.dest,
			code: c.code("unknown_address_reject_code"), action: c.tempfail("unknown_address_tempfail_action")}, true
	}
	s := checkSPF{dns: r, receiver: c.cfg.Get("myhostname"), heloAlways: c.cfg.Get("smtpgate_spf_helo_identity") == "always"}
	for _, a := range []struct {
		param string
		to    *spfAction
	}{
		{"smtpgate_spf_fail_action", &s.fail},
		{"smtpgate_spf_softfail_action", &s.softFail},
		{"smtpgate_spf_temperror_action", &s.tempError},
		{"smtpgate_spf_permerror_action", &s.permError},
	} {
		v, err := parseSPFAction(strings.ToLower(c.cfg.Get(a.param)))
		if err != nil {
			c.errs = append(c.errs, c.cfg.Errorf(a.param, "%v", err))
		}
		*a.to = v
	}
	return s, true
}

// tempfail reads an *_tempfail_action parameter.
func (c *compiler) tempfail(param string) tempfailAction {
	switch v := strings.ToLower(c.cfg.Get(param)); v {
	case "defer_if_permit":
		return tempfailDeferIfPermit
	case "defer":
		return tempfailDefer
	default:
		c.errs = append(c.errs, c.cfg.Errorf(param, "want defer_if_permit or defer, got %q", v))
	}
	return tempfailDeferIfPermit
}
