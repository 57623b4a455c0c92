package restriction

import (
	"context"
	"strings"

	"github.com/smtpgate/smtpgate/pkg/mailname"
	"github.com/smtpgate/smtpgate/services/policy/internal/address"
)

// heloCheck is reject_invalid_helo_hostname and
// reject_non_fqdn_helo_hostname (and their old names).
type heloCheck struct {
	name string
	fqdn bool
}

func (r heloCheck) Name() string { return r.name }

// heloLiteral judges a HELO address literal "[...]" as Postfix's
// reject_invalid_hostaddr() does; ok is false for a HELO that is not one.
func heloLiteral(in *Input, helo string) (o Outcome, ok bool) {
	if helo == "" || helo[0] != '[' {
		return Outcome{}, false
	}
	inner := helo[1:]
	if n := len(inner); n > 1 && inner[n-1] == ']' {
		inner = inner[:n-1]
	}
	if !mailname.ValidMailhostAddr(inner) {
		return in.Refuse(in.codes.InvalidHostname, "5.5.2", "<%s>: %s rejected: invalid ip address", helo, classHELO), true
	}
	return Outcome{}, true
}

func (r heloCheck) Eval(_ context.Context, in *Input) (Outcome, error) {
	helo := in.Facts.HELO
	if helo == "" {
		return Outcome{}, nil
	}
	if o, ok := heloLiteral(in, helo); ok {
		return o, nil
	}
	name := mailname.TruncateDot(helo)
	if r.fqdn {
		if !mailname.ValidHostname(name) || !strings.Contains(name, ".") {
			return in.Refuse(in.codes.NonFQDN, "5.5.2", "<%s>: %s rejected: need fully-qualified hostname", helo, classHELO), nil
		}
		return Outcome{}, nil
	}
	if !mailname.ValidHostname(name) && !mailname.ValidHostAddr(name) {
		return in.Refuse(in.codes.InvalidHostname, "5.5.2", "<%s>: %s rejected: Invalid name", helo, classHELO), nil
	}
	return Outcome{}, nil
}

// nonFQDNAddress is reject_non_fqdn_sender and reject_non_fqdn_recipient
// (reject_non_fqdn_address()): the domain must be a hostname with a dot;
// address literals pass.
type nonFQDNAddress struct {
	name      string
	recipient bool
}

func (r nonFQDNAddress) Name() string { return r.name }
func (r nonFQDNAddress) Eval(_ context.Context, in *Input) (Outcome, error) {
	f := in.Facts
	addr, class := f.Sender, classSender
	if r.recipient {
		addr, class = f.Recipient, classRecipient
	} else if !f.InTransaction {
		return Outcome{}, nil
	}
	if addr == "" {
		return Outcome{}, nil
	}
	domain := ""
	if a, err := address.Parse(addr); err == nil {
		domain = a.Domain
	} else if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		domain = addr[i+1:]
	}
	if strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]") {
		return Outcome{}, nil
	}
	d := mailname.TruncateDot(domain)
	if d == "" || !mailname.ValidUTF8Hostname(d) || !strings.Contains(d, ".") {
		return in.Refuse(in.codes.NonFQDN, "4.5.2", "<%s>: %s rejected: need fully-qualified address", addr, class), nil
	}
	return Outcome{}, nil
}

// unauthPipelining is reject_unauth_pipelining: the client sent commands
// ahead of a reply where RFC 2920 does not allow it.
type unauthPipelining struct{}

func (unauthPipelining) Name() string { return "reject_unauth_pipelining" }
func (unauthPipelining) Eval(_ context.Context, in *Input) (Outcome, error) {
	if !in.Facts.UnauthPipelining {
		return Outcome{}, nil
	}
	return in.Refuse(503, "5.5.0", "<%s>: %s rejected: Improper use of SMTP command pipelining", in.Name(), in.Class), nil
}

// deferIfRestriction is defer_if_permit and defer_if_reject as
// restrictions: 450 4.7.0 "... defer_if_permit requested".
type deferIfRestriction struct{ permit bool }

func (r deferIfRestriction) Name() string {
	if r.permit {
		return "defer_if_permit"
	}
	return "defer_if_reject"
}

func (r deferIfRestriction) Eval(_ context.Context, in *Input) (Outcome, error) {
	slot := &in.st.deferIfReject
	if r.permit {
		slot = &in.st.deferIfPermit
	}
	in.deferIf(slot, 450, "4.7.0", "<%s>: %s rejected: %s requested", in.Name(), in.Class, r.Name())
	return Outcome{}, nil
}
