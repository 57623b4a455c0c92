package restriction

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/smtpgate/smtpgate/pkg/mailname"
	"github.com/smtpgate/smtpgate/pkg/resolver"
)

// DNS block and allow lists (postconf(5) reject_rbl_client and
// friends; reject_rbl_addr(), reject_rbl_domain(), permit_dnswl_addr(),
// permit_dnswl_domain() and rbl_reject_reply() in smtpd_check.c).

// dnsxlTarget is what a DNS list restriction looks up.
type dnsxlTarget int

const (
	xlClientAddr    dnsxlTarget = iota + 1 // the client address, reversed
	xlClientName                           // the verified client name
	xlReverseClient                        // the PTR name
	xlHELO
	xlSender
	xlRecipient
)

// dnsxlRestrictions are the DNS list restrictions: what each looks up,
// whether it permits (an allow list), and its reply class.
var dnsxlRestrictions = map[string]struct {
	target dnsxlTarget
	allow  bool
	class  string
}{
	"reject_rbl_client":           {xlClientAddr, false, classClient},
	"reject_rhsbl_client":         {xlClientName, false, classClient},
	"reject_rhsbl_reverse_client": {xlReverseClient, false, classReverseClient},
	"reject_rhsbl_helo":           {xlHELO, false, classHELO},
	"reject_rhsbl_sender":         {xlSender, false, classSender},
	"reject_rhsbl_recipient":      {xlRecipient, false, classRecipient},
	"permit_dnswl_client":         {xlClientAddr, true, classClient},
	"permit_rhswl_client":         {xlClientName, true, classClient},
}

// defaultRBLReply is Postfix's default_rbl_reply.
const defaultRBLReply = "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using $rbl_domain${rbl_reason?; $rbl_reason}"

// rblTXTLimit bounds the reason made of the TXT records (RBL_TXT_LIMIT).
const rblTXTLimit = 500

// dnsxl is one DNS list restriction with its argument "domain[=filter]".
type dnsxl struct {
	name   string
	full   string // name and arg, what Name returns
	arg    string // as configured, the key of rbl_reply_maps
	domain string // without the filter
	filter *ipFilter
	target dnsxlTarget
	allow  bool
	class  string
	dns    *resolver.Resolver
	dest   *Destinations
	code   int  // maps_rbl_reject_code
	reply  maps // rbl_reply_maps
}

func (r dnsxl) Name() string { return r.full }

func (r dnsxl) Eval(ctx context.Context, in *Input) (Outcome, error) {
	f := in.Facts
	// Postfix's safety: an allow list does not permit mail to a
	// recipient this system would not accept anyway (no relaying).
	if r.allow && f.Stage == Rcpt && f.Recipient != "" {
		ok, err := r.dest.Authorized(ctx, f.Recipient)
		if err != nil || !ok {
			return Outcome{}, err
		}
	}
	var query, what string
	a := f.ClientAddr.Unmap()
	switch r.target {
	case xlClientAddr:
		if !a.IsValid() {
			return Outcome{}, nil
		}
		// Built in one piece, with the trailing dot: the resolver takes
		// it as it is. what (the address) is written only when a reply
		// needs it.
		var buf [128]byte
		b := appendReverseLabels(buf[:0], a)
		b = append(b, r.domain...)
		query = string(append(b, '.'))
	default:
		what = r.subject(ctx, in)
		d, ok := rhsDomain(what)
		if !ok {
			return Outcome{}, nil
		}
		query = d + "." + r.domain
	}
	addrs, err := lookupAddrs(ctx, in, r.dns, query, dns.TypeA)
	res := classify(err)
	if res == dnsNotFound {
		return Outcome{}, nil
	}
	if r.target == xlClientAddr {
		what = a.String()
	}
	if res == dnsTemporary {
		// A block list gives the benefit of the doubt; an allow list
		// must not let a refusal through unnoticed.
		if r.allow {
			in.deferIf(&in.st.deferIfReject, 450, "4.7.1", "<%s>: %s rejected: Service unavailable", what, r.class)
		}
		return Outcome{}, nil
	}
	if r.filter != nil && !r.filter.matchAny(addrs) {
		return Outcome{}, nil
	}
	if r.allow {
		return Outcome{Result: Permit}, nil
	}
	return r.refuse(ctx, in, query, what)
}

// subject is the name a domain list restriction looks up, "" when there
// is none.
func (r dnsxl) subject(ctx context.Context, in *Input) string {
	f := in.Facts
	switch r.target {
	case xlClientName:
		if c := clientNamesOf(ctx, in, r.dns); c.NameStatus == NameOK {
			return c.Name
		}
	case xlReverseClient:
		if c := clientNamesOf(ctx, in, r.dns); c.ReverseNameStatus == NameOK {
			return c.ReverseName
		}
	case xlHELO:
		return f.HELO
	case xlSender:
		if f.InTransaction {
			return f.Sender
		}
	case xlRecipient:
		return f.Recipient
	}
	return ""
}

// rhsDomain is the domain of a name or address that a domain list is
// asked about (find_dnsxl_domain()): the part after the last "@"; none
// for address literals, invalid host names and names ending in a
// numerical label (some lists refuse what looks like an address).
func rhsDomain(what string) (string, bool) {
	d := what
	if i := strings.LastIndexByte(what, '@'); i >= 0 {
		d = what[i+1:]
		if strings.HasPrefix(d, "[") {
			return "", false
		}
	}
	if d == "" || !mailname.ValidHostname(d) {
		return "", false
	}
	last := d
	if i := strings.LastIndexByte(d, '.'); i >= 0 {
		last = d[i+1:]
	}
	if mailname.AllDigits(last) {
		return "", false
	}
	return d, true
}

// reverseLabels writes an address as a DNS list wants it, with the
// trailing dot: "2.0.0.127." for 127.0.0.2, 32 nibbles for IPv6.
func reverseLabels(a netip.Addr) string {
	var buf [72]byte
	return string(appendReverseLabels(buf[:0], a))
}

// appendReverseLabels appends reverseLabels(a) to b.
func appendReverseLabels(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		o := a.As4()
		for i := 3; i >= 0; i-- {
			b = strconv.AppendInt(b, int64(o[i]), 10)
			b = append(b, '.')
		}
		return b
	}
	const hex = "0123456789abcdef"
	o := a.As16()
	for i := 15; i >= 0; i-- {
		b = append(b, hex[o[i]&0xf], '.', hex[o[i]>>4], '.')
	}
	return b
}

// refuse formats the reply: the rbl_reply_maps template for the list, or
// default_rbl_reply (rbl_reject_reply()).
func (r dnsxl) refuse(ctx context.Context, in *Input, query, what string) (Outcome, error) {
	template := ""
	for _, t := range r.reply.tables {
		v, ok, err := t.Lookup(ctx, r.arg)
		in.lookup(Lookup{Table: t.Name(), Key: r.arg, Found: ok, Value: v})
		if err != nil {
			return serverError(in), nil
		}
		if ok {
			template = v
			break
		}
	}
	var reason string
	if txt, err := lookupTXT(ctx, in, r.dns, query); err == nil {
		reason = joinTXT(txt)
	}
	vars := func(name string) (string, bool) {
		switch name {
		case "rbl_code":
			return strconv.Itoa(r.code), true
		case "rbl_domain":
			return r.domain, true
		case "rbl_reason", "rbl_txt":
			return reason, true
		case "rbl_what":
			return what, true
		case "rbl_class":
			return r.class, true
		}
		return sessionVar(in.Facts, name)
	}
	why, ok := "", false
	if template != "" {
		if why, ok = expandTemplate(template, vars); !ok {
			in.st.warnings = append(in.st.warnings, "rbl_reply_maps: bad rbl reply template for domain "+r.arg+": "+template)
		}
	}
	if !ok {
		why, _ = expandTemplate(defaultRBLReply, vars)
	}
	if len(why) < 4 || (why[0] != '4' && why[0] != '5') || !mailname.AllDigits(why[1:3]) || why[3] != ' ' {
		in.st.warnings = append(in.st.warnings, "rbl response code configuration error: "+why)
		return in.Refuse(450, "4.7.1", "Service unavailable"), nil
	}
	code, _ := strconv.Atoi(why[:3])
	dsn, text := splitDSN("4.7.1", why[4:])
	if text == "" {
		text = "Service unavailable"
	}
	return in.Refuse(code, dsn, "%s", text), nil
}

// joinTXT joins a list's TXT records with " / ", at most 500 octets in
// all, as Postfix's rbl_pagein() does.
func joinTXT(txt []string) string {
	var b []byte
	for i, t := range txt {
		space := rblTXTLimit - len(b)
		if space <= 0 {
			break
		}
		b = append(b, t[:min(len(t), space)]...)
		if i+1 < len(txt) && rblTXTLimit-len(b) > 3 {
			b = append(b, " / "...)
		}
	}
	return string(b)
}

// sessionVar is the part of Postfix's smtpd_expand_lookup() a reply
// template can use besides the rbl_* names.
func sessionVar(f *Facts, name string) (string, bool) {
	switch name {
	case "client_address":
		return f.clientAddr(), true
	case "client_name":
		return f.clientName(), true
	case "reverse_client_name":
		if known(f.ReverseClientName) {
			return f.ReverseClientName, true
		}
		return "unknown", true
	case "helo_name":
		return f.HELO, true
	case "sender":
		return f.Sender, true
	case "recipient":
		return f.Recipient, true
	}
	return "", false
}

// expandTemplate expands $name, ${name}, ${name?text} and ${name:text}
// as Postfix's mac_expand() does for reply templates; ok is false when
// the template names something unknown or is malformed.
func expandTemplate(s string, vars func(string) (string, bool)) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch c := s[i+1]; {
		case c == '$':
			b.WriteByte('$')
			i++
		case c == '{' || c == '(':
			closer := byte('}')
			if c == '(' {
				closer = ')'
			}
			end := matchingClose(s, i+1, c, closer)
			if end < 0 {
				return "", false
			}
			inner := s[i+2 : end]
			j := 0
			for j < len(inner) && isTemplateNameByte(inner[j]) {
				j++
			}
			name, rest := inner[:j], inner[j:]
			v, ok := vars(name)
			switch {
			case name == "":
				return "", false
			case rest == "":
				if !ok {
					return "", false
				}
				b.WriteString(v)
			case rest[0] == '?' || rest[0] == ':':
				if (rest[0] == '?') == (ok && v != "") {
					out, ok := expandTemplate(rest[1:], vars)
					if !ok {
						return "", false
					}
					b.WriteString(out)
				}
			default:
				return "", false
			}
			i = end
		case isTemplateNameByte(c):
			j := i + 1
			for j < len(s) && isTemplateNameByte(s[j]) {
				j++
			}
			v, ok := vars(s[i+1 : j])
			if !ok {
				return "", false
			}
			b.WriteString(v)
			i = j - 1
		default:
			b.WriteByte('$')
		}
	}
	return b.String(), true
}

func isTemplateNameByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// matchingClose returns the index of the closer matching s[open].
func matchingClose(s string, open int, opener, closer byte) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case opener:
			depth++
		case closer:
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// ipFilter is the "=d.d.d.d" of a DNS list argument in Postfix's
// ip_match syntax: per octet a number, or a bracketed list of numbers
// and ranges "[1;3;5..7]". A listing counts only when one of the A
// records matches.
type ipFilter struct {
	octets [4][256]bool
}

// parseIPFilter parses the filter after "=".
func parseIPFilter(s string) (*ipFilter, error) {
	f := &ipFilter{}
	rest := s
	for i := range 4 {
		var part string
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, fmt.Errorf("filter %q: missing ']'", s)
			}
			part, rest = rest[1:end], rest[end+1:]
			for _, el := range strings.Split(part, ";") {
				lo, hi, isRange := strings.Cut(el, "..")
				a, errA := octet(lo)
				b := a
				var errB error
				if isRange {
					b, errB = octet(hi)
				}
				if errA != nil || errB != nil || b < a {
					return nil, fmt.Errorf("filter %q: bad octet list [%s]", s, part)
				}
				for v := a; v <= b; v++ {
					f.octets[i][v] = true
				}
			}
		} else {
			end := strings.IndexByte(rest, '.')
			if end < 0 {
				end = len(rest)
			}
			part, rest = rest[:end], rest[end:]
			v, err := octet(part)
			if err != nil {
				return nil, fmt.Errorf("filter %q: bad octet %q", s, part)
			}
			f.octets[i][v] = true
		}
		if i < 3 {
			if !strings.HasPrefix(rest, ".") {
				return nil, fmt.Errorf("filter %q: want four octets", s)
			}
			rest = rest[1:]
		}
	}
	if rest != "" {
		return nil, fmt.Errorf("filter %q: garbage after the fourth octet", s)
	}
	return f, nil
}

func octet(s string) (int, error) {
	if s == "" || len(s) > 3 || !mailname.AllDigits(s) {
		return 0, fmt.Errorf("bad octet %q", s)
	}
	v, _ := strconv.Atoi(s)
	if v > 255 {
		return 0, fmt.Errorf("octet %d > 255", v)
	}
	return v, nil
}

// matchAny reports an IPv4 address among addrs that the filter accepts.
func (f *ipFilter) matchAny(addrs []netip.Addr) bool {
	for _, a := range addrs {
		if a = a.Unmap(); !a.Is4() {
			continue
		}
		o := a.As4()
		if f.octets[0][o[0]] && f.octets[1][o[1]] && f.octets[2][o[2]] && f.octets[3][o[3]] {
			return true
		}
	}
	return false
}
