package table

import (
	"fmt"
	"strings"
)

// The parts of the key and of a result that templates use, as in
// Postfix's db_common.c.
const (
	needKeyDomain = 1 << iota
	needKeyUser
	needValueDomain
	needValueUser
)

// templates are a table's query (or LDAP query_filter) and
// result_format, checked together as db_common_parse() does: the
// query's %d, %D, %[1-9] and %u, %U decide which keys are looked up at
// all, the result format's %d and %u which results are kept.
type templates struct {
	query, result string
	flags         int
	// nparts is the highest %[1-9] of the query: keys whose domain has
	// fewer labels are not looked up.
	nparts int
	// dynamic reports a query that uses the key at all.
	dynamic bool
}

// parseTemplates checks a query and a result format. An unknown %x is
// an error (Postfix stops with "Invalid query template").
func parseTemplates(query, result string) (templates, error) {
	t := templates{query: query, result: result}
	var err error
	if t.dynamic, err = t.parse(query, true); err != nil {
		return t, err
	}
	if _, err = t.parse(result, false); err != nil {
		return t, err
	}
	return t, nil
}

func (t *templates) parse(format string, query bool) (dynamic bool, err error) {
	what := "result_format"
	if query {
		what = "query"
	}
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		i++
		if i == len(format) {
			return dynamic, fmt.Errorf("invalid %s template %q: %% at the end", what, format)
		}
		switch c := format[i]; c {
		case '%':
		case 's', 'S':
			dynamic = true
		case 'u':
			if query {
				t.flags |= needKeyUser
			} else {
				t.flags |= needValueUser
			}
			dynamic = true
		case 'd':
			if query {
				t.flags |= needKeyDomain
			} else {
				t.flags |= needValueDomain
			}
			dynamic = true
		case 'U':
			t.flags |= needKeyUser
			dynamic = true
		case '1', '2', '3', '4', '5', '6', '7', '8', '9':
			if n := int(c - '0'); n > t.nparts {
				t.nparts = n
			}
			t.flags |= needKeyDomain
			dynamic = true
		case 'D':
			t.flags |= needKeyDomain
			dynamic = true
		default:
			return dynamic, fmt.Errorf("invalid %s template %q: unknown %%%c", what, format, c)
		}
	}
	return dynamic, nil
}

// splitAt returns the local part and the domain of s at its last '@';
// hasAt is false without one.
func splitAt(s string) (user, domain string, hasAt bool) {
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// usable reports whether s has what the flags need: a non-empty domain
// for needDomain, a non-empty local part for needUser.
func usable(s string, needDomain, needUser bool) bool {
	if !needDomain && !needUser {
		return true
	}
	user, domain, hasAt := splitAt(s)
	if needDomain && (!hasAt || domain == "") {
		return false
	}
	if needUser && hasAt && user == "" {
		return false
	}
	return true
}

// expandQuery expands the query for key; ok is false when the key
// cannot fill it in (no domain for %d, an empty local part for %u, too
// few labels for %[1-9]), and the table then has no entry for it
// without asking the database. quote escapes each inserted part.
func (t *templates) expandQuery(key string, quote func(string) string) (string, bool) {
	if !usable(key, t.flags&needKeyDomain != 0, t.flags&needKeyUser != 0) {
		return "", false
	}
	var b strings.Builder
	if !t.expand(&b, t.query, key, "", quote) {
		return "", false
	}
	return b.String(), true
}

// appendResult expands the result format for one value looked up with
// key and appends it to b, after a comma when b is not empty. It
// reports false, appending nothing, for an empty value and for a value
// that lacks what the format needs (a domain for %d, a local part for
// %u).
func (t *templates) appendResult(b *strings.Builder, value, key string) bool {
	if value == "" {
		return false
	}
	if !usable(value, t.flags&needValueDomain != 0, t.flags&needValueUser != 0) {
		return false
	}
	if !usable(key, t.flags&needKeyDomain != 0, t.flags&needKeyUser != 0) {
		return false
	}
	mark := b.Len()
	if mark > 0 {
		b.WriteByte(',')
	}
	var tmp strings.Builder
	if !t.expand(&tmp, t.result, value, key, nil) {
		// Cannot happen after the checks above; keep b as it was.
		s := b.String()[:mark]
		b.Reset()
		b.WriteString(s)
		return false
	}
	b.WriteString(tmp.String())
	return true
}

// expand writes format with value (and, for a result, the lookup key)
// filled in, as db_common_expand() does: lower-case %s %u %d are parts
// of value, upper-case %S %U %D and %[1-9] parts of the key (of value
// in a query, where there is no other key).
func (t *templates) expand(b *strings.Builder, format, value, key string, quote func(string) string) bool {
	put := func(s string) {
		if quote != nil {
			s = quote(s)
		}
		b.WriteString(s)
	}
	isResult := key != ""
	k := value
	if isResult {
		k = key
	}
	vuser, vdomain, vat := splitAt(value)
	kuser, kdomain, kat := splitAt(k)
	var labels []string
	if t.nparts > 0 {
		if !kat {
			return false
		}
		// Postfix splits with mystrtok(): empty labels ("a..b",
		// a trailing dot) are skipped, not counted.
		labels = strings.FieldsFunc(kdomain, func(r rune) bool { return r == '.' })
		if len(labels) < t.nparts {
			return false
		}
	}
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 == len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		switch c = format[i]; c {
		case '%':
			b.WriteByte('%')
		case 's':
			put(value)
		case 'u':
			put(vuser)
		case 'd':
			if !vat {
				return false
			}
			put(vdomain)
		case 'S':
			put(k)
		case 'U':
			put(kuser)
		case 'D':
			if !kat {
				return false
			}
			put(kdomain)
		case '1', '2', '3', '4', '5', '6', '7', '8', '9':
			n := int(c - '0')
			if n > len(labels) {
				return false
			}
			put(labels[len(labels)-n])
		default:
			return false
		}
	}
	return true
}

// domainFilter is a table's "domain" setting: when set, only addresses
// (user@domain) whose domain is listed are looked up; other keys are not
// found without asking the database. Names are compared without regard
// to case, whole names only (Postfix's string_list, not a domain list:
// no parent-domain matching); "!name" excludes a name.
type domainFilter struct {
	names []string
}

// parseDomainFilter reads "domain = a.example, b.example". File names
// and type:table lookups, which Postfix's match lists also accept, are
// refused: say the domains in the file.
func parseDomainFilter(value string) (*domainFilter, error) {
	fields := strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	if len(fields) == 0 {
		return nil, nil
	}
	f := &domainFilter{}
	for _, n := range fields {
		bare := strings.TrimPrefix(n, "!")
		if strings.HasPrefix(bare, "/") || strings.Contains(bare, ":") {
			return nil, fmt.Errorf("%q: file names and type:table lookups in the domain list are not supported; list the domains", n)
		}
		f.names = append(f.names, strings.ToLower(n))
	}
	return f, nil
}

// allows reports whether key is looked up.
func (f *domainFilter) allows(key string) bool {
	if f == nil {
		return true
	}
	user, domain, hasAt := splitAt(key)
	// Postfix refuses a key without '@' and one that starts with it
	// ("@domain": domain == addr + 1 in db_common_check_domain()).
	if !hasAt || user == "" {
		return false
	}
	domain = strings.ToLower(domain)
	for _, n := range f.names {
		if strings.HasPrefix(n, "!") {
			if n[1:] == domain {
				return false
			}
			continue
		}
		if n == domain {
			return true
		}
	}
	return false
}
