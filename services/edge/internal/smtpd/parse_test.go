package smtpd

import (
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		in, addr, rest string
		bad            bool
	}{
		{in: "<john@example.org>", addr: "john@example.org"},
		{in: "<john@example.org> SIZE=10", addr: "john@example.org", rest: "SIZE=10"},
		{in: "john@example.org", addr: "john@example.org"},
		{in: "john@example.org BODY=8BITMIME", addr: "john@example.org", rest: "BODY=8BITMIME"},
		{in: "<>", addr: ""},
		{in: "<@a.example,@b.example:lisa@example.com>", addr: "lisa@example.com"},
		{in: `<"lisa@example.com"@example.org>`, addr: `"lisa@example.com"@example.org`},
		{in: `<"a>b"@example.org>`, addr: `"a>b"@example.org`},
		{in: "<lisa%example.com@example.org>", addr: "lisa%example.com@example.org"},
		{in: "<example.com!lisa>", addr: "example.com!lisa"},
		{in: "<lisa@[192.0.2.1]>", addr: "lisa@[192.0.2.1]"},
		{in: "<lisa@example.org.>", addr: "lisa@example.org."},
		{in: "<postmaster>", addr: "postmaster"},
		{in: "<bad address@example.org>", bad: true},
		{in: "<a@b", bad: true},
		{in: "<a@b>x", bad: true},
		{in: "<@a.example:>", bad: true},
		{in: "<@:a@b>", bad: true},
		{in: "<@a.example lisa@example.com>", bad: true},
		{in: "<a@>", bad: true},
		{in: "<@example.org>", bad: true},
		{in: "<a@b..c>", bad: true},
		{in: "<a\x00@b>", bad: true},
		{in: `<"unbalanced@b>`, bad: true},
		{in: "<a@b@c>x", bad: true},
		{in: "a<b@c", bad: true},
		{in: "<<>", bad: true},
		{in: "<a:b@c>", bad: true},
		{in: "<a,b@c>", bad: true},
		{in: `<"a:b"@c>`, addr: `"a:b"@c`},
	} {
		addr, rest, err := parsePath(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parsePath(%q) = %q, %q; want an error", tc.in, addr, rest)
			}
			continue
		}
		if err != nil || addr != tc.addr || rest != tc.rest {
			t.Errorf("parsePath(%q) = %q, %q, %v; want %q, %q", tc.in, addr, rest, err, tc.addr, tc.rest)
		}
	}
}

func TestMailParams(t *testing.T) {
	p, err := parseMailParams("SIZE=1000 body=8bitmime SMTPUTF8 AUTH=john+2Bx@example.org")
	if err != nil || p.size != 1000 || !p.body8bit || !p.smtputf8 || p.auth == nil || *p.auth != "john+x@example.org" {
		t.Errorf("parseMailParams = %+v, %v", p, err)
	}
	for in, kind := range map[string]string{
		"SIZE=abc": "size", "SIZE": "size", "SIZE=-1": "size", "BODY=9BIT": "unsupported",
		"FOO=bar": "unsupported", "SMTPUTF8=x": "unsupported", "AUTH=": "unsupported", "AUTH=a+zz": "unsupported",
	} {
		_, err := parseMailParams(in)
		pe, ok := err.(*paramError)
		if !ok || pe.kind != kind {
			t.Errorf("parseMailParams(%q) = %v, want a %s error", in, err, kind)
		}
	}
}

func TestSplitCommand(t *testing.T) {
	for in, want := range map[string][2]string{
		"mail FROM:<a@b>": {"MAIL", "FROM:<a@b>"},
		"QUIT":            {"QUIT", ""},
		"  noop  x ":      {"NOOP", "x"},
		"":                {"", ""},
	} {
		v, a := splitCommand(in)
		if v != want[0] || a != want[1] {
			t.Errorf("splitCommand(%q) = %q, %q; want %q", in, v, a, want)
		}
	}
	if rest, ok := cutKeyword("from : <a@b>", "FROM"); !ok || rest != "<a@b>" {
		t.Errorf("cutKeyword with spaces = %q, %v", rest, ok)
	}
	if _, ok := cutKeyword("FRO:<a@b>", "FROM"); ok {
		t.Error("cutKeyword accepted FRO:")
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"<john@example.org> SIZE=10", "<@a,@b:c@d>", `<"x y"@z>`, "<>", "a@b", "<a@[1.2.3.4]>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, _, err := parsePath(s)
		if err != nil {
			return
		}
		if strings.ContainsAny(addr, "\r\n\x00<>") && !strings.Contains(addr, `"`) {
			t.Fatalf("parsePath(%q) let %q through", s, addr)
		}
		if strings.HasPrefix(addr, "@") {
			t.Fatalf("parsePath(%q) kept a source route: %q", s, addr)
		}
		_, _ = parseMailParams(s)
	})
}

// BenchmarkParseMail parses a MAIL FROM argument the way the engine does
// for every transaction: the path, then its ESMTP parameters.
func BenchmarkParseMail(b *testing.B) {
	const arg = "<bench-17-3@example.net> SIZE=1024 BODY=8BITMIME"
	for b.Loop() {
		addr, rest, err := parsePath(arg)
		if err != nil || addr == "" {
			b.Fatal(addr, err)
		}
		if _, err := parseMailParams(rest); err != nil {
			b.Fatal(err)
		}
	}
}
