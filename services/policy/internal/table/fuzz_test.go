package table

import (
	"context"
	"net/netip"
	"strings"
	"testing"
)

// The fuzz targets parse arbitrary table text and, when it parses, look
// up arbitrary keys. Nothing may panic, and a few invariants must hold.
// Seeds beyond the f.Add ones are in testdata/fuzz/<FuzzName>/.

func fuzzSource(typ, text string) *source {
	return &source{typ: typ, file: "fuzz", data: []byte(text)}
}

func FuzzCIDR(f *testing.F) {
	f.Add("192.0.2.0/24 REJECT\n!198.51.100.0/24 OK\n", "192.0.2.1")
	f.Add("if [2001:db8::]/32\n2001:db8::1 x\nendif\n::/0 y\n", "2001:db8::1")
	f.Add("::ffff:192.0.2.0/120 mapped\n", "192.0.2.9")
	f.Add("10.0.0.1/8 bad\n", "10.0.0.1")
	f.Fuzz(func(t *testing.T, text, key string) {
		m, err := parseCIDR(fuzzSource("cidr", text))
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error %v is %T, not *ParseError", err, err)
			}
			return
		}
		v, ok := m.lookup(key)
		if _, perr := netip.ParseAddr(key); perr != nil && ok {
			t.Fatalf("non-address key %q matched", key)
		}
		if a, perr := netip.ParseAddr(key); perr == nil {
			nv, nok := cidrNaive(m.(*cidrTable).items, a.WithZone("").Unmap())
			if v != nv || ok != nok {
				t.Fatalf("lookup(%q) = %q, %v; linear search gives %q, %v", key, v, ok, nv, nok)
			}
		}
		for _, e := range m.entries() {
			m.lookup(strings.TrimPrefix(e.Key, "!"))
		}
	})
}

func FuzzRegexp(f *testing.F) {
	fuzzRE(f, "regexp", parseRegexp, [][2]string{
		{"/^(.*)@example\\.com$/ OK $1\n!/x/ REJECT\n", "joe@example.com"},
		{"if /a/\n/b/!/c/ ${1}\nendif\n", "ab"},
		{"/^a\\(b\\)*$/x $1\n", "abb"},
		{"%[[:alpha:]]{,3}% $$\n", "abc"},
	}, func(key string) []string { return []string{key, strings.ToUpper(key)} })
}

func FuzzPCRE(f *testing.F) {
	fuzzRE(f, "pcre", parsePCRE, [][2]string{
		{"/^(\\d+)\\.example$/ digits $1\n", "123.example"},
		{"/ a b # c/x x\n/(?'n'q)\\Q*+\\E/U y\n", "ab"},
		{"/(?=a)/ x\n", "a"},
		{"/a{2,3}+/ x\n/[\\h\\v]/A y\n", "aa"},
	}, func(key string) []string { return []string{key} })
}

// fuzzRE fuzzes a regexp-style table: seeds are (table text, key) pairs;
// when the text parses, each of keys(key) must get the same answer with
// and without the literal filters (checkNaive).
func fuzzRE(f *testing.F, typ string, parse func(*source) (matcher, error), seeds [][2]string, keys func(string) []string) {
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, text, key string) {
		m, err := parse(fuzzSource(typ, text))
		if err == nil {
			checkNaive(t, m, keys(key)...)
		}
	})
}

// checkNaive looks keys up in a regexp or PCRE table and fails when an
// answer differs from the one found without the literal filters.
func checkNaive(t *testing.T, m matcher, keys ...string) {
	t.Helper()
	for _, k := range keys {
		v, ok := m.lookup(k)
		if nv, nok := reNaive(m.(*reTable), k); v != nv || ok != nok {
			t.Fatalf("lookup(%q) = %q, %v; without the literal filters %q, %v", k, v, ok, nv, nok)
		}
	}
	m.entries()
}

func FuzzHashText(f *testing.F) {
	f.Add("example.com OK\n  continued\n# comment\nEXAMPLE.com second\n", "Example.COM")
	f.Add("a\tb\r\nc d\n", "c")
	f.Add(" leading x\n", "leading")
	f.Fuzz(func(t *testing.T, text, key string) {
		m, err := parseHash(fuzzSource("hash", text))
		if err != nil {
			return
		}
		m.lookup(key)
		for _, e := range m.entries() {
			if e.Value == "" {
				t.Fatalf("entry %+v has no value", e)
			}
			if _, ok := m.lookup(e.Key); !ok {
				t.Fatalf("entry %+v: its key is not found", e)
			}
		}
	})
}

func FuzzInline(f *testing.F) {
	f.Add("{ a=b, { c = d e } }", "C")
	f.Add("{a=b,c=d}", "a")
	f.Add("{ {x=} }", "x")
	f.Add("{ a={b} }", "a")
	f.Fuzz(func(t *testing.T, text, key string) {
		for _, typ := range []string{"inline:", "static:"} {
			tb, err := Open(typ+text, Options{})
			if err != nil {
				continue
			}
			_, ok, err := tb.Lookup(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			if typ == "static:" && !ok {
				t.Fatalf("static table missed %q", key)
			}
			for _, e := range tb.Entries() {
				if _, ok, _ := tb.Lookup(context.Background(), e.Key); !ok {
					t.Fatalf("entry %+v: its key is not found", e)
				}
			}
		}
	})
}

// cidrNaive is cidrLookup without the prefix index.
func cidrNaive(items []cidrItem, a netip.Addr) (string, bool) {
	for _, it := range items {
		switch {
		case it.group != nil:
			for _, r := range it.group.rules {
				if r.match(a) {
					return r.value, true
				}
			}
		case it.rule != nil:
			if it.rule.match(a) {
				return it.rule.value, true
			}
		case it.block != nil:
			if it.block.cond.match(a) {
				if v, ok := cidrNaive(it.block.body, a); ok {
					return v, true
				}
			}
		}
	}
	return "", false
}

// reNaive is reTable.lookup without the literal filters.
func reNaive(t *reTable, key string) (string, bool) {
	match := func(p *rePattern) bool { return p.re.MatchString(key) != p.negate }
	for i := 0; i < len(t.rules); i++ {
		r := &t.rules[i]
		switch r.op {
		case opMatch:
			loc := r.first.re.FindStringSubmatchIndex(key)
			if (loc != nil) == r.first.negate {
				continue
			}
			if r.second != nil && !match(r.second) {
				continue
			}
			return r.tmpl.expand(key, loc), true
		case opIf:
			if !match(&r.first) {
				i = r.endif
			}
		}
	}
	return "", false
}

// FuzzCF parses arbitrary .cf text as a sqlite_table(5) file and, when
// it parses, reads the SQL settings: nothing may panic, every setting
// kept is a known one, and errors name the file.
func FuzzCF(f *testing.F) {
	f.Add("dbpath = /var/db.sqlite\nquery = SELECT goto FROM alias\n  WHERE address='%s'\n")
	f.Add("table = t\nselect_field = a\nwhere_field = b\nadditional_conditions = AND c = 1\nexpansion_limit = 3\n")
	f.Add("query = %u %d %1 %S %U %D %%\nresult_format = %u@%d\ndomain = a.example, !b.example\n")
	f.Add("hosts = x\n= y\nno equals\n")
	f.Fuzz(func(t *testing.T, text string) {
		cf, err := parseCF("sqlite", "fuzz.cf", []byte(text), sqliteParams)
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.cf") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for name := range cf.params {
			if !containsString(sqliteParams, name) {
				t.Fatalf("unknown parameter %q kept", name)
			}
		}
		c, err := readSQLConfig(cf)
		if err != nil {
			return
		}
		if q, ok := c.tmpl.expandQuery("lisa@example.com", sqliteQuote); ok && q == "" && c.tmpl.query != "" {
			t.Fatalf("query %q expands to nothing", c.tmpl.query)
		}
	})
}

// FuzzQueryExpansion expands arbitrary templates with arbitrary keys and
// checks that a key quoted into '%s' stays one SQL string literal: the
// attacker's text cannot end the quotes.
func FuzzQueryExpansion(f *testing.F) {
	f.Add("SELECT a FROM t WHERE b='%s'", "%u@%d", "x'; DROP TABLE t; --@example.com", "v@example.org")
	f.Add("%1.%2 %S %U %D %%", "%s %S", "lisa@mail.example.com", "@")
	f.Add("%d", "%d", "a@b@c..example.", "x@")
	f.Add("100%", "%u", "'", "")
	f.Fuzz(func(t *testing.T, query, result, key, value string) {
		tm, err := parseTemplates(query, result)
		if err != nil {
			return
		}
		tm.expandQuery(key, sqliteQuote)
		var b strings.Builder
		tm.appendResult(&b, value, key)
		tm.appendResult(&b, value, key)

		lit, err := parseTemplates("'%s'", "%s")
		if err != nil {
			t.Fatal(err)
		}
		q, ok := lit.expandQuery(key, sqliteQuote)
		if !ok {
			t.Fatalf("'%%s' refused key %q", key)
		}
		inner := q[1 : len(q)-1]
		if strings.ReplaceAll(inner, "''", "") != strings.ReplaceAll(key, "'", "") {
			t.Fatalf("key %q quoted as %q: a quote is not doubled", key, q)
		}
		if strings.ReplaceAll(inner, "''", "") != strings.ReplaceAll(inner, "'", "") {
			t.Fatalf("key %q quoted as %q: a lone quote ends the literal", key, q)
		}
	})
}
