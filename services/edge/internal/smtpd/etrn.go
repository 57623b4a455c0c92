package smtpd

import (
	"context"
	"net/netip"
	"strings"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// etrn handles ETRN (RFC 1985) with Postfix's checks and replies: HELO
// first when smtpd_helo_required, not in a transaction, one argument (a
// leading "@" or "#" is dropped; a host name or an address literal), then
// smtpd_etrn_restrictions through policy. The edge has no queue, which is
// what Postfix says of a domain that is not in fast_flush_domains (empty
// by default since relay_domains is): 459 "<domain>: service
// unavailable".
func (s *session) etrn(ctx context.Context, arg string) reply.Reply {
	switch {
	case !s.helo.greeted && s.l.HELORequired:
		return reply.ETRNNeedHELO
	case s.tx != nil:
		return reply.ETRNInMail
	}
	f := strings.Fields(arg)
	if len(f) != 1 {
		return reply.ETRNSyntax
	}
	domain := f[0]
	if domain[0] == '@' || domain[0] == '#' {
		domain = domain[1:]
	}
	if !validETRNDomain(domain) {
		return reply.ETRNBadDomain
	}
	s.etrnDomain = domain
	defer func() { s.etrnDomain = "" }()
	if r, _, ok := s.askPolicy(ctx, policyv1.Stage_STAGE_ETRN, nil, "<"+domain+">"); !ok {
		return r
	}
	s.log.InfoContext(ctx, "reject: ETRN "+domain+"... from "+s.namaddr()+": no queue to flush (fast_flush_domains is empty)")
	return reply.ETRNUnavailable(domain)
}

// validETRNDomain: Postfix's valid_hostname, or an address literal
// ("[192.0.2.1]", "[IPv6:2001:db8::1]").
func validETRNDomain(d string) bool {
	if inner, ok := strings.CutPrefix(d, "["); ok {
		inner, ok = strings.CutSuffix(inner, "]")
		if !ok {
			return false
		}
		if len(inner) > 5 && strings.EqualFold(inner[:5], "IPv6:") {
			ip, err := netip.ParseAddr(inner[5:])
			return err == nil && ip.Is6() && ip.Zone() == ""
		}
		ip, err := netip.ParseAddr(inner)
		return err == nil && ip.Is4()
	}
	if d == "" || len(d) > 255 {
		return false
	}
	digits := true
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_':
				digits = false
			default:
				return false
			}
		}
	}
	return !digits
}
