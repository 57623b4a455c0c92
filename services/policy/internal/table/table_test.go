package table

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// openText writes text to a file named after typ in a temporary
// directory and opens "typ:file" there.
func openText(t *testing.T, typ, text string) (Table, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, typ+".txt"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	tb, err := Open(typ+":"+typ+".txt", Options{Dir: dir})
	if err != nil {
		// Make messages comparable: the directory changes every run.
		return nil, errors.New(strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), ""))
	}
	return tb, nil
}

func mustOpenText(t *testing.T, typ, text string) Table {
	t.Helper()
	tb, err := openText(t, typ, text)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return tb
}

// lookupCase is a key and what looking it up should give; want "" with
// ok false means no match.
type lookupCase struct {
	key  string
	want string
	ok   bool
}

func checkLookups(t *testing.T, tb Table, cases []lookupCase) {
	t.Helper()
	for _, c := range cases {
		got, ok, err := tb.Lookup(context.Background(), c.key)
		if err != nil {
			t.Errorf("Lookup(%q): %v", c.key, err)
			continue
		}
		if got != c.want || ok != c.ok {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", c.key, got, ok, c.want, c.ok)
		}
	}
}

// hit and miss build lookupCases.
func hit(key, want string) lookupCase { return lookupCase{key: key, want: want, ok: true} }
func miss(key string) lookupCase      { return lookupCase{key: key} }

type errCase struct {
	name string
	text string
	want string // the whole error message, file name without directory
}

func checkErrors(t *testing.T, typ string, cases []errCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := openText(t, typ, c.text)
			if err == nil {
				t.Fatalf("open succeeded; want error %q", c.want)
			}
			if diff := cmp.Diff(c.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpenSpecs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "access"), []byte("example.com OK\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		spec    string
		key     string
		want    string
		ok      bool
		pattern bool
	}{
		{spec: "hash:access", key: "EXAMPLE.com", want: "OK", ok: true},
		{spec: "proxy:hash:access", key: "example.com", want: "OK", ok: true},
		{spec: "texthash:" + filepath.Join(dir, "access"), key: "example.com", want: "OK", ok: true},
		{spec: "lmdb:access", key: "example.org"},
		{spec: "btree:access", key: "example.com", want: "OK", ok: true},
		{spec: "cdb:access", key: "example.com", want: "OK", ok: true},
		{spec: "static:OK", key: "anything", want: "OK", ok: true},
		{spec: "static:{ REJECT go away }", key: "x", want: "REJECT go away", ok: true},
		{spec: "static:", key: "x", want: "", ok: true},
		{spec: "inline:{ a=b, { c = d e } }", key: "C", want: "d e", ok: true},
		{spec: "inline:{a=b,c=d}", key: "a", want: "b", ok: true},
		{spec: "inline:{a=b c=x=y}", key: "c", want: "x=y", ok: true},
		{spec: "inline:{ a=1, A=2 }", key: "a", want: "1", ok: true},
		{spec: "inline:{ a=b }", key: "b"},
		{spec: "inline:{ a= }", key: "a", want: "", ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			tb, err := Open(tt.spec, Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			if tb.Name() != tt.spec {
				t.Errorf("Name() = %q, want %q", tb.Name(), tt.spec)
			}
			if tb.Pattern() != tt.pattern {
				t.Errorf("Pattern() = %v, want %v", tb.Pattern(), tt.pattern)
			}
			checkLookups(t, tb, []lookupCase{{key: tt.key, want: tt.want, ok: tt.ok}})
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		spec string
		want string
	}{
		{"mysql:/etc/postfix/mysql.cf", `table mysql:/etc/postfix/mysql.cf: open /etc/postfix/mysql.cf: no such file or directory`},
		{"pgsql:/etc/postfix/pgsql.cf", `table pgsql:/etc/postfix/pgsql.cf: open /etc/postfix/pgsql.cf: no such file or directory`},
		{"nis:mail.aliases", `table type "nis" is not supported; supported: cidr, regexp, pcre, hash, texthash, btree, lmdb, cdb, dbm, sdbm, inline, static, sqlite, mysql, pgsql, ldap, socketmap, tcp, redis`},
		{"proxy:ldap:/etc/postfix/ldap.cf", `table ldap:/etc/postfix/ldap.cf: open /etc/postfix/ldap.cf: no such file or directory`},
		{"unionmap:{hash:/a, hash:/b}", `table type "unionmap" is not supported; supported: cidr, regexp, pcre, hash, texthash, btree, lmdb, cdb, dbm, sdbm, inline, static, sqlite, mysql, pgsql, ldap, socketmap, tcp, redis`},
		{"/etc/postfix/access", `table "/etc/postfix/access": expected type:name`},
		{"hash", `table "hash": expected type:name`},
		{"hash:", `table "hash:": missing file name after "hash:"`},
		{"inline:a=b", `table "inline:a=b": missing '{' in "a=b"; need "inline:{name=value...}"`},
		{"inline:{}", `table "inline:{}": empty table; need "inline:{name=value...}"`},
		{"inline:{ a=b", `table "inline:{ a=b": unbalanced '{' in "{ a=b"; need "inline:{name=value...}"`},
		{"inline:{ a }", `table "inline:{ a }": missing '=' after attribute name in "a"; need "inline:{name=value...}"`},
		{"inline:{ =b }", `table "inline:{ =b }": missing attribute name in "=b"; need "inline:{name=value...}"`},
		{"inline:{ {a=b }", `table "inline:{ {a=b }": unbalanced '{' in "{ {a=b }"; need "inline:{name=value...}"`},
		{"static:{ x", `table "static:{ x": unbalanced '{' in "{ x"`},
		{"static:{ x } y", `table "static:{ x } y": text after '}' in "{ x } y"`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			_, err := Open(tt.spec, Options{Dir: dir})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
	_, err := Open("nis:/x", Options{})
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("errors.Is(%v, ErrUnsupported) = false", err)
	}
	missing := filepath.Join(dir, "missing")
	_, err = Open("cidr:"+missing, Options{})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: got %v, want a not-exist error naming %s", err, missing)
	}
}

func TestLogicalLines(t *testing.T) {
	s := &source{typ: "hash", file: "f", data: []byte(
		"# comment\n" +
			"a 1\n" +
			"  continued\n" +
			"\n" +
			"   # indented comment\n" +
			"\tmore\r\n" +
			"b 2   \n" +
			"c\t3")}
	got, err := s.lines()
	if err != nil {
		t.Fatal(err)
	}
	want := []logicalLine{{2, "a 1 continued more"}, {7, "b 2"}, {8, "c\t3"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(logicalLine{})); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}

	s = &source{typ: "hash", file: "f", data: []byte(" a 1\nb 2\n")}
	if _, err := s.lines(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"hash:f:1: logical line must not start with whitespace"}, s.warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}

	long := "a " + strings.Repeat("x", MaxLineLength) + "\n"
	s = &source{typ: "hash", file: "f", data: []byte("b 1\n" + long)}
	if _, err := s.lines(); err == nil || err.Error() != "hash:f:2: line longer than 65536 bytes" {
		t.Errorf("long line: got %v", err)
	}
	half := strings.Repeat("x", MaxLineLength/2+1)
	s = &source{typ: "hash", file: "f", data: []byte("a " + half + "\n " + half + "\n")}
	if _, err := s.lines(); err == nil || err.Error() != "hash:f:1: logical line longer than 65536 bytes" {
		t.Errorf("long logical line: got %v", err)
	}
}

func TestHash(t *testing.T) {
	tb := mustOpenText(t, "hash", `# access table
example.com       OK
Example.NET       REJECT no  thanks
user@example.org  DISCARD
dup.example       first
DUP.example       second
multi.example     REJECT spans
    two lines
[192.0.2.1]       OK
`)
	checkLookups(t, tb, []lookupCase{
		hit("example.com", "OK"),
		hit("EXAMPLE.COM", "OK"),
		hit("example.net", "REJECT no  thanks"),
		hit("User@Example.ORG", "DISCARD"),
		hit("dup.example", "first"),
		hit("multi.example", "REJECT spans two lines"),
		hit("[192.0.2.1]", "OK"),
		miss("sub.example.com"),
		miss("two"),
		miss(""),
	})
	wantEntries := []Entry{
		{Pos: "2", Key: "example.com", Value: "OK"},
		{Pos: "3", Key: "Example.NET", Value: "REJECT no  thanks"},
		{Pos: "4", Key: "user@example.org", Value: "DISCARD"},
		{Pos: "5", Key: "dup.example", Value: "first"},
		{Pos: "7", Key: "multi.example", Value: "REJECT spans two lines"},
		{Pos: "9", Key: "[192.0.2.1]", Value: "OK"},
	}
	checkEntries(t, tb, wantEntries)

	checkErrors(t, "hash", []errCase{
		{"no value", "a 1\nlonely\n", "hash:hash.txt:2: expected format: key whitespace value"},
		{"no value after continuation", "a 1\n\nb\n  \n", "hash:hash.txt:3: expected format: key whitespace value"},
	})
}

// checkEntries compares Entries, with Pos reduced to the line number.
func checkEntries(t *testing.T, tb Table, want []Entry) {
	t.Helper()
	got := tb.Entries()
	for i := range got {
		if _, line, ok := strings.Cut(filepath.Base(got[i].Pos), ":"); ok {
			got[i].Pos = line
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Entries (-want +got):\n%s", diff)
	}
}

func TestHashWarnings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access")
	if err := os.WriteFile(path, []byte("a 1\nA 2\nb: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	if _, err := Open("hash:"+path, Options{Logger: newTextLogger(&log)}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`hash:` + path + `:2: duplicate entry: \"a\"; keeping the first`,
		`hash:` + path + `:3: record is in \"key: value\" format; is this an alias file?`,
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

func TestStaticAndInlineEntries(t *testing.T) {
	tb, err := Open("static:{ DUNNO }", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Entry{{Pos: "static:{ DUNNO }", Value: "DUNNO"}}, tb.Entries()); diff != "" {
		t.Errorf("static Entries (-want +got):\n%s", diff)
	}
	spec := "inline:{ a=b, { C = d e }, a=z }"
	tb, err = Open(spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{{Pos: spec, Key: "a", Value: "b"}, {Pos: spec, Key: "C", Value: "d e"}}
	if diff := cmp.Diff(want, tb.Entries()); diff != "" {
		t.Errorf("inline Entries (-want +got):\n%s", diff)
	}
}
