package resolver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// The outcomes callers branch on, as Postfix's restrictions do. Errors
// returned wrap one of them and ErrInvalidName.
var (
	// ErrNotFound: the name does not exist (NXDOMAIN).
	ErrNotFound = errors.New("name not found")
	// ErrNoData: the name exists without records of the type (NODATA).
	ErrNoData = errors.New("no records of the type")
	// ErrTemporary: no usable answer now (SERVFAIL, timeout, network
	// error, the caller's context ended); try again later.
	ErrTemporary = errors.New("temporary DNS failure")
)

// Source tells where an answer came from.
type Source uint8

const (
	FromDNS   Source = iota // asked the servers
	FromCache               // in-process cache
	FromRedis               // the cache shared through Redis
)

func (s Source) String() string {
	switch s {
	case FromDNS:
		return "dns"
	case FromCache:
		return "cache"
	case FromRedis:
		return "redis"
	}
	return "source" + strconv.Itoa(int(s))
}

// Answer is the outcome of one lookup.
type Answer struct {
	Name  string // the name asked, lower-cased with its trailing dot
	Type  uint16
	Final string // the name at the end of the CNAME chain (Name without CNAMEs)
	// RCode is dns.RcodeSuccess for records and NODATA,
	// dns.RcodeNameError for NXDOMAIN, the server's rcode
	// (dns.RcodeServerFailure for timeouts) for temporary failures.
	RCode int
	// Records are the rdata of the final name's records of the asked type
	// in presentation form: A "192.0.2.1", MX "10 mx.example.org.",
	// PTR "host.example.org." (names lower-cased), TXT the joined
	// character-strings of one record, unescaped.
	Records []string
	TTL     time.Duration // remaining
	Source  Source
}

// answer turns a cached entry into the caller's Answer and error.
func (r *Resolver) answer(k key, e *entry, src Source) (*Answer, error) {
	a := &Answer{
		Name: k.name, Type: k.qtype, Final: e.final, RCode: e.rcode,
		Records: append([]string(nil), e.records...),
		TTL:     max(0, e.expires.Sub(r.now())), Source: src,
	}
	if a.Final == "" {
		a.Final = k.name
	}
	return a, r.entryErr(k, e, src)
}

// entryErr is the error that goes with an answer from e: nil for records.
func (r *Resolver) entryErr(k key, e *entry, src Source) error {
	if e.err != nil {
		return e.err
	}
	t := typeString(k.qtype)
	switch e.kind {
	case notFound, noData:
		return negativeErr(k, e.kind)
	case temporary:
		if src != FromDNS {
			return fmt.Errorf("lookup %s %s: %s (cached): %w", k.name, t, e.cause, ErrTemporary)
		}
		return fmt.Errorf("lookup %s %s: %s: %w", k.name, t, e.cause, ErrTemporary)
	}
	return nil
}

// negativeErr is the error of an NXDOMAIN or NODATA answer for k, nil for
// other kinds. It is the same for every answer from one entry, so the
// entry keeps it (an unlisted client's DNSBL lookup, answered from the
// cache on every RCPT, does not format it again).
func negativeErr(k key, kd kind) error {
	switch kd {
	case notFound:
		return fmt.Errorf("lookup %s %s: %w", k.name, typeString(k.qtype), ErrNotFound)
	case noData:
		return fmt.Errorf("lookup %s %s: %w", k.name, typeString(k.qtype), ErrNoData)
	}
	return nil
}

// LookupA returns name's IPv4 addresses.
func (r *Resolver) LookupA(ctx context.Context, name string) ([]netip.Addr, error) {
	return r.lookupAddrs(ctx, name, dns.TypeA)
}

// LookupAAAA returns name's IPv6 addresses.
func (r *Resolver) LookupAAAA(ctx context.Context, name string) ([]netip.Addr, error) {
	return r.lookupAddrs(ctx, name, dns.TypeAAAA)
}

func (r *Resolver) lookupAddrs(ctx context.Context, name string, qtype uint16) ([]netip.Addr, error) {
	// From the entry, without the Answer and its copy of the records:
	// the DNS lists ask this on every RCPT TO.
	k, e, src, err := r.lookup(ctx, name, qtype)
	if e == nil {
		return nil, err
	}
	if err := r.entryErr(k, e, src); err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(e.records))
	for _, s := range e.records {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, malformed(k.name, k.qtype, s)
		}
		out = append(out, ip)
	}
	return out, nil
}

// malformed is the error for a record this package cannot have written
// (only a corrupt shared cache holds such): temporary, it may go away.
func malformed(name string, qtype uint16, rec string) error {
	if len(rec) > 64 {
		rec = rec[:64] + "..."
	}
	return fmt.Errorf("lookup %s %s: malformed record %q: %w", name, typeString(qtype), rec, ErrTemporary)
}

// MX is one mail exchanger.
type MX struct {
	Pref uint16
	Host string // lower-cased, with the trailing dot
}

// LookupMX returns name's mail exchangers in the order the server gave
// them (callers sort by Pref, RFC 5321 §5.1).
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]MX, error) {
	a, err := r.Lookup(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]MX, 0, len(a.Records))
	for _, s := range a.Records {
		p, h, ok := strings.Cut(s, " ")
		pref, err := strconv.ParseUint(p, 10, 16)
		if !ok || err != nil || h == "" {
			return nil, malformed(a.Name, a.Type, s)
		}
		out = append(out, MX{Pref: uint16(pref), Host: h})
	}
	return out, nil
}

// LookupTXT returns name's TXT records, each with its character-strings
// joined (RFC 7208 §3.3).
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	a, err := r.Lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	return a.Records, nil
}

// LookupPTR returns the host names of addr's PTR records.
func (r *Resolver) LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error) {
	name, err := ReverseName(addr)
	if err != nil {
		r.stats.invalid.Add(1)
		return nil, fmt.Errorf("lookup PTR: %w", err)
	}
	a, err := r.Lookup(ctx, name, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	return a.Records, nil
}
