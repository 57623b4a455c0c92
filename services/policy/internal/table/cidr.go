package table

import (
	"net/netip"
	"strconv"
	"strings"
)

// cidr: tables, https://www.postfix.org/cidr_table.5.html.
//
// A rule is "pattern result" where pattern is an address or
// network/prefix-length, IPv4 or IPv6, optionally in [] and optionally
// negated with "!". "if pattern" ... "endif" blocks (Postfix 3.2) nest.
// The first match in file order wins. Keys that are not IP addresses
// match nothing. An IPv4-mapped IPv6 key (::ffff:192.0.2.1) is looked up
// as the IPv4 address, and an IPv4-mapped pattern with a prefix length
// of 96 or more as the IPv4 network.
//
// For speed, each run of plain (not negated, not "if") rules is indexed
// by prefix: a lookup costs one map probe per distinct prefix length in
// the run, and the lowest rule number found wins, which keeps the
// first-match order.

type cidrRule struct {
	prefix netip.Prefix
	negate bool
	value  string
}

func (r *cidrRule) match(a netip.Addr) bool {
	return r.prefix.Contains(a) != r.negate
}

// cidrItem is one step of a lookup: a run of plain rules, a negated
// rule, or an if block.
type cidrItem struct {
	group *cidrGroup
	rule  *cidrRule // a negated rule
	block *cidrIf
}

// cidrIf is an if block: its condition (value unused) and contents.
type cidrIf struct {
	cond cidrRule
	body []cidrItem
}

// cidrGroup is a run of plain rules, indexed when it is long.
type cidrGroup struct {
	rules  []cidrRule
	index  map[netip.Prefix]int // masked prefix -> first rule with it
	lens4  []int
	lens6  []int
	linear bool
}

// cidrLinearMax is the longest run of rules searched without an index.
const cidrLinearMax = 8

func (g *cidrGroup) build() {
	if len(g.rules) <= cidrLinearMax {
		g.linear = true
		return
	}
	g.index = make(map[netip.Prefix]int, len(g.rules))
	seen4, seen6 := map[int]bool{}, map[int]bool{}
	for i, r := range g.rules {
		if _, dup := g.index[r.prefix]; !dup {
			g.index[r.prefix] = i
		}
		b := r.prefix.Bits()
		if r.prefix.Addr().Is4() {
			if !seen4[b] {
				seen4[b] = true
				g.lens4 = append(g.lens4, b)
			}
		} else if !seen6[b] {
			seen6[b] = true
			g.lens6 = append(g.lens6, b)
		}
	}
}

func (g *cidrGroup) lookup(a netip.Addr) (string, bool) {
	if g.linear {
		for i := range g.rules {
			if g.rules[i].prefix.Contains(a) {
				return g.rules[i].value, true
			}
		}
		return "", false
	}
	lens := g.lens6
	if a.Is4() {
		lens = g.lens4
	}
	best := -1
	for _, b := range lens {
		p, _ := a.Prefix(b)
		if i, ok := g.index[p]; ok && (best < 0 || i < best) {
			best = i
		}
	}
	if best < 0 {
		return "", false
	}
	return g.rules[best].value, true
}

func cidrLookup(items []cidrItem, a netip.Addr) (string, bool) {
	for i := range items {
		it := &items[i]
		switch {
		case it.group != nil:
			if v, ok := it.group.lookup(a); ok {
				return v, true
			}
		case it.rule != nil:
			if it.rule.match(a) {
				return it.rule.value, true
			}
		case it.block != nil:
			if it.block.cond.match(a) {
				if v, ok := cidrLookup(it.block.body, a); ok {
					return v, true
				}
			}
		}
	}
	return "", false
}

type cidrTable struct {
	items []cidrItem
	ents  []Entry
}

func (t *cidrTable) lookup(key string) (string, bool) {
	a, err := netip.ParseAddr(key)
	if err != nil {
		return "", false
	}
	a = a.WithZone("").Unmap()
	return cidrLookup(t.items, a)
}

func (t *cidrTable) entries() []Entry { return t.ents }

// parseCIDRPattern parses "[!]address[/length]" with optional [] around
// the address or around both, as cidr_table(5) allows.
func parseCIDRPattern(text string) (cidrRule, string) {
	var r cidrRule
	for strings.HasPrefix(text, "!") {
		r.negate = !r.negate
		text = text[1:]
	}
	if text == "" {
		return r, "missing address pattern"
	}
	addrText, maskText, hasMask := text, "", false
	if strings.HasPrefix(text, "[") {
		inner, after, ok := strings.Cut(text[1:], "]")
		switch {
		case !ok:
			return r, "missing ']' in " + strconv.Quote(text)
		case after == "":
			addrText = inner
		case strings.HasPrefix(after, "/"):
			addrText, maskText, hasMask = inner, after[1:], true
		default:
			return r, "garbage after ']' in " + strconv.Quote(text)
		}
	}
	if !hasMask {
		if i := strings.LastIndexByte(addrText, '/'); i >= 0 {
			addrText, maskText, hasMask = addrText[:i], addrText[i+1:], true
		}
	}
	a, err := netip.ParseAddr(addrText)
	if err != nil || a.Zone() != "" {
		return r, "bad address pattern: " + strconv.Quote(text)
	}
	bits := a.BitLen()
	if hasMask {
		n, err := strconv.Atoi(maskText)
		if err != nil || maskText == "" || maskText[0] < '0' || maskText[0] > '9' || len(maskText) > 3 || n > a.BitLen() {
			return r, "bad net/mask pattern: " + strconv.Quote(text)
		}
		bits = n
	}
	p := netip.PrefixFrom(a, bits)
	if m := p.Masked(); m != p {
		return r, "non-null host address bits in " + strconv.Quote(addrText+"/"+maskText) +
			", perhaps you should use " + strconv.Quote(m.String()) + " instead"
	}
	if a.Is4In6() && bits >= 96 {
		p = netip.PrefixFrom(a.Unmap(), bits-96)
	}
	r.prefix = p
	return r, ""
}

func parseCIDR(s *source) (matcher, error) {
	lines, err := s.lines()
	if err != nil {
		return nil, err
	}
	t := &cidrTable{}
	type frame struct {
		items *[]cidrItem
		line  int
	}
	top := []cidrItem{}
	stack := []frame{{items: &top}}
	var group *cidrGroup
	closeGroup := func() {
		if group != nil {
			group.build()
			group = nil
		}
	}
	for _, l := range lines {
		cur := stack[len(stack)-1].items
		word, rest := splitWord(l.text)
		switch {
		case strings.EqualFold(word, "if"):
			if rest == "" {
				return nil, s.errorf(l.line, "no address pattern after \"if\"")
			}
			pat, extra := splitWord(rest)
			if extra != "" {
				return nil, s.errorf(l.line, "extra text after \"if\" pattern: %q", extra)
			}
			cond, msg := parseCIDRPattern(pat)
			if msg != "" {
				return nil, s.errorf(l.line, "%s", msg)
			}
			closeGroup()
			block := &cidrIf{cond: cond}
			*cur = append(*cur, cidrItem{block: block})
			stack = append(stack, frame{items: &block.body, line: l.line})
			t.ents = append(t.ents, Entry{Pos: s.pos(l.line), Key: "if " + pat})
		case strings.EqualFold(word, "endif"):
			if rest != "" {
				return nil, s.errorf(l.line, "extra text after \"endif\": %q", rest)
			}
			if len(stack) == 1 {
				return nil, s.errorf(l.line, "endif without matching if")
			}
			closeGroup()
			stack = stack[:len(stack)-1]
			t.ents = append(t.ents, Entry{Pos: s.pos(l.line), Key: "endif"})
		default:
			if rest == "" {
				return nil, s.errorf(l.line, "expected format: pattern whitespace result")
			}
			r, msg := parseCIDRPattern(word)
			if msg != "" {
				return nil, s.errorf(l.line, "%s", msg)
			}
			r.value = rest
			if r.negate {
				closeGroup()
				*cur = append(*cur, cidrItem{rule: &r})
			} else {
				if group == nil {
					group = &cidrGroup{}
					*cur = append(*cur, cidrItem{group: group})
				}
				group.rules = append(group.rules, r)
			}
			t.ents = append(t.ents, Entry{Pos: s.pos(l.line), Key: word, Value: rest})
		}
	}
	closeGroup()
	if len(stack) > 1 {
		return nil, s.errorf(stack[len(stack)-1].line, "if has no matching endif")
	}
	t.items = top
	return t, nil
}

// splitWord splits at the first run of blanks.
func splitWord(s string) (word, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}
