package restriction

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/smtpgate/smtpgate/pkg/mailname"
	"github.com/smtpgate/smtpgate/pkg/resolver"
	"github.com/smtpgate/smtpgate/services/policy/internal/address"
)

// The access checks on DNS data: check_{client,reverse_client_hostname,
// helo,sender,recipient}_{a,mx,ns}_access (check_server_access() in
// smtpd_check.c, Postfix 3.7; SMTPD_ACCESS_README). They look up, in an
// access table, the name servers (NS), mail exchangers (MX) or addresses
// (A) of a host or domain: for NS and MX first each server's name (and
// parent domains), then its addresses; for A the host's addresses only.
//
// What Postfix does, and this too:
//   - the domain is what follows the last "@"; an address literal is its
//     own MX and A server (NS: nothing to check);
//   - a domain without MX records (NXDOMAIN or NODATA) is its own MX; a
//     name without NS records has its parent domains' NS looked up; a
//     null MX (RFC 7505) ends the check;
//   - a DNS failure, temporary or not, is logged and ends the check with
//     DUNNO (never a deferral), and a server name whose addresses cannot
//     be found is skipped;
//   - at most serverAddrLimit addresses are looked up (Postfix's
//     dns_rr_list_limit): past it the check is DUNNO;
//   - an OK (or any permit) from the table is a server configuration
//     error (451 4.3.5): a DNS record must not let anyone in
//     (forbid_allowlist()).

// serverAddrLimit is Postfix's dns_rr_list_limit default, the most
// server addresses one check looks up.
const serverAddrLimit = 100

// serverAccessRestrictions maps the names of the checks to their target
// and the record type whose servers they check.
var serverAccessRestrictions = map[string]struct {
	target accessTarget
	qtype  uint16
}{
	"check_client_a_access":                   {targetClient, dns.TypeA},
	"check_client_mx_access":                  {targetClient, dns.TypeMX},
	"check_client_ns_access":                  {targetClient, dns.TypeNS},
	"check_reverse_client_hostname_a_access":  {targetReverseClient, dns.TypeA},
	"check_reverse_client_hostname_mx_access": {targetReverseClient, dns.TypeMX},
	"check_reverse_client_hostname_ns_access": {targetReverseClient, dns.TypeNS},
	"check_helo_a_access":                     {targetHELO, dns.TypeA},
	"check_helo_mx_access":                    {targetHELO, dns.TypeMX},
	"check_helo_ns_access":                    {targetHELO, dns.TypeNS},
	"check_sender_a_access":                   {targetSender, dns.TypeA},
	"check_sender_mx_access":                  {targetSender, dns.TypeMX},
	"check_sender_ns_access":                  {targetSender, dns.TypeNS},
	"check_recipient_a_access":                {targetRecipient, dns.TypeA},
	"check_recipient_mx_access":               {targetRecipient, dns.TypeMX},
	"check_recipient_ns_access":               {targetRecipient, dns.TypeNS},
}

// serverAccess is one check_*_{a,mx,ns}_access restriction.
type serverAccess struct {
	accessMap
	qtype uint16
	dns   *resolver.Resolver
}

func (r serverAccess) Eval(ctx context.Context, in *Input) (Outcome, error) {
	f := in.Facts
	var subject, replyName, class string
	switch r.target {
	case targetClient:
		c := clientNamesOf(ctx, in, r.dns)
		if c.NameStatus != NameOK {
			return Outcome{}, nil
		}
		subject, replyName, class = c.Name, c.Name+"["+f.clientAddr()+"]", classClient
	case targetReverseClient:
		c := clientNamesOf(ctx, in, r.dns)
		if c.ReverseNameStatus != NameOK {
			return Outcome{}, nil
		}
		subject, replyName, class = c.ReverseName, c.ReverseName, classReverseClient
	case targetHELO:
		if f.HELO == "" {
			return Outcome{}, nil
		}
		subject, replyName, class = f.HELO, f.HELO, classHELO
	case targetSender:
		if !f.InTransaction || f.Sender == "" {
			return Outcome{}, nil
		}
		subject, replyName, class = f.Sender, f.Sender, classSender
	case targetRecipient:
		if f.Recipient == "" {
			return Outcome{}, nil
		}
		subject, replyName, class = f.Recipient, f.Recipient, classRecipient
	default:
		return Outcome{}, nil
	}
	o, err := r.servers(ctx, in, subject, replyName, class)
	if err != nil {
		return Outcome{}, err
	}
	if o.Result == Permit && !o.Discard {
		// forbid_allowlist(): Postfix's three warnings, then
		// reject_server_error().
		in.st.warnings = append(in.st.warnings,
			"restriction "+r.name+" returns OK for "+subject,
			"this is not allowed for security reasons",
			"use DUNNO instead of OK if you want to make an exception")
		return serverError(in), nil
	}
	return o, nil
}

// servers finds the servers of subject's domain and looks them up.
func (r serverAccess) servers(ctx context.Context, in *Input, subject, replyName, class string) (Outcome, error) {
	domain := subject
	if i := strings.LastIndexByte(subject, '@'); i >= 0 {
		domain = subject[i+1:]
	}
	if strings.HasPrefix(domain, "[") {
		// An address literal is its own MX and A server.
		if r.qtype == dns.TypeNS || !strings.HasSuffix(domain, "]") {
			return Outcome{}, nil
		}
		bare := domain[1 : len(domain)-1]
		if !mailname.ValidMailhostAddr(bare) {
			return Outcome{}, nil
		}
		if len(bare) >= 5 && strings.EqualFold(bare[:5], "IPv6:") {
			bare = bare[5:]
		}
		o, _, err := r.addr(ctx, in, bare, replyName, class)
		return o, err
	}
	domain = address.NormalizeDomain(domain)
	var hosts []string
	switch r.qtype {
	case dns.TypeA:
		hosts = []string{domain}
	case dns.TypeMX:
		mx, err := lookupMX(ctx, in, r.dns, domain)
		switch classify(err) {
		case dnsFound:
			for _, m := range mx {
				if m.Host == "." {
					return Outcome{}, nil // null MX (RFC 7505)
				}
				hosts = append(hosts, strings.TrimSuffix(m.Host, "."))
			}
		case dnsNotFound:
			if errors.Is(err, resolver.ErrInvalidName) {
				r.unable(in, domain, subject, err)
				return Outcome{}, nil
			}
			hosts = []string{domain}
		default:
			r.unable(in, domain, subject, err)
			return Outcome{}, nil
		}
	case dns.TypeNS:
		for d := domain; ; {
			ns, err := lookupNS(ctx, in, r.dns, d)
			if err == nil {
				hosts = ns
				break
			}
			i := strings.IndexByte(d, '.')
			if classify(err) != dnsNotFound || errors.Is(err, resolver.ErrInvalidName) || i < 0 || i == len(d)-1 {
				r.unable(in, d, subject, err)
				return Outcome{}, nil
			}
			d = d[i+1:]
		}
	}
	count := 0
	for _, h := range hosts {
		if mailname.ValidHostAddr(h) {
			if o, found, err := r.addr(ctx, in, h, replyName, class); err != nil || found {
				return o, err
			}
			continue
		}
		if r.qtype != dns.TypeA {
			if o, found, err := r.domain(ctx, in, h, false, replyName, class); err != nil || found {
				return o, err
			}
		}
		addrs, err := hostAddrs(ctx, in, r.dns, h)
		if err != nil {
			if r.qtype != dns.TypeA {
				in.st.warnings = append(in.st.warnings, fmt.Sprintf("Unable to look up %s host %s for %s %s: %v",
					dns.TypeToString[r.qtype], h, class, replyName, err))
			}
			continue
		}
		for _, a := range addrs {
			if count++; count > serverAddrLimit {
				in.st.warnings = append(in.st.warnings, fmt.Sprintf("check_server_access: %s server address count limit (%d) exceeded for %s %s -- ignoring the remainder",
					dns.TypeToString[r.qtype], serverAddrLimit, class, replyName))
				return Outcome{}, nil
			}
			if o, found, err := r.addr(ctx, in, a.Unmap().String(), replyName, class); err != nil || found {
				return o, err
			}
		}
	}
	return Outcome{}, nil
}

// unable logs Postfix's warning for servers that could not be looked
// up; the check is then DUNNO.
func (r serverAccess) unable(in *Input, domain, subject string, err error) {
	name := domain
	if name == "" {
		name = subject
	}
	in.st.warnings = append(in.st.warnings, fmt.Sprintf("Unable to look up %s host for %s: %v", dns.TypeToString[r.qtype], name, err))
}

// hostAddrs are a host's IPv4 then IPv6 addresses (Postfix's
// hostname_to_sockaddr() with inet_protocols = all); an error when
// neither lookup found any.
func hostAddrs(ctx context.Context, in *Input, r *resolver.Resolver, host string) ([]netip.Addr, error) {
	v4, err4 := lookupAddrs(ctx, in, r, host, dns.TypeA)
	v6, err6 := lookupAddrs(ctx, in, r, host, dns.TypeAAAA)
	if len(v4)+len(v6) == 0 {
		if err4 == nil {
			err4 = err6
		}
		if err4 == nil {
			err4 = resolver.ErrNoData
		}
		return nil, err4
	}
	return append(v4, v6...), nil
}

// lookupNS is the NS lookup with the trace; the names are returned
// without their trailing dot.
func lookupNS(ctx context.Context, in *Input, r *resolver.Resolver, name string) ([]string, error) {
	ctx, end := dnsSpan(ctx, name, dns.TypeNS)
	a, err := r.Lookup(ctx, name, dns.TypeNS)
	end(err)
	var ns []string
	if err == nil {
		for _, rec := range a.Records {
			ns = append(ns, strings.TrimSuffix(rec, "."))
		}
	}
	traceDNS(in, name, dns.TypeNS, ns, err)
	return ns, err
}
