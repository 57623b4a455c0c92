package restriction

import (
	"context"
	"errors"
	"strings"

	"github.com/miekg/dns"

	"github.com/smtpgate/smtpgate/pkg/mailname"
	"github.com/smtpgate/smtpgate/pkg/resolver"
	"github.com/smtpgate/smtpgate/services/policy/internal/address"
)

// The "unknown" checks: reject_unknown_client_hostname,
// reject_unknown_reverse_client_hostname, reject_unknown_helo_hostname,
// reject_unknown_sender_domain and reject_unknown_recipient_domain
// (reject_unknown_client(), reject_unknown_reverse_name(),
// reject_unknown_hostname() and reject_unknown_mailhost() in
// smtpd_check.c, Postfix 3.7).

// unknownClient is reject_unknown_client_hostname (reverse = false) and
// reject_unknown_reverse_client_hostname.
type unknownClient struct {
	name    string
	reverse bool
	dns     *resolver.Resolver
	code    int // unknown_client_reject_code
}

func (r unknownClient) Name() string { return r.name }
func (r unknownClient) Eval(ctx context.Context, in *Input) (Outcome, error) {
	c := clientNamesOf(ctx, in, r.dns)
	addr := in.Facts.clientAddr()
	if r.reverse {
		if c.ReverseNameStatus == NameOK {
			return Outcome{}, nil
		}
		code := 450
		if c.ReverseNameStatus == NamePermanent {
			code = r.code
		}
		return in.Refuse(code, "4.7.1", "Client host rejected: cannot find your reverse hostname, [%s]", addr), nil
	}
	if c.NameStatus == NameOK {
		return Outcome{}, nil
	}
	code := 450
	if c.NameStatus >= NamePermanent {
		code = r.code
	}
	// RFC 7372 §3.3: 4.7.25 "reverse DNS validation failed".
	return in.Refuse(code, "4.7.25", "Client host rejected: cannot find your hostname, [%s]", addr), nil
}

// tempfailAction is unknown_helo_hostname_tempfail_action or
// unknown_address_tempfail_action: defer_if_permit, or defer at once.
type tempfailAction bool

const (
	tempfailDeferIfPermit tempfailAction = false
	tempfailDefer         tempfailAction = true
)

// tempfail applies the action to a 450 reply (DEFER_IF_PERMIT2 in
// smtpd_check.c): with warn_if_reject active, or with "defer", it is a
// refusal now.
func (a tempfailAction) tempfail(in *Input, dsn, format string, args ...any) Outcome {
	if a == tempfailDefer || in.st.warnIfReject != 0 {
		return in.Refuse(450, dsn, format, args...)
	}
	in.deferIf(&in.st.deferIfPermit, 450, dsn, format, args...)
	return Outcome{}
}

// unknownHELO is reject_unknown_helo_hostname (and its old name
// reject_unknown_hostname): the HELO name needs an A, AAAA or MX record
// (a null MX will do: it is a name, if not a mail domain).
type unknownHELO struct {
	name   string
	dns    *resolver.Resolver
	code   int // unknown_hostname_reject_code
	action tempfailAction
}

func (r unknownHELO) Name() string { return r.name }
func (r unknownHELO) Eval(ctx context.Context, in *Input) (Outcome, error) {
	helo := in.Facts.HELO
	if helo == "" {
		return Outcome{}, nil
	}
	if o, ok := heloLiteral(in, helo); ok {
		return o, nil
	}
	res := dnsNotFound
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX} {
		var err error
		if qtype == dns.TypeMX {
			_, err = lookupMX(ctx, in, r.dns, helo)
		} else {
			_, err = lookupAddrs(ctx, in, r.dns, helo, qtype)
		}
		c := classify(err)
		if c == dnsFound {
			return Outcome{}, nil
		}
		if c == dnsTemporary {
			res = dnsTemporary
		} else if errors.Is(err, resolver.ErrNotFound) && res != dnsTemporary {
			break // NXDOMAIN: no type will be found
		}
	}
	if res == dnsTemporary {
		return r.action.tempfail(in, "4.7.1", "<%s>: %s rejected: Host not found", helo, classHELO), nil
	}
	return in.Refuse(r.code, "4.7.1", "<%s>: %s rejected: Host not found", helo, classHELO), nil
}

// unknownDomain is reject_unknown_sender_domain and
// reject_unknown_recipient_domain (reject_unknown_address()): the
// domain of an address that is not a final destination here needs an MX
// record, or else an A or AAAA record; a null MX (RFC 7505) is refused
// permanently.
type unknownDomain struct {
	name      string
	recipient bool
	dns       *resolver.Resolver
	dest      *Destinations
	code      int // unknown_address_reject_code
	action    tempfailAction
}

func (r unknownDomain) Name() string { return r.name }
func (r unknownDomain) Eval(ctx context.Context, in *Input) (Outcome, error) {
	f := in.Facts
	addr, class, dsn := f.Sender, classSender, "4.1.8"
	if r.recipient {
		addr, class, dsn = f.Recipient, classRecipient, "4.1.2"
	} else if !f.InTransaction {
		return Outcome{}, nil
	}
	if addr == "" {
		return Outcome{}, nil
	}
	a, err := address.Parse(addr)
	if err != nil || !a.HasDomain || a.Literal {
		return Outcome{}, nil
	}
	domain := mailname.TruncateDot(a.Domain)
	if final, err := r.dest.final(ctx, domain); final || err != nil {
		return Outcome{}, err
	}
	res := dnsNotFound
	mx, err := lookupMX(ctx, in, r.dns, domain)
	switch c := classify(err); {
	case c == dnsFound && nullMX(mx):
		code, nullDSN := 556, "4.1.10"
		if !r.recipient {
			code, nullDSN = 550, "4.7.27"
		}
		return in.Refuse(code, nullDSN, "<%s>: %s rejected: Domain %s does not accept mail (nullMX)", addr, class, domain), nil
	case c == dnsFound:
		return Outcome{}, nil
	case c == dnsTemporary:
		res = dnsTemporary
	}
	if !errors.Is(err, resolver.ErrNotFound) {
		for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
			_, err := lookupAddrs(ctx, in, r.dns, domain, qtype)
			switch classify(err) {
			case dnsFound:
				return Outcome{}, nil
			case dnsTemporary:
				res = dnsTemporary
			}
		}
	}
	if res == dnsTemporary {
		return r.action.tempfail(in, dsn, "<%s>: %s rejected: Domain not found", addr, class), nil
	}
	return in.Refuse(r.code, dsn, "<%s>: %s rejected: Domain not found", addr, class), nil
}

// nullMX reports RFC 7505's "no mail here": a single MX record for the
// root.
func nullMX(mx []resolver.MX) bool {
	return len(mx) == 1 && (mx[0].Host == "." || mx[0].Host == "")
}

// final reports a final destination (mydestination,
// virtual_alias_domains, virtual_mailbox_domains).
func (d *Destinations) final(ctx context.Context, domain string) (bool, error) {
	domain = strings.ToLower(domain)
	for _, f := range d.Final {
		if ok, err := f.Match(ctx, domain); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}
