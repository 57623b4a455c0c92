package table

import (
	"strings"
	"testing"
)

// The query and result expansions, case by case as mysql_table(5) and
// db_common.c describe them.
func TestExpandQuery(t *testing.T) {
	quote := func(s string) string { return "<" + s + ">" }
	cases := []struct {
		query, key string
		want       string // "" and !ok: the key is not looked up
		ok         bool
	}{
		{"SELECT x FROM t WHERE a='%s'", "lisa@example.com", "SELECT x FROM t WHERE a='<lisa@example.com>'", true},
		{"%u|%d", "lisa@example.com", "<lisa>|<example.com>", true},
		{"%u", "lisa", "<lisa>", true},                 // no domain: %u is the whole key
		{"%d", "lisa", "", false},                      // %d needs a domain
		{"%d", "lisa@", "", false},                     // ... not empty
		{"%u", "@example.com", "", false},              // %u needs a local part when there is an '@'
		{"%s", "@example.com", "<@example.com>", true}, // %s takes any key
		{"%S|%U|%D", "a@b.example", "<a@b.example>|<a>|<b.example>", true},
		{"%1 %2 %3", "a@mail.example.com", "<com> <example> <mail>", true},
		{"%3", "a@example.com", "", false},                                   // too few labels
		{"%2", "a@example..com.", "<example>", true},                         // empty labels skipped, as mystrtok does
		{"%1", "a@b@c.example", "<example>", true},                           // the last '@' splits
		{"%u@%d", "a@b@c.example", "<a@b>@<c.example>", true},                // ... for the local part too
		{"100%% %s", "k", "100% <k>", true},                                  // %% is one %
		{"LIKE '%%%s%%'", "x", "LIKE '%<x>%'", true},                         // ... even next to an expansion
		{"%s%s", "k", "<k><k>", true},                                        // every %s
		{"x='%s'", "o'brien@example.com", "x='<o'brien@example.com>'", true}, // quote gets the raw text
	}
	for _, c := range cases {
		tm, err := parseTemplates(c.query, "%s")
		if err != nil {
			t.Fatalf("parse %q: %v", c.query, err)
		}
		got, ok := tm.expandQuery(c.key, quote)
		if got != c.want || ok != c.ok {
			t.Errorf("query %q key %q = %q, %v; want %q, %v", c.query, c.key, got, ok, c.want, c.ok)
		}
	}
}

func TestParseTemplatesRefuses(t *testing.T) {
	for _, q := range []string{"%x", "a %", "%s %Z", "%0"} {
		if _, err := parseTemplates(q, "%s"); err == nil || !strings.Contains(err.Error(), "invalid query template") {
			t.Errorf("query %q: err = %v, want invalid query template", q, err)
		}
	}
	if _, err := parseTemplates("%s", "%q"); err == nil || !strings.Contains(err.Error(), "invalid result_format template") {
		t.Errorf("result %%q: err = %v, want invalid result_format template", err)
	}
	tm, err := parseTemplates("SELECT 1", "%s")
	if err != nil || tm.dynamic {
		t.Errorf("static query: dynamic = %v, err = %v; want false, nil", tm.dynamic, err)
	}
}

// Rows are expanded with result_format and joined with commas; values
// that lack what the format needs are dropped (db_common_expand() with a
// key).
func TestResultFormat(t *testing.T) {
	cases := []struct {
		query, result string
		key           string
		rows          []string
		want          string
	}{
		{"%s", "%s", "k", []string{"a", "b"}, "a,b"},
		{"%s", "%s", "k", []string{"", "b", ""}, "b"}, // empty rows skipped
		{"%s", "smtp:[%s]", "lisa@example.com", []string{"relay.example"}, "smtp:[relay.example]"},
		{"%s", "%u", "k", []string{"joe@example.org", "bare"}, "joe,bare"},
		{"%s", "%d", "k", []string{"joe@example.org", "bare"}, "example.org"}, // no domain: dropped
		{"%s", "%u", "k", []string{"@example.org"}, ""},                       // empty local part: dropped
		{"%s", "%s via %S", "Lisa@x.example", []string{"v"}, "v via Lisa@x.example"},
		{"%d", "%U at %D (%1)", "lisa@mail.example", []string{"v"}, "lisa at mail.example (example)"},
		{"%s", "100%%", "k", []string{"v"}, "100%"},
	}
	for _, c := range cases {
		tm, err := parseTemplates(c.query, c.result)
		if err != nil {
			t.Fatalf("parse %q %q: %v", c.query, c.result, err)
		}
		var b strings.Builder
		for _, r := range c.rows {
			tm.appendResult(&b, r, c.key)
		}
		if b.String() != c.want {
			t.Errorf("result_format %q of %q for %q = %q; want %q", c.result, c.rows, c.key, b.String(), c.want)
		}
	}
}

func TestDomainFilter(t *testing.T) {
	f, err := parseDomainFilter("example.com, Example.NET !bad.example.com")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{
		"lisa@example.com":     true,
		"lisa@EXAMPLE.net":     true,
		"lisa@sub.example.com": false, // whole names only
		"lisa@bad.example.com": false,
		"@example.com":         false, // Postfix skips "@domain" keys
		"example.com":          false, // and keys without '@'
		"lisa@":                false,
	} {
		if got := f.allows(key); got != want {
			t.Errorf("allows(%q) = %v; want %v", key, got, want)
		}
	}
	var none *domainFilter
	if !none.allows("anything") {
		t.Error("no domain setting refuses a key")
	}
	if _, err := parseDomainFilter("hash:/etc/postfix/domains"); err == nil {
		t.Error("a type:table domain list is accepted")
	}
}

func TestParseCF(t *testing.T) {
	text := "# comment\ndbpath = /var/db.sqlite\nquery = SELECT goto\n  FROM alias WHERE address='%s'\n\nexpansion_limit=2\nexpansion_limit = 3\nresult_format =\n"
	f, err := parseCF("sqlite", "x.cf", []byte(text), sqliteParams)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"dbpath":          "/var/db.sqlite",
		"query":           "SELECT goto FROM alias WHERE address='%s'", // continuation joined with a space
		"expansion_limit": "3",                                         // the later setting wins
		"result_format":   "",
	} {
		if got := f.str(name, "unset"); got != want {
			t.Errorf("%s = %q; want %q", name, got, want)
		}
	}
	if got := f.pos("query"); got != "x.cf:3" {
		t.Errorf("pos(query) = %q; want x.cf:3", got)
	}
	for text, want := range map[string]string{
		"hosts = db\ndbpath = x\n": "x.cf:1: unknown sqlite parameter \"hosts\"",
		"dbpath x\n":               "x.cf:1: missing '=' after attribute name",
		"dbpath = x\n= y\n":        "x.cf:2: missing attribute name",
		"dbpath = x\nqeury = y\n":  "x.cf:2: unknown sqlite parameter \"qeury\"",
		"expansion_limit = -1\n":   "", // checked by readSQLConfig
		strings.Repeat("x", 70000): "x.cf:1: line longer than",
	} {
		_, err := parseCF("sqlite", "x.cf", []byte(text), sqliteParams)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", text, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.30q: err = %v; want %q", text, err, want)
		}
	}
}

func TestReadSQLConfig(t *testing.T) {
	for text, want := range map[string]string{
		"query = SELECT 1\n":                  "x.cf:1: query: \"SELECT 1\" does not use the lookup key",
		"query = SELECT '%x'\n":               "x.cf:1: query: invalid query template",
		"query = %s\nresult_format = %y\n":    "x.cf:2: result_format: invalid result_format template",
		"query = %s\nexpansion_limit = two\n": "x.cf:2: expansion_limit = \"two\": want a whole number",
		"query = %s\nexpansion_limit = -1\n":  "x.cf:2: expansion_limit = \"-1\"",
		"query = %s\ndomain = /etc/domains\n": "x.cf:2: domain: \"/etc/domains\": file names",
		"table = t\nselect_field = a\n":       "x.cf: no query, and no where_field for the old-style query",
		"query = %s\nresult_format =\n":       "x.cf:2: result_format: must not be empty",
	} {
		f, err := parseCF("sqlite", "x.cf", []byte(text), sqliteParams)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		_, err = readSQLConfig(f)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v; want %q", text, err, want)
		}
	}
	f, _ := parseCF("sqlite", "x.cf", []byte("table = alias\nselect_field = goto\nwhere_field = address\nadditional_conditions = AND active = 1\n"), sqliteParams)
	c, err := readSQLConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if want := "SELECT goto FROM alias WHERE address='%s' AND active = 1"; c.tmpl.query != want {
		t.Errorf("old-style query = %q; want %q", c.tmpl.query, want)
	}
}

func TestUnquotedExpansions(t *testing.T) {
	for q, want := range map[string]string{
		"SELECT a FROM t WHERE b='%s'":          "",
		"SELECT a FROM t WHERE b=%s AND c='%d'": "%s",
		`SELECT a FROM t WHERE b="%u"`:          "%u", // double quotes name columns in SQL
		"SELECT '100%%' WHERE b='%s' OR c=%1":   "%1",
	} {
		if got := strings.Join(unquotedExpansions(q), " "); got != want {
			t.Errorf("%q: %q; want %q", q, got, want)
		}
	}
}
