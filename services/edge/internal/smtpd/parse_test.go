package smtpd

import (
	"reflect"
	"slices"
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
		// DSN, as Postfix 3.7.11 answers them.
		"RET=XX": "ret", "RET=": "ret", "RET=FULL RET=HDRS": "ret", "RET": "unsupported",
		"ENVID=": "envid", "ENVID=a+2": "envid", "ENVID=a+g0": "envid", "ENVID=a ENVID=b": "envid", "ENVID=+C3+A9": "envid", "ENVID": "unsupported",
	} {
		_, err := parseMailParams(in)
		pe, ok := err.(*paramError)
		if !ok || pe.kind != kind {
			t.Errorf("parseMailParams(%q) = %v, want a %s error", in, err, kind)
		}
	}
}

func TestMailDSNParams(t *testing.T) {
	p, err := parseMailParams("ret=hdrs ENVID=QQ+2B314159=x")
	if err != nil || p.ret != "HDRS" || p.envid == nil || *p.envid != "QQ+314159=x" {
		t.Errorf("parseMailParams = %+v, %v", p, err)
	}
	p, err = parseMailParams("RET=Full ENVID=" + strings.Repeat("b", 200))
	if err != nil || p.ret != "FULL" || p.envid == nil || len(*p.envid) != 200 {
		t.Errorf("parseMailParams with a long ENVID = %+v, %v", p, err)
	}
}

// TestRcptParams: NOTIFY and ORCPT are read as Postfix 3.7.11 reads them
// (each case was answered by it: 250 for the good ones, "501 5.5.4 Error:
// Bad NOTIFY parameter syntax" or "... ORCPT ..." for the bad ones).
func TestRcptParams(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want rcptParams
		kind string
	}{
		{in: "", want: rcptParams{}},
		{in: "NOTIFY=NEVER", want: rcptParams{notify: []string{"NEVER"}}},
		{in: "notify=delay,success", want: rcptParams{notify: []string{"SUCCESS", "DELAY"}}},
		{in: "NOTIFY=success,,failure", want: rcptParams{notify: []string{"SUCCESS", "FAILURE"}}},
		{in: "NOTIFY=,success", want: rcptParams{notify: []string{"SUCCESS"}}},
		{in: "NOTIFY=success,success", want: rcptParams{notify: []string{"SUCCESS"}}},
		{in: "NOTIFY=never,never", want: rcptParams{notify: []string{"NEVER"}}},
		{in: "ORCPT=rfc822;x+40y", want: rcptParams{orcpt: true, orcptType: "rfc822", orcptAddr: "x@y"}},
		{in: "ORCPT=rfc822;", want: rcptParams{orcpt: true, orcptType: "rfc822"}},
		{in: "ORCPT=foo;a@b", want: rcptParams{orcpt: true, orcptType: "foo", orcptAddr: "a@b"}},
		{in: "ORCPT=rf=c;a", want: rcptParams{orcpt: true, orcptType: "rf=c", orcptAddr: "a"}},
		{in: `ORCPT=utf-8;a\x{E9}@b`, want: rcptParams{orcpt: true, orcptType: "utf-8", orcptAddr: `a\x{E9}@b`}},
		{in: "NOTIFY=NEVER ORCPT=RFC822;x@y", want: rcptParams{notify: []string{"NEVER"}, orcpt: true, orcptType: "RFC822", orcptAddr: "x@y"}},
		{in: "NOTIFY=NEVER,SUCCESS", kind: "notify"},
		{in: "NOTIFY=success,failure,delay,never", kind: "notify"},
		{in: "NOTIFY=XX", kind: "notify"},
		{in: "NOTIFY=", kind: "notify"},
		{in: "NOTIFY=SUCCESS NOTIFY=DELAY", kind: "notify"},
		{in: "ORCPT=rfc822", kind: "orcpt"},
		{in: "ORCPT=;a", kind: "orcpt"},
		{in: "ORCPT=rfc822;a+zz", kind: "orcpt"},
		{in: "ORCPT=x;y ORCPT=rfc822;a", kind: "orcpt"},
		{in: "NOTIFY", kind: "unsupported"},
		{in: "ORCPT", kind: "unsupported"},
		{in: "FOO=bar", kind: "unsupported"},
	} {
		got, err := parseRcptParams(tc.in)
		if tc.kind != "" {
			if pe, ok := err.(*paramError); !ok || pe.kind != tc.kind {
				t.Errorf("parseRcptParams(%q) = %v, want a %s error", tc.in, err, tc.kind)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseRcptParams(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
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
	for _, s := range []string{"<john@example.org> SIZE=10", "<@a,@b:c@d>", `<"x y"@z>`, "<>", "a@b", "<a@[1.2.3.4]>",
		"<a@b> RET=HDRS ENVID=x+2By", "<a@b> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+40b", "<a@b> NOTIFY=NEVER,SUCCESS ORCPT=utf-8;\\x{E9}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, rest, err := parsePath(s)
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
		// DSN's parameters: NEVER stands alone, and what is handed on
		// is what the client said (ORCPT's address is decoded ASCII).
		p, err := parseRcptParams(rest)
		if err != nil {
			return
		}
		if len(p.notify) > 1 && slices.Contains(p.notify, "NEVER") || p.notify != nil && len(p.notify) == 0 {
			t.Fatalf("parseRcptParams(%q): NOTIFY %q", rest, p.notify)
		}
		for i := 0; i < len(p.orcptAddr); i++ {
			if p.orcptAddr[i] >= 0x80 {
				t.Fatalf("parseRcptParams(%q): ORCPT address %q is not ASCII", rest, p.orcptAddr)
			}
		}
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
