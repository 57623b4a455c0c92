// Package listener prepares accepted connections for the SMTP engine: it
// opens the TCP listeners (Listen, with TCP keepalive as Postfix's
// smtpd has it), matches peers against mynetworks-style lists (Networks) and, on
// listeners with smtpd_upstream_proxy_protocol = haproxy, reads the PROXY
// protocol header (v1 or v2) that a trusted load balancer sends before the
// first SMTP byte (Proxy, Handshake).
//
// It trusts a PROXY header only from peers in smtpgate_proxy_networks;
// every other peer of such a listener is dropped before a byte is read.
// It never guesses whether a header is present: on a proxy listener the
// header is required (HAProxy's doc/proxy-protocol.txt, "the receiver
// must not try to guess").
package listener

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Networks is a list of network patterns as Postfix's mynetworks takes
// them: "1.2.3.4", "1.2.3.0/24", "[::1]", "[2001:db8::]/32" (brackets
// optional), each optionally negated with "!". The first matching pattern
// decides; no match is no. Host names, /file/names and type:table lookups
// are not supported here and are configuration errors. The zero value
// matches nothing.
type Networks struct {
	entries []entry
}

type entry struct {
	prefix netip.Prefix
	negate bool
}

// ParseNetworks parses a list as maincf.SplitList returns it.
func ParseNetworks(items []string) (*Networks, error) {
	n := &Networks{}
	for _, it := range items {
		e := entry{}
		pat := it
		if rest, ok := strings.CutPrefix(pat, "!"); ok {
			e.negate, pat = true, rest
		}
		p, err := parsePattern(pat)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", it, err)
		}
		e.prefix = p
		n.entries = append(n.entries, e)
	}
	return n, nil
}

func parsePattern(pat string) (netip.Prefix, error) {
	if strings.HasPrefix(pat, "/") || (strings.Count(pat, ":") == 1 && !strings.HasPrefix(pat, "[")) {
		return netip.Prefix{}, fmt.Errorf("tables and files are not supported in this list; give addresses or networks")
	}
	host, bits, hasBits := strings.Cut(pat, "/")
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not an address or network (host names are not supported in this list)")
	}
	if addr.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("zoned addresses are not supported")
	}
	if !hasBits {
		return netip.PrefixFrom(addr, addr.BitLen()), nil
	}
	p, err := netip.ParsePrefix(addr.String() + "/" + bits)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad network: %w", err)
	}
	if p.Masked() != p {
		// As Postfix: "non-null host address bits".
		return netip.Prefix{}, fmt.Errorf("non-null host address bits, perhaps %s was meant", p.Masked())
	}
	return p, nil
}

// Contains reports whether ip matches the list. An IPv4-mapped IPv6
// address matches as the IPv4 address it carries, and also as itself.
func (n *Networks) Contains(ip netip.Addr) bool {
	if n == nil || !ip.IsValid() {
		return false
	}
	ip = ip.WithZone("")
	for _, e := range n.entries {
		if e.prefix.Contains(ip) || (ip.Is4In6() && e.prefix.Contains(ip.Unmap())) {
			return !e.negate
		}
	}
	return false
}

// ContainsAddr is Contains for a socket address; anything that is not an
// IP address matches nothing.
func (n *Networks) ContainsAddr(a net.Addr) bool {
	return n.Contains(addrIP(a))
}

// Empty reports whether the list has no patterns.
func (n *Networks) Empty() bool { return n == nil || len(n.entries) == 0 }

func addrIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}
