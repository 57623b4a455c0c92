// Package matchlist implements Postfix's match lists for the parameters
// policy reads: domain lists (mydestination, relay_domains,
// virtual_alias_domains, virtual_mailbox_domains; Postfix domain_list(3))
// and network lists (mynetworks; Postfix namadr_list(3)). Patterns come
// from the configuration, which is trusted; the names and addresses matched
// against them come from SMTP clients and are not.
//
// Semantics follow postconf(5) and match_list(3): patterns are tried left
// to right, the first match decides, and "!pattern" makes a match a
// non-match. In a domain list, a lookup table ("type:name", e.g.
// virtual_mailbox_domains = sqlite:/etc/postfix/domains.cf) matches a
// domain it has an entry for, as match_hostname() does: the domain, then
// its parents (".example.com" in a plain list, "example.com" in a
// parent-style one; the parents only in fixed-string tables); a table
// that fails makes the match fail, and the caller fails closed.
// "/file/name" patterns, and tables in network lists, are not supported
// yet and are reported as configuration errors, so that a list never
// silently matches less than the postmaster wrote.
package matchlist

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/smtpgate/smtpgate/services/policy/internal/address"
	"github.com/smtpgate/smtpgate/services/policy/internal/table"
)

// Domains is a compiled domain list.
type Domains struct {
	patterns []domainPattern
	// parent is Postfix's parent_domain_matches_subdomains behaviour for
	// this list: "example.com" also matches "sub.example.com".
	parent bool
}

type domainPattern struct {
	negate bool
	// tbl is a "type:name" pattern's table.
	tbl table.Table
	// dot is a ".example.com" pattern: subdomains only.
	dot  bool
	name string
}

// ParseDomains compiles a domain list. With parent set, a pattern
// "example.com" matches the domain and its subdomains, as Postfix does for
// the lists named in parent_domain_matches_subdomains (relay_domains by
// default); without it, only the domain itself (mydestination,
// virtual_*_domains). A ".example.com" pattern matches subdomains in
// either case.
func ParseDomains(patterns []string, parent bool) (*Domains, error) {
	return ParseDomainsWith(patterns, parent, nil)
}

// ParseDomainsWith is ParseDomains with lookup tables: open opens a
// "type:name" pattern (nil: tables are refused).
func ParseDomainsWith(patterns []string, parent bool, open func(spec string) (table.Table, error)) (*Domains, error) {
	d := &Domains{parent: parent}
	for _, p := range patterns {
		negate := false
		for strings.HasPrefix(p, "!") {
			negate = !negate
			p = p[1:]
		}
		if open != nil && isTable(p) {
			t, err := open(p)
			if err != nil {
				return nil, err
			}
			d.patterns = append(d.patterns, domainPattern{negate: negate, tbl: t, name: p})
			continue
		}
		if err := notTable(p); err != nil {
			return nil, err
		}
		if p == "" || p == "." {
			return nil, fmt.Errorf("empty domain pattern")
		}
		dp := domainPattern{negate: negate}
		if strings.HasPrefix(p, ".") {
			dp.dot, p = true, p[1:]
		}
		dp.name = address.NormalizeDomain(p)
		d.patterns = append(d.patterns, dp)
	}
	return d, nil
}

// Match reports whether domain (normalised with address.NormalizeDomain)
// is in the list. err is set when a table of the list could not be
// consulted (Postfix's "table lookup problem"): the caller fails closed.
func (d *Domains) Match(ctx context.Context, domain string) (bool, error) {
	if d == nil || domain == "" {
		return false, nil
	}
	for _, p := range d.patterns {
		var ok bool
		if p.tbl != nil {
			var err error
			if ok, err = p.lookup(ctx, domain, d.parent); err != nil {
				return false, err
			}
		} else {
			ok = p.matches(domain, d.parent)
		}
		if ok {
			return !p.negate, nil
		}
	}
	return false, nil
}

// lookup looks domain up in a table pattern, then its parents in a
// fixed-string table: ".b.c" and ".c" (parent-style: "b.c" and "c").
func (p domainPattern) lookup(ctx context.Context, domain string, parent bool) (bool, error) {
	for key := domain; key != ""; {
		if key == domain || !p.tbl.Pattern() {
			_, ok, err := p.tbl.Lookup(ctx, key)
			if err != nil {
				return false, fmt.Errorf("%s: table lookup problem: %w", p.tbl.Name(), err)
			}
			if ok {
				return true, nil
			}
		}
		i := strings.IndexByte(key[1:], '.')
		if i < 0 {
			break
		}
		key = key[i+1:]
		if parent {
			key = key[1:]
		}
	}
	return false, nil
}

func (p domainPattern) matches(domain string, parent bool) bool {
	sub := strings.HasSuffix(domain, "."+p.name)
	switch {
	case p.dot:
		return sub
	case parent:
		return domain == p.name || sub
	default:
		return domain == p.name
	}
}

// Len is the number of patterns.
func (d *Domains) Len() int { return len(d.patterns) }

// Networks is a compiled network list (mynetworks).
type Networks struct {
	patterns []netPattern
}

type netPattern struct {
	negate bool
	prefix netip.Prefix
}

// ParseNetworks compiles a network list. A pattern is an IPv4 address or
// network/mask ("192.0.2.1", "192.0.2.0/24"), or an IPv6 address or
// network/mask in brackets ("[::1]", "[::1]/128", "[2001:db8::]/32"), as
// postconf(5) mynetworks describes; "!" negates. An IPv6 pattern without
// brackets is an error, as in Postfix, where the ":" would make it a
// lookup table. Host bits set under the mask are an error too (Postfix's
// "non-null host address bits"), since they usually mean a typo. Host and
// domain names are not supported yet (they need the DNS).
func ParseNetworks(patterns []string) (*Networks, error) {
	n := &Networks{}
	for _, raw := range patterns {
		p, negate := raw, false
		for strings.HasPrefix(p, "!") {
			negate = !negate
			p = p[1:]
		}
		prefix, err := parseNetwork(p)
		if err != nil {
			return nil, err
		}
		n.patterns = append(n.patterns, netPattern{negate: negate, prefix: prefix})
	}
	return n, nil
}

func parseNetwork(p string) (netip.Prefix, error) {
	if strings.HasPrefix(p, "/") {
		return netip.Prefix{}, fmt.Errorf("file %q: file patterns are not supported yet", p)
	}
	addrPart, maskPart, hasMask := strings.Cut(p, "/")
	bracketed := len(addrPart) > 2 && addrPart[0] == '[' && addrPart[len(addrPart)-1] == ']'
	if bracketed {
		addrPart = addrPart[1 : len(addrPart)-1]
	} else if strings.Contains(addrPart, ":") {
		if _, err := netip.ParseAddr(addrPart); err == nil {
			return netip.Prefix{}, fmt.Errorf("IPv6 network %q must be written in brackets, e.g. [%s]%s", p, addrPart, suffix(hasMask, maskPart))
		}
		return netip.Prefix{}, fmt.Errorf("lookup table %q: lookup tables are not supported yet in network lists", p)
	}
	addr, err := netip.ParseAddr(addrPart)
	if err != nil || addr.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("network %q: want an IPv4 address or network/mask, or an IPv6 one in [] (host names are not supported yet)", p)
	}
	if addr.Is4() && bracketed {
		return netip.Prefix{}, fmt.Errorf("network %q: IPv4 addresses are written without brackets", p)
	}
	bits := addr.BitLen()
	if hasMask {
		n, err := strconv.Atoi(maskPart)
		if err != nil || maskPart == "" || maskPart[0] < '0' || maskPart[0] > '9' || n > addr.BitLen() {
			return netip.Prefix{}, fmt.Errorf("network %q: bad mask length %q", p, maskPart)
		}
		bits = n
	}
	// An IPv4-mapped network ([::ffff:127.0.0.0]/104, in Debian's default
	// mynetworks) is the IPv4 network it maps: clients are matched
	// unmapped.
	if addr.Is4In6() {
		if bits < 96 {
			return netip.Prefix{}, fmt.Errorf("network %q: an IPv4-mapped network needs a mask of at least 96 bits", p)
		}
		bits -= 96
	}
	addr = addr.Unmap()
	prefix := netip.PrefixFrom(addr, bits)
	if prefix.Masked().Addr() != addr {
		return netip.Prefix{}, fmt.Errorf("network %q: non-null host address bits, perhaps you meant %s", p, display(prefix.Masked()))
	}
	return prefix, nil
}

func suffix(has bool, mask string) string {
	if has {
		return "/" + mask
	}
	return ""
}

// display writes a prefix the way mynetworks wants it.
func display(p netip.Prefix) string {
	if p.Addr().Is6() {
		return fmt.Sprintf("[%s]/%d", p.Addr(), p.Bits())
	}
	return p.String()
}

// Match reports whether addr is in the list. An invalid addr (unknown
// client address) matches nothing; IPv4-mapped IPv6 addresses match as
// IPv4.
func (n *Networks) Match(addr netip.Addr) bool {
	if n == nil || !addr.IsValid() {
		return false
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range n.patterns {
		if p.prefix.Contains(addr) {
			return !p.negate
		}
	}
	return false
}

// String writes the list back in mynetworks syntax.
func (n *Networks) String() string {
	var parts []string
	for _, p := range n.patterns {
		s := display(p.prefix)
		if p.negate {
			s = "!" + s
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// isTable reports a "type:name" pattern.
func isTable(p string) bool {
	return strings.Contains(p, ":") && !strings.HasPrefix(p, "[") && !strings.HasPrefix(p, "/")
}

// notTable reports lookup-table and file patterns, not supported yet.
func notTable(p string) error {
	switch {
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("file %q: file patterns are not supported yet", p)
	case strings.Contains(p, ":") && !strings.HasPrefix(p, "["):
		return fmt.Errorf("lookup table %q: lookup tables are not supported yet in domain lists", p)
	}
	return nil
}
