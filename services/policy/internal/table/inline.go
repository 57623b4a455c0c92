package table

import (
	"context"
	"fmt"
	"strings"
)

// memTable is a table given in main.cf itself: inline: and static:.
type memTable struct {
	spec string
	m    matcher
}

func (t *memTable) Lookup(_ context.Context, key string) (string, bool, error) {
	v, ok := t.m.lookup(key)
	return v, ok, nil
}

func (t *memTable) Pattern() bool    { return false }
func (t *memTable) Name() string     { return t.spec }
func (t *memTable) Entries() []Entry { return t.m.entries() }

// openInline opens "inline:{ key=value, { key = value with spaces } }"
// (Postfix 3.0 and later, https://www.postfix.org/DATABASE_README.html#types).
// Elements are separated by commas or whitespace; an element in braces
// may contain both, and whitespace around its "=" is dropped. Keys are
// case-folded like those of other fixed-string tables. A duplicate key
// keeps the first value.
func openInline(spec, name string) (Table, error) {
	m, err := parseInline(spec, name)
	if err != nil {
		return nil, err
	}
	return &memTable{spec: spec, m: m}, nil
}

func parseInline(spec, name string) (*hashTable, error) {
	fail := func(format string, args ...any) (*hashTable, error) {
		return nil, fmt.Errorf("table %q: %s; need \"inline:{name=value...}\"", spec, fmt.Sprintf(format, args...))
	}
	body, err := stripBraces(name)
	if err != nil {
		return fail("%v", err)
	}
	elems, err := splitBraced(body)
	if err != nil {
		return fail("%v", err)
	}
	h := newHashTable("", spec, len(name))
	for _, el := range elems {
		if strings.HasPrefix(el, "{") {
			if el, err = stripBraces(el); err != nil {
				return fail("%v", err)
			}
		}
		k, v, ok := strings.Cut(el, "=")
		if !ok {
			return fail("missing '=' after attribute name in %q", el)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "" {
			return fail("missing attribute name in %q", el)
		}
		if _, err := h.add(0, []byte(k), []byte(v)); err != nil {
			return fail("%v", err)
		}
	}
	if len(h.ents) == 0 {
		return fail("empty table")
	}
	return h.seal(), nil
}

// stripBraces turns "{ text }" into "text": the braces must be the first
// and last characters and balanced.
func stripBraces(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") {
		return "", fmt.Errorf("missing '{' in %q", s)
	}
	depth := 0
	for i, c := range s {
		switch c {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 && i != len(s)-1 {
				return "", fmt.Errorf("text after '}' in %q", s)
			}
		}
	}
	if depth != 0 {
		return "", fmt.Errorf("unbalanced '{' in %q", s)
	}
	return strings.TrimSpace(s[1 : len(s)-1]), nil
}

// splitBraced splits at commas and whitespace outside braces.
func splitBraced(s string) ([]string, error) {
	var (
		out   []string
		depth int
		start = -1
	)
	for i, c := range s {
		switch {
		case c == '{':
			depth++
		case c == '}':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("unbalanced '}' in %q", s)
			}
		case depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unbalanced '{' in %q", s)
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out, nil
}

// staticTable answers every lookup with one value.
type staticTable struct {
	value string
	ents  []Entry
}

func (t *staticTable) lookup(string) (string, bool) { return t.value, true }
func (t *staticTable) entries() []Entry             { return t.ents }

// openStatic opens "static:value" or "static:{ value with spaces }".
// Its one entry has an empty Key: it matches every key.
func openStatic(spec, name string) (Table, error) {
	v := name
	if strings.HasPrefix(strings.TrimSpace(name), "{") {
		var err error
		if v, err = stripBraces(name); err != nil {
			return nil, fmt.Errorf("table %q: %v", spec, err)
		}
	}
	return &memTable{spec: spec, m: &staticTable{value: v, ents: []Entry{{Pos: spec, Value: v}}}}, nil
}
