package restriction

import (
	"context"
	"errors"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/smtpgate/smtpgate/pkg/mailname"
	"github.com/smtpgate/smtpgate/pkg/resolver"
)

// The DNS-based restrictions (dnsxl.go, dnsunknown.go, dnsspf.go) share
// what is here: the outcome classes of a lookup, the trace of lookups for
// Explain, and the client's names (ResolveClient: policy resolves them at
// a session's first check and the edge carries them since).

// dnsResult is what a restriction branches on, as Postfix's DNS_OK,
// DNS_NOTFOUND and DNS_RETRY.
type dnsResult int

const (
	dnsFound dnsResult = iota
	// dnsNotFound: NXDOMAIN, NODATA, or a name that cannot be looked up
	// (permanent).
	dnsNotFound
	// dnsTemporary: SERVFAIL, a timeout, a network error.
	dnsTemporary
)

// classify maps a resolver error to its class; anything not known to be
// permanent is temporary, so that a DNS failure never becomes a permit
// where Postfix would defer.
func classify(err error) dnsResult {
	switch {
	case err == nil:
		return dnsFound
	case errors.Is(err, resolver.ErrNotFound), errors.Is(err, resolver.ErrNoData), errors.Is(err, resolver.ErrInvalidName):
		return dnsNotFound
	}
	return dnsTemporary
}

// traceDNS records one DNS lookup for Explain: table "dns", key
// "name TYPE", the records (or the error class) as the value.
func traceDNS(in *Input, name string, qtype uint16, records []string, err error) {
	if in == nil || !in.st.tracingLookups() {
		return
	}
	l := Lookup{Table: "dns", Key: strings.TrimSuffix(name, ".") + " " + dns.TypeToString[qtype]}
	switch classify(err) {
	case dnsFound:
		l.Found, l.Value = true, strings.Join(records, " ")
	case dnsNotFound:
		l.Value = "not found"
		if errors.Is(err, resolver.ErrNoData) {
			l.Value = "no data"
		}
	default:
		l.Value = "temporary failure"
	}
	in.lookup(l)
}

// dnsSpan starts a span for one DNS lookup when the check is traced
// (name, type, and at the end where the answer came from: the in-process
// cache, Redis or DNS, and the result); end closes it.
func dnsSpan(ctx context.Context, name string, qtype uint16) (context.Context, func(err error)) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, func(error) {}
	}
	ctx, span := parent.TracerProvider().Tracer(tracerName).Start(ctx, "dns "+dns.TypeToString[qtype],
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("dns.question.name", strings.TrimSuffix(name, ".")), attribute.String("dns.question.type", dns.TypeToString[qtype])))
	src := resolver.Source(255)
	ctx = resolver.WithSource(ctx, &src)
	return ctx, func(err error) {
		result := map[dnsResult]string{dnsFound: "found", dnsNotFound: "not found", dnsTemporary: "temporary failure"}[classify(err)]
		span.SetAttributes(attribute.String("dns.result", result))
		if src != 255 {
			span.SetAttributes(attribute.String("dns.source", src.String()))
		}
		span.End()
	}
}

// lookupAddrs is LookupA or LookupAAAA with the trace.
func lookupAddrs(ctx context.Context, in *Input, r *resolver.Resolver, name string, qtype uint16) ([]netip.Addr, error) {
	var (
		addrs []netip.Addr
		err   error
	)
	ctx, end := dnsSpan(ctx, name, qtype)
	defer func() { end(err) }()
	if qtype == dns.TypeAAAA {
		addrs, err = r.LookupAAAA(ctx, name)
	} else {
		addrs, err = r.LookupA(ctx, name)
	}
	if in != nil && in.st.tracingLookups() {
		recs := make([]string, len(addrs))
		for i, a := range addrs {
			recs[i] = a.String()
		}
		traceDNS(in, name, qtype, recs, err)
	}
	return addrs, err
}

func lookupTXT(ctx context.Context, in *Input, r *resolver.Resolver, name string) ([]string, error) {
	ctx, end := dnsSpan(ctx, name, dns.TypeTXT)
	txt, err := r.LookupTXT(ctx, name)
	end(err)
	traceDNS(in, name, dns.TypeTXT, txt, err)
	return txt, err
}

func lookupMX(ctx context.Context, in *Input, r *resolver.Resolver, name string) ([]resolver.MX, error) {
	ctx, end := dnsSpan(ctx, name, dns.TypeMX)
	mx, err := r.LookupMX(ctx, name)
	end(err)
	if in.st.tracingLookups() {
		recs := make([]string, len(mx))
		for i, m := range mx {
			recs[i] = m.Host
		}
		traceDNS(in, name, dns.TypeMX, recs, err)
	}
	return mx, err
}

// NameStatus is how well a client name is known (SMTPD_PEER_CODE_* in
// Postfix's smtpd_peer.c).
type NameStatus int

const (
	// NameUnresolved: nobody looked the name up yet.
	NameUnresolved NameStatus = iota
	NameOK
	// NameTemporary: a lookup failed temporarily.
	NameTemporary
	// NamePermanent: no PTR record (or no valid name in it), or
	// smtpd_peername_lookup = no.
	NamePermanent
	// NameForged: the PTR name does not resolve back to the address.
	NameForged
)

// ClientNames are the client's names as Postfix's smtpd_peer.c finds
// them: the reverse name is the PTR name, the name is a PTR name whose
// A or AAAA records include the address (forward-confirmed reverse DNS);
// "unknown" when not known, with the status saying why.
type ClientNames struct {
	Name, ReverseName             string
	NameStatus, ReverseNameStatus NameStatus
}

// unknownNames are the names of a client not looked up
// (smtpd_peername_lookup = no) or without an address.
var unknownNames = ClientNames{Name: "unknown", ReverseName: "unknown", NameStatus: NamePermanent, ReverseNameStatus: NamePermanent}

// maxPTRNames bounds the PTR names whose addresses are looked up.
const maxPTRNames = 10

// checkState is what the DNS restrictions remember during one check.
type checkState struct {
	client *ClientNames
	// spfDone: check_spf evaluated already in this check.
	spfDone bool
}

// stateOf returns the checkState of the check in is part of.
func stateOf(in *Input) *checkState {
	if in.st.dns == nil {
		in.st.dns = &checkState{}
	}
	return in.st.dns
}

// clientNamesOf returns the client's names: those of the facts when they
// were resolved (by ResolveClient at the session's first check, carried
// by the edge since) or when the edge reports a name (a trusted XCLIENT),
// else resolved here, once per check.
func clientNamesOf(ctx context.Context, in *Input, r *resolver.Resolver) *ClientNames {
	s := stateOf(in)
	if s.client != nil {
		return s.client
	}
	f := in.Facts
	if f.ClientNameStatus != NameUnresolved {
		c := &ClientNames{Name: orUnknown(f.ClientName), ReverseName: orUnknown(f.ReverseClientName), NameStatus: f.ClientNameStatus, ReverseNameStatus: f.ReverseClientNameStatus}
		if c.ReverseNameStatus == NameUnresolved {
			c.ReverseName, c.ReverseNameStatus = c.Name, c.NameStatus
		}
		s.client = c
		return c
	}
	if known(f.ClientName) {
		c := &ClientNames{Name: f.ClientName, ReverseName: f.ClientName, NameStatus: NameOK, ReverseNameStatus: NameOK}
		if known(f.ReverseClientName) {
			c.ReverseName = f.ReverseClientName
		}
		s.client = c
		return c
	}
	c := resolveClient(ctx, in, r, f.ClientAddr)
	s.client = &c
	return &c
}

// ResolveClient finds the client's names as Postfix's smtpd does at
// connect with smtpd_peername_lookup = yes: the PTR name, then its
// forward confirmation. Each lookup goes through r's caches.
func ResolveClient(ctx context.Context, r *resolver.Resolver, addr netip.Addr) ClientNames {
	return resolveClient(ctx, nil, r, addr)
}

// resolveClient is ResolveClient, with the lookups traced into in when
// it is not nil.
func resolveClient(ctx context.Context, in *Input, r *resolver.Resolver, addr netip.Addr) ClientNames {
	c := unknownNames
	addr = addr.Unmap()
	if !addr.IsValid() || r == nil {
		return c
	}
	rev, _ := resolver.ReverseName(addr)
	pctx, end := dnsSpan(ctx, rev, dns.TypePTR)
	ptrs, err := r.LookupPTR(pctx, addr)
	end(err)
	traceDNS(in, rev, dns.TypePTR, ptrs, err)
	switch classify(err) {
	case dnsTemporary:
		c.ReverseNameStatus, c.NameStatus = NameTemporary, NameTemporary
		return c
	case dnsNotFound:
		return c
	}
	var names []string
	for _, p := range ptrs {
		if n := strings.TrimSuffix(p, "."); mailname.ValidHostname(n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return c
	}
	c.ReverseName, c.ReverseNameStatus = names[0], NameOK
	qtype := dns.TypeA
	if addr.Is6() {
		qtype = dns.TypeAAAA
	}
	c.NameStatus = NameForged
	for _, n := range names[:min(len(names), maxPTRNames)] {
		addrs, err := lookupAddrs(ctx, in, r, n, qtype)
		if classify(err) == dnsTemporary {
			c.NameStatus = NameTemporary
			continue
		}
		for _, a := range addrs {
			if a.Unmap() == addr {
				c.Name, c.NameStatus = n, NameOK
				return c
			}
		}
	}
	return c
}

// orUnknown is name, or "unknown" for "".
func orUnknown(name string) string {
	if name == "" {
		return "unknown"
	}
	return name
}

// known reports a client name other than "" and "unknown".
func known(name string) bool { return name != "" && !strings.EqualFold(name, "unknown") }

// needsResolver is the compile error of a DNS restriction without one.
func needsResolver(name string) string {
	return "restriction " + name + " needs a resolver (smtpgate-policy builds one from smtpgate_dns_servers; none was given here)"
}
