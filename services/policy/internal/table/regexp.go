package table

import (
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
)

// regexp: and pcre: tables share a file format
// (https://www.postfix.org/regexp_table.5.html,
// https://www.postfix.org/pcre_table.5.html):
//
//	/pattern/flags result
//	!/pattern/flags result
//	if /pattern/flags
//	endif
//
// The delimiter is any character that is not a letter or digit; a
// backslash escapes it inside the pattern. "!" before a pattern negates
// it. The first rule that matches wins; "if" blocks nest. The result may
// use $1..$9 (also ${n} and $(n)) for the text the n-th group matched,
// and $$ for a dollar sign. regexp: tables also accept Postfix's older
// "/pattern1/!/pattern2/ result": pattern1 matches and pattern2 does not.

type reDialect int

const (
	dialectRegexp reDialect = iota
	dialectPCRE
)

const (
	opMatch = iota
	opIf
	opEndif
)

// rePattern is one compiled pattern.
type rePattern struct {
	re     *regexp.Regexp
	negate bool
	// lit is text that every match contains; when the key lacks it the
	// regexp is not run. litFold says lit is lower case and must be
	// found in the lower-cased key.
	lit     string
	litFold bool
	// litGrams has a bit for each trigram of lit, ASCII lower-cased.
	litGrams trigrams
}

// keyView is a lookup key with its ASCII lower-case form and trigram
// set made on demand.
type keyView struct {
	s     string
	lower string
	state int8 // 0: not yet; 1: lower is set; 2: the key is not ASCII
	ascii bool
	grams trigrams
}

func newKeyView(key string) keyView {
	return keyView{s: key, ascii: isASCII(key), grams: trigramsOf(key)}
}

// trigrams is a 256-bit Bloom filter of the three-byte substrings of a
// string, with ASCII letters lower-cased. If a is a substring of b (even
// ignoring ASCII case), trigramsOf(b) has every bit of trigramsOf(a).
// With a thousand rules, testing the filter of each rule's literal
// against the key's is much cheaper than a substring search.
type trigrams [4]uint64

func trigramsOf(s string) trigrams {
	var t trigrams
	for i := 0; i+3 <= len(s); i++ {
		h := uint32(lowerASCII(s[i]))<<16 | uint32(lowerASCII(s[i+1]))<<8 | uint32(lowerASCII(s[i+2]))
		bit := (h * 0x9E3779B1) >> 24
		t[bit>>6] |= 1 << (bit & 63)
	}
	return t
}

func (t *trigrams) hasAll(sub *trigrams) bool {
	return t[0]&sub[0] == sub[0] && t[1]&sub[1] == sub[1] && t[2]&sub[2] == sub[2] && t[3]&sub[3] == sub[3]
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func (k *keyView) folded() (string, bool) {
	if k.state == 0 {
		k.state = 2
		if k.ascii {
			k.lower, k.state = strings.ToLower(k.s), 1
		}
	}
	return k.lower, k.state == 1
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// mayMatch is the cheap test: false means the regexp cannot match.
func (p *rePattern) mayMatch(k *keyView) bool {
	if p.lit == "" {
		return true
	}
	if len(p.lit) >= 3 && !k.grams.hasAll(&p.litGrams) {
		// With Unicode folding a non-ASCII key can match ASCII text
		// ("K", the Kelvin sign, matches (?i)k), so only ASCII keys
		// and case-sensitive literals can be ruled out this way.
		if !p.litFold || k.ascii {
			return false
		}
	}
	if !p.litFold {
		return strings.Contains(k.s, p.lit)
	}
	// Go's case folding is Unicode's: "ſ" matches (?i)s. Only an ASCII
	// key can be tested against the ASCII literal.
	if l, ok := k.folded(); ok {
		return strings.Contains(l, p.lit)
	}
	return true
}

func (p *rePattern) match(k *keyView) bool {
	return (p.mayMatch(k) && p.re.MatchString(k.s)) != p.negate
}

type reRule struct {
	op     int
	first  rePattern
	second *rePattern
	tmpl   template
	endif  int // opIf: index of the matching endif
}

type reTable struct {
	rules []reRule
	// gates parallels rules: a compact first test that lets a lookup
	// skip most rules of a long table without touching the rule.
	gates []reGate
	ents  []Entry
}

// reGate rules out a match rule whose pattern needs a literal the key
// lacks (see trigrams). use is false for other rules.
type reGate struct {
	grams trigrams
	use   bool
	fold  bool
}

func (t *reTable) lookup(key string) (string, bool) {
	k := newKeyView(key)
	for i := 0; i < len(t.rules); i++ {
		if g := &t.gates[i]; g.use && (!g.fold || k.ascii) && !k.grams.hasAll(&g.grams) {
			continue
		}
		r := &t.rules[i]
		switch r.op {
		case opMatch:
			var loc []int
			if r.tmpl.parts == nil {
				if !r.first.match(&k) {
					continue
				}
			} else {
				// Negated patterns have no $n; see parseRule.
				if !r.first.mayMatch(&k) {
					continue
				}
				if loc = r.first.re.FindStringSubmatchIndex(key); loc == nil {
					continue
				}
			}
			if r.second != nil && !r.second.match(&k) {
				continue
			}
			return r.tmpl.expand(key, loc), true
		case opIf:
			if !r.first.match(&k) {
				i = r.endif
			}
		}
	}
	return "", false
}

func (t *reTable) entries() []Entry { return t.ents }

func parseRegexp(s *source) (matcher, error) { return parseRE(s, dialectRegexp) }

func parsePCRE(s *source) (matcher, error) { return parseRE(s, dialectPCRE) }

func parseRE(s *source, d reDialect) (matcher, error) {
	lines, err := s.lines()
	if err != nil {
		return nil, err
	}
	t := &reTable{rules: make([]reRule, 0, len(lines))}
	var open []int // indexes of the unclosed if rules
	openLine := map[int]int{}
	for _, l := range lines {
		p := l.text
		switch {
		case !isAlnum(p[0]):
			r, err := parseRule(s, d, l.line, p)
			if err != nil {
				return nil, err
			}
			t.rules = append(t.rules, r)
			t.ents = append(t.ents, Entry{Pos: s.pos(l.line), Key: strings.TrimSpace(p[:len(p)-len(r.tmpl.src)]), Value: r.tmpl.src})
		case hasKeyword(p, "if"):
			rest := strings.TrimSpace(p[2:])
			pat, after, err := parsePattern(s, d, l.line, rest)
			if err != nil {
				return nil, err
			}
			if strings.TrimSpace(after) != "" {
				return nil, s.errorf(l.line, "extra text after \"if\" pattern: %q (do not indent the rules between if and endif: a line that starts with whitespace continues the line before)", strings.TrimSpace(after))
			}
			open = append(open, len(t.rules))
			openLine[len(t.rules)] = l.line
			t.rules = append(t.rules, reRule{op: opIf, first: pat})
			t.ents = append(t.ents, Entry{Pos: s.pos(l.line), Key: "if " + strings.TrimSpace(rest[:len(rest)-len(after)])})
		case hasKeyword(p, "endif"):
			if len(open) == 0 {
				return nil, s.errorf(l.line, "endif without matching if")
			}
			if rest := strings.TrimSpace(p[5:]); rest != "" {
				return nil, s.errorf(l.line, "extra text after \"endif\": %q", rest)
			}
			t.rules[open[len(open)-1]].endif = len(t.rules)
			open = open[:len(open)-1]
			t.rules = append(t.rules, reRule{op: opEndif})
			t.ents = append(t.ents, Entry{Pos: s.pos(l.line), Key: "endif"})
		default:
			return nil, s.errorf(l.line, "unrecognized request: expected /pattern/ result, if /pattern/ or endif")
		}
	}
	if len(open) > 0 {
		return nil, s.errorf(openLine[open[len(open)-1]], "if has no matching endif")
	}
	t.gates = make([]reGate, len(t.rules))
	for i, r := range t.rules {
		if r.op == opMatch && !r.first.negate && len(r.first.lit) >= 3 {
			t.gates[i] = reGate{grams: r.first.litGrams, use: true, fold: r.first.litFold}
		}
	}
	return t, nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// hasKeyword reports whether p starts with kw, in any case, followed by
// a character that is not a letter or digit.
func hasKeyword(p, kw string) bool {
	return len(p) >= len(kw) && strings.EqualFold(p[:len(kw)], kw) && (len(p) == len(kw) || !isAlnum(p[len(kw)]))
}

// parseRule parses "[!]/re/flags[!/re2/flags] result".
func parseRule(s *source, d reDialect, line int, p string) (reRule, error) {
	r := reRule{op: opMatch}
	first, rest, err := parsePattern(s, d, line, p)
	if err != nil {
		return r, err
	}
	r.first = first
	if d == dialectRegexp && strings.HasPrefix(rest, "!") {
		second, after, err := parsePattern(s, d, line, rest)
		if err != nil {
			return r, err
		}
		r.second, rest = &second, after
	}
	result := strings.TrimSpace(rest)
	if result == "" {
		s.warnf(line, "no replacement text: using empty string")
	}
	tmpl, msg := parseTemplate(result)
	if msg != "" {
		return r, s.errorf(line, "bad replacement syntax: %s", msg)
	}
	if tmpl.maxGroup > 0 && first.negate {
		return r, s.errorf(line, "$number found in negative match replacement text")
	}
	if n := first.re.NumSubexp(); tmpl.maxGroup > n {
		return r, s.errorf(line, "out of range replacement index \"%d\": the pattern has %d group(s)", tmpl.maxGroup, n)
	}
	if d == dialectRegexp && tmpl.maxGroup > 0 {
		// POSIX regexec() picks the leftmost-longest match; that decides
		// what $n expands to. (Whether there is a match at all does not
		// depend on it, and Go matches faster without it.)
		first.re.Longest()
	}
	r.tmpl = tmpl
	return r, nil
}

// parsePattern parses "[!]<delim>pattern<delim>flags" at the start of p
// and returns the rest of p.
func parsePattern(s *source, d reDialect, line int, p string) (rePattern, string, error) {
	var pat rePattern
	for p != "" && (p[0] == '!' || p[0] == ' ' || p[0] == '\t') {
		if p[0] == '!' {
			pat.negate = !pat.negate
		}
		p = p[1:]
	}
	if p == "" {
		return pat, "", s.errorf(line, "no regexp")
	}
	delim := p[0]
	if isAlnum(delim) || delim == '\\' || delim >= 0x80 {
		return pat, "", s.errorf(line, "bad regexp delimiter %q: use a punctuation character such as '/'", rune(delim))
	}
	i := 1
	for ; i < len(p); i++ {
		if p[i] == '\\' && i+1 < len(p) {
			i++
		} else if p[i] == delim {
			break
		}
	}
	if i >= len(p) {
		return pat, "", s.errorf(line, "no closing regexp delimiter %q", rune(delim))
	}
	body := p[1:i]
	p = p[i+1:]
	j := 0
	for j < len(p) && p[j] != ' ' && p[j] != '\t' && !(d == dialectRegexp && p[j] == '!') {
		j++
	}
	flags := p[:j]
	p = p[j:]
	var (
		expr string
		err  error
	)
	if d == dialectRegexp {
		expr, err = compilePOSIX(body, flags)
	} else {
		expr, err = compilePCRE(body, flags)
	}
	if err != nil {
		return pat, "", s.errorf(line, "%v", err)
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return pat, "", s.errorf(line, "%v: smtpgate uses Go's RE2 engine (%s)", err, re2Syntax)
	}
	pat.re = re
	pat.lit, pat.litFold = requiredLiteral(expr)
	pat.litGrams = trigramsOf(pat.lit)
	return pat, p, nil
}

const re2Syntax = "https://github.com/google/re2/wiki/Syntax"

// requiredLiteral finds a literal string that every match of expr
// contains: the longest literal at the top level of the expression.
func requiredLiteral(expr string) (lit string, fold bool) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return "", false
	}
	re = re.Simplify()
	for re.Op == syntax.OpCapture && len(re.Sub) == 1 {
		re = re.Sub[0]
	}
	subs := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		subs = re.Sub
	}
	for _, sub := range subs {
		if sub.Op != syntax.OpLiteral {
			continue
		}
		f := sub.Flags&syntax.FoldCase != 0
		text := string(sub.Rune)
		if f {
			if !isASCII(text) {
				continue
			}
			text = strings.ToLower(text)
		}
		if len(text) > len(lit) {
			lit, fold = text, f
		}
	}
	return lit, fold
}

// template is a result with $n references.
type template struct {
	src      string
	lit      string // the result when parts is nil, with $$ undone
	parts    []tmplPart
	maxGroup int
}

type tmplPart struct {
	text  string
	group int // > 0: the group's text; 0: text
}

// parseTemplate parses a result the way Postfix's mac_parse() does for
// regexp tables: "$$" is "$"; "$name", "${name}" and "$(name)" are
// references and name must be a number from 1 up.
func parseTemplate(src string) (template, string) {
	t := template{src: src}
	var (
		lit   strings.Builder
		parts []tmplPart
	)
	for i := 0; i < len(src); {
		c := src[i]
		if c != '$' {
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(src) && src[i+1] == '$' {
			lit.WriteByte('$')
			i += 2
			continue
		}
		i++
		var name string
		if i < len(src) && (src[i] == '{' || src[i] == '(') {
			open, closer := src[i], byte('}')
			if open == '(' {
				closer = ')'
			}
			level, j := 1, i+1
			for ; j < len(src); j++ {
				if src[j] == open {
					level++
				} else if src[j] == closer {
					if level--; level == 0 {
						break
					}
				}
			}
			if j >= len(src) {
				return t, "truncated macro reference " + strconv.Quote(src[i-1:])
			}
			name, i = src[i+1:j], j+1
		} else {
			j := i
			for j < len(src) && (isAlnum(src[j]) || src[j] == '_') {
				j++
			}
			name, i = src[i:j], j
		}
		if name == "" {
			return t, "empty macro name: a lone $ is written $$"
		}
		n, err := strconv.Atoi(name)
		if err != nil || name[0] == '+' || name[0] == '-' {
			return t, "non-numeric replacement index " + strconv.Quote(name)
		}
		if n < 1 {
			return t, "out-of-range replacement index " + strconv.Quote(name)
		}
		if lit.Len() > 0 {
			parts = append(parts, tmplPart{text: lit.String()})
			lit.Reset()
		}
		parts = append(parts, tmplPart{group: n})
		t.maxGroup = max(t.maxGroup, n)
	}
	if parts == nil {
		t.lit = lit.String()
		return t, ""
	}
	if lit.Len() > 0 {
		parts = append(parts, tmplPart{text: lit.String()})
	}
	t.parts = parts
	return t, ""
}

// expand fills in the groups from a FindStringSubmatchIndex result. A
// group that did not take part in the match expands to nothing.
func (t *template) expand(key string, loc []int) string {
	if t.parts == nil {
		return t.lit
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.group == 0 {
			b.WriteString(p.text)
			continue
		}
		if 2*p.group+1 < len(loc) && loc[2*p.group] >= 0 {
			b.WriteString(key[loc[2*p.group]:loc[2*p.group+1]])
		}
	}
	return b.String()
}
