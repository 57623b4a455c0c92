package spf

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func rfcEnv(ip string) *macroEnv {
	return &macroEnv{
		sender:       "strong-bad@email.example.com",
		local:        "strong-bad",
		senderDomain: "email.example.com",
		domain:       "email.example.com",
		ip:           netip.MustParseAddr(ip),
		helo:         "mx.example.org",
		receiver:     "mx.example.net",
		now:          time.Unix(1700000000, 0),
		ptr:          func() string { return "mx.example.org" },
	}
}

// TestMacroRFC7208Examples are the expansion examples of RFC 7208 §7.4,
// exact strings.
func TestMacroRFC7208Examples(t *testing.T) {
	for _, tc := range []struct {
		ip, in, want string
	}{
		{"192.0.2.3", "%{s}", "strong-bad@email.example.com"},
		{"192.0.2.3", "%{o}", "email.example.com"},
		{"192.0.2.3", "%{d}", "email.example.com"},
		{"192.0.2.3", "%{d4}", "email.example.com"},
		{"192.0.2.3", "%{d3}", "email.example.com"},
		{"192.0.2.3", "%{d2}", "example.com"},
		{"192.0.2.3", "%{d1}", "com"},
		{"192.0.2.3", "%{dr}", "com.example.email"},
		{"192.0.2.3", "%{d2r}", "example.email"},
		{"192.0.2.3", "%{l}", "strong-bad"},
		{"192.0.2.3", "%{l-}", "strong.bad"},
		{"192.0.2.3", "%{lr}", "strong-bad"},
		{"192.0.2.3", "%{lr-}", "bad.strong"},
		{"192.0.2.3", "%{l1r-}", "strong"},
		{"192.0.2.3", "%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"},
		{"192.0.2.3", "%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"},
		{"192.0.2.3", "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"},
		{"192.0.2.3", "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"},
		{"192.0.2.3", "%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"},
		// The RFC prints the nibbles in lower case; DNS does not care.
		{"2001:db8::cb01", "%{ir}.%{v}._spf.%{d2}", "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"},
	} {
		toks, err := parseMacroString(tc.in, macroDomain)
		if err != nil {
			t.Errorf("parse %q: %v", tc.in, err)
			continue
		}
		if got := expand(toks, rfcEnv(tc.ip)); got != tc.want {
			t.Errorf("%s with %s = %q, want %q", tc.in, tc.ip, got, tc.want)
		}
	}
}

// TestMacroMore covers the rest of §7: escapes, upper-case letters,
// the explanation-only letters, the other delimiters and transformers.
func TestMacroMore(t *testing.T) {
	for _, tc := range []struct {
		mode     macroMode
		ip, in   string
		want     string
		checkErr bool
	}{
		{macroDomain, "192.0.2.3", "%%%_%-", "% %20", false},
		{macroDomain, "192.0.2.3", "%{S}", "strong-bad%40email.example.com", false},
		{macroDomain, "192.0.2.3", "%{L}.%{D2}", "strong-bad.example.com", false},
		{macroDomain, "192.0.2.3", "%{h}/%{p}/%{v}/%{i}", "mx.example.org/mx.example.org/in-addr/192.0.2.3", false},
		{macroDomain, "192.0.2.3", "%{d9}", "email.example.com", false},
		{macroDomain, "192.0.2.3", "%{d99999999999999999999}", "email.example.com", false},
		{macroDomain, "192.0.2.3", "%{sr-.}", "com.example.bad@email.strong", false},
		{macroDomain, "192.0.2.3", "%{s3-.}", "bad@email.example.com", false},
		{macroDomain, "192.0.2.3", "%{s@}", "", true},
		{macroDomain, "192.0.2.3", "%{l1r+-}", "strong", false},
		{macroDomain, "192.0.2.3", "%{lR-}", "bad.strong", false},
		{macroDomain, "192.0.2.3", "%{o=,}", "email.example.com", false},
		{macroExp, "192.0.2.3", "%{c} via %{r} at %{t}", "192.0.2.3 via mx.example.net at 1700000000", false},
		{macroExp, "2001:db8::cb01", "%{c} is %{v}", "2001:db8::cb01 is ip6", false},
		{macroExp, "2001:db8::cb01", "%{C}", "2001%3Adb8%3A%3Acb01", false},
		{macroDomain, "192.0.2.3", "%{c}", "", true},
		{macroDomain, "192.0.2.3", "%{r}", "", true},
		{macroDomain, "192.0.2.3", "%{t}", "", true},
		{macroDomain, "192.0.2.3", "a b", "", true},
		{macroDomain, "192.0.2.3", "%{d0}", "", true},
		{macroDomain, "192.0.2.3", "%{x}", "", true},
		{macroDomain, "192.0.2.3", "%{}", "", true},
		{macroDomain, "192.0.2.3", "%{d", "", true},
		{macroDomain, "192.0.2.3", "%", "", true},
		{macroDomain, "192.0.2.3", "%x", "", true},
		{macroDomain, "192.0.2.3", "%{d2r!}", "", true},
		{macroDomain, "192.0.2.3", "%{dr2}", "", true},
		{macroDomain, "192.0.2.3", "caf\xc3\xa9", "", true},
	} {
		toks, err := parseMacroString(tc.in, tc.mode)
		if tc.checkErr {
			if !errors.Is(err, errSyntax) {
				t.Errorf("parse %q: err %v, want a syntax error", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parse %q: %v", tc.in, err)
			continue
		}
		if got := expand(toks, rfcEnv(tc.ip)); got != tc.want {
			t.Errorf("%s with %s = %q, want %q", tc.in, tc.ip, got, tc.want)
		}
	}
}

// TestExpandDomainTruncates: an expansion longer than 253 octets loses
// labels from the left (RFC 7208 §4.8).
func TestExpandDomainTruncates(t *testing.T) {
	env := rfcEnv("192.0.2.3")
	long := ""
	for range 30 {
		long += "abcdefghi."
	}
	env.local = long[:len(long)-1]
	toks, err := parseDomainSpec("%{l}.example.com")
	if err != nil {
		t.Fatal(err)
	}
	got := expandDomain(toks, env)
	if len(got) > 253 || !validDomain(got) || got[len(got)-len(".example.com"):] != ".example.com" {
		t.Errorf("expandDomain gave %d octets: %q", len(got), got)
	}
	if got[0] == '.' || len(got) < 240 {
		t.Errorf("expandDomain cut too much: %q", got)
	}
}
