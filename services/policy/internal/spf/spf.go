// Package spf evaluates Sender Policy Framework records as RFC 7208
// specifies them: check_host() (§4) with every mechanism and modifier
// (§5, §6), macro expansion (§7), the processing limits (§4.6.4) and the
// Received-SPF header field (§9.1).
//
// Everything it reads is untrusted: the client's IP address, MAIL FROM and
// HELO come from an SMTP client, and the records from whoever controls the
// sender's DNS. Whatever they hold, an evaluation ends with a Result, never
// a panic, and the number of DNS queries one check may cause is bounded
// (10 DNS-querying terms, 10 MX hosts or PTR names each, 2 void lookups).
//
// The package talks only to the Resolver it is given; it does no caching,
// which belongs to the resolver.
package spf

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"time"
)

// Resolver is the DNS the evaluator uses.
//
// Errors: errors.Is(err, ErrNotFound) for NXDOMAIN (RCODE 3), errors.Is(err,
// ErrNoData) for an answer without records of the type asked; anything else
// (SERVFAIL, a timeout, a cancelled context) is a temporary error and
// gives temperror (RFC 7208 §4.4, §5).
type Resolver interface {
	// LookupTXT returns one string per TXT record, its character-strings
	// concatenated without separator (RFC 7208 §3.3).
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupA(ctx context.Context, name string) ([]netip.Addr, error)
	LookupAAAA(ctx context.Context, name string) ([]netip.Addr, error)
	LookupMX(ctx context.Context, name string) ([]MX, error)
	// LookupPTR returns the names the address maps back to.
	LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error)
}

// MX is one MX record.
type MX struct {
	Pref uint16
	Host string
}

// The errors a Resolver wraps for the two non-temporary outcomes.
var (
	ErrNotFound = errors.New("domain does not exist")
	ErrNoData   = errors.New("no records of that type")
)

// Result is the outcome of an evaluation (RFC 7208 §2.6).
type Result string

// The results, spelled as in RFC 7208 §2.6 and the Received-SPF field.
const (
	None      Result = "none"
	Neutral   Result = "neutral"
	Pass      Result = "pass"
	Fail      Result = "fail"
	SoftFail  Result = "softfail"
	TempError Result = "temperror"
	PermError Result = "permerror"
)

// Request holds the facts of one SMTP transaction that SPF looks at.
type Request struct {
	// IP is the SMTP client's address; an IPv4-mapped IPv6 address is
	// treated as the IPv4 address (RFC 7208 §5, the note on ip6).
	IP netip.Addr
	// Sender is the MAIL FROM address without angle brackets; "" for the
	// null reverse-path.
	Sender string
	// HELO is the name the client gave in HELO or EHLO.
	HELO string
	// Receiver is our host name, for the %{r} macro and Received-SPF.
	Receiver string
	// Identity is the identity Check evaluates: MailFrom (the zero
	// value) or HELO.
	Identity Identity
}

// Identity is one of the identities SPF can check (RFC 7208 §2.3, §2.4),
// named as the Received-SPF field names them.
type Identity string

const (
	// MailFrom is the MAIL FROM identity: the sender's domain, or
	// postmaster@HELO for the null reverse-path.
	MailFrom Identity = ""
	// HELO is the HELO identity: postmaster@HELO whatever the sender.
	HELO Identity = "helo"
)

// Response is the verdict of an evaluation.
type Response struct {
	Result Result
	// Domain is the domain whose policy was checked.
	Domain string
	// Mechanism is the directive that matched, as written in the record
	// (qualifier included); "" when none did.
	Mechanism string
	// Explanation is the expanded exp= text (RFC 7208 §6.2), only on fail
	// and only when the domain publishes one.
	Explanation string
	// Problem says why the result is temperror or permerror (and, for
	// none, why no record applied).
	Problem string
}

// Check evaluates the identity of req: the MAIL FROM identity (RFC 7208
// §2.4), the sender's domain or, for the null reverse-path,
// postmaster@HELO; or the HELO identity (§2.3), postmaster@HELO.
func Check(ctx context.Context, r Resolver, req Request) Response {
	sender := req.Sender
	if sender == "" || req.Identity == HELO {
		sender = "postmaster@" + req.HELO
	}
	_, domain := splitSender(sender)
	return CheckHost(ctx, r, req.IP, domain, sender, req.HELO, req.Receiver)
}

// CheckHost is check_host(<ip>, <domain>, <sender>) of RFC 7208 §4.1, with
// the HELO name and the receiver's host name that the h and r macros
// need. A HELO identity check (§2.3) is CheckHost(ctx, r, ip, helo,
// "postmaster@"+helo, helo, receiver).
func CheckHost(ctx context.Context, r Resolver, ip netip.Addr, domain, sender, helo, receiver string) Response {
	domain = strings.TrimSuffix(domain, ".")
	if !ip.IsValid() {
		return Response{Result: PermError, Domain: domain, Problem: "no valid client IP address"}
	}
	local, senderDomain := splitSender(sender)
	if !strings.Contains(sender, "@") {
		sender = local + "@" + senderDomain
	} else if strings.HasPrefix(sender, "@") {
		sender = local + sender
	}
	c := &checker{
		r: r,
		env: macroEnv{
			sender:       sender,
			local:        local,
			senderDomain: senderDomain,
			ip:           ip.Unmap(),
			helo:         helo,
			receiver:     receiver,
			now:          time.Now(),
		},
	}
	o := c.checkHost(ctx, domain, true)
	return Response{
		Result:      o.result,
		Domain:      domain,
		Mechanism:   o.mechanism,
		Explanation: o.explanation,
		Problem:     o.problem,
	}
}

// splitSender splits an address at its last "@"; a missing local part
// becomes "postmaster" (RFC 7208 §4.3), and a string without "@" is all
// domain.
func splitSender(s string) (local, domain string) {
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return "postmaster", strings.TrimSuffix(s, ".")
	}
	local, domain = s[:i], strings.TrimSuffix(s[i+1:], ".")
	if local == "" {
		local = "postmaster"
	}
	return local, domain
}
