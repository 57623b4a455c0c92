package address

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in     string
		want   Address
		routed bool
	}{
		{in: "user@example.org", want: Address{Raw: "user@example.org", Local: "user", Domain: "example.org", HasDomain: true}},
		{in: "User@EXAMPLE.Org", want: Address{Raw: "User@EXAMPLE.Org", Local: "User", Domain: "example.org", HasDomain: true}},
		{in: "user@example.org.", want: Address{Raw: "user@example.org.", Local: "user", Domain: "example.org", HasDomain: true}},
		{in: "user@example.org..", want: Address{Raw: "user@example.org..", Local: "user", Domain: "example.org..", HasDomain: true}},
		{in: "", want: Address{}},
		{in: "postmaster", want: Address{Raw: "postmaster", Local: "postmaster"}},
		{in: "user@", want: Address{Raw: "user@", Local: "user"}},
		{in: `"a b"@example.org`, want: Address{Raw: `"a b"@example.org`, Local: "a b", Domain: "example.org", HasDomain: true}},
		{in: `"user"@example.org`, want: Address{Raw: `"user"@example.org`, Local: "user", Domain: "example.org", HasDomain: true}},
		{in: `a\"b@example.org`, want: Address{Raw: `a\"b@example.org`, Local: `a"b`, Domain: "example.org", HasDomain: true}},
		// The classic relay tricks: routing hidden in the local part.
		{in: "user%example.com@example.org", routed: true, want: Address{Raw: "user%example.com@example.org", Local: "user%example.com", Domain: "example.org", HasDomain: true}},
		{in: `"user@example.com"@example.org`, routed: true, want: Address{Raw: `"user@example.com"@example.org`, Local: "user@example.com", Domain: "example.org", HasDomain: true}},
		{in: `"user%example.com"@example.org`, routed: true, want: Address{Raw: `"user%example.com"@example.org`, Local: "user%example.com", Domain: "example.org", HasDomain: true}},
		{in: `"example.com!user"@example.org`, routed: true, want: Address{Raw: `"example.com!user"@example.org`, Local: "example.com!user", Domain: "example.org", HasDomain: true}},
		{in: `user\@example.com@example.org`, routed: true, want: Address{Raw: `user\@example.com@example.org`, Local: "user@example.com", Domain: "example.org", HasDomain: true}},
		{in: "user@example.com@example.org", routed: true, want: Address{Raw: "user@example.com@example.org", Local: "user@example.com", Domain: "example.org", HasDomain: true}},
		{in: "example.com!user@example.org", routed: true, want: Address{Raw: "example.com!user@example.org", Local: "example.com!user", Domain: "example.org", HasDomain: true}},
		{in: "example.com!user", routed: true, want: Address{Raw: "example.com!user", Local: "example.com!user"}},
		{in: "user%example.com", routed: true, want: Address{Raw: "user%example.com", Local: "user%example.com"}},
		{in: `"user@example.com"`, routed: true, want: Address{Raw: `"user@example.com"`, Local: "user@example.com"}},
		// Address literals (RFC 5321 section 4.1.3).
		{in: "user@[10.1.2.3]", want: Address{Raw: "user@[10.1.2.3]", Local: "user", Domain: "[10.1.2.3]", HasDomain: true, Literal: true}},
		{in: "user@[IPv6:::1]", want: Address{Raw: "user@[IPv6:::1]", Local: "user", Domain: "[ipv6:::1]", HasDomain: true, Literal: true}},
		// A source route is ignored (RFC 5321 section 3.6.1).
		{in: "@example.com:john@example.org", want: Address{Raw: "john@example.org", Local: "john", Domain: "example.org", HasDomain: true, SourceRoute: true}},
		{in: "@a.example,@b.example:lisa@example.com", want: Address{Raw: "lisa@example.com", Local: "lisa", Domain: "example.com", HasDomain: true, SourceRoute: true}},
		// SMTPUTF8 (RFC 6531).
		{in: "jörg@BÜCHER.example", want: Address{Raw: "jörg@BÜCHER.example", Local: "jörg", Domain: "xn--bcher-kva.example", HasDomain: true}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse(%q) mismatch (-want +got):\n%s", tc.in, diff)
			}
			if got.Routed() != tc.routed {
				t.Errorf("Parse(%q).Routed() = %v, want %v", tc.in, got.Routed(), tc.routed)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{`"user@example.org`, `user\`, `user@[10.1.2.3`, `user@10.1.2.3]`, "@example.com", `"a\`} {
		t.Run(in, func(t *testing.T) {
			got, err := Parse(in)
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q) error = %v, want ErrSyntax", in, err)
			}
			if got.Raw == "" {
				t.Errorf("Parse(%q) with an error lost Raw", in)
			}
		})
	}
}

func TestNormalizeDomain(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"example.org", "example.org"},
		{"EXAMPLE.ORG.", "example.org"},
		{"example.org..", "example.org.."},
		{".", "."},
		{"", ""},
		{"[IPv6:::1]", "[ipv6:::1]"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := NormalizeDomain(tc.in); got != tc.want {
				t.Errorf("NormalizeDomain(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"user@example.org", "", "postmaster", `"a b"@example.org`, "user%example.com@example.org",
		`"user@example.com"@example.org`, "example.com!user", "user@[10.1.2.3]", "user@[IPv6:::1]",
		"@a,@b:user@c", `a\@b@c`, `"unterminated`, "user@example.org.", "x@[", "]", `\`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q): error %v does not wrap ErrSyntax", s, err)
			}
			return
		}
		if a.HasDomain != (a.Domain != "") {
			t.Fatalf("Parse(%q): HasDomain %v with domain %q", s, a.HasDomain, a.Domain)
		}
		if a.Domain != NormalizeDomain(a.Domain) {
			t.Fatalf("Parse(%q): domain %q is not normalised", s, a.Domain)
		}
		if a.Literal && !strings.HasPrefix(a.Domain, "[") {
			t.Fatalf("Parse(%q): literal domain %q", s, a.Domain)
		}
		// Whatever hides "@", "%" or "!" in the local part is routing.
		if strings.ContainsAny(a.Local, "@%!") != a.Routed() {
			t.Fatalf("Parse(%q): Routed() disagrees with local part %q", s, a.Local)
		}
	})
}

// BenchmarkParse parses the addresses a restriction looks at: plain,
// upper-case with a trailing dot, quoted, and source-routed.
func BenchmarkParse(b *testing.B) {
	in := []string{"john@example.org", "Lisa.Smith@MAIL.Example.COM.", `"john doe"@example.org`, "@relay.example:user@example.net"}
	for b.Loop() {
		for _, s := range in {
			if _, err := Parse(s); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestIDN: a UTF-8 domain and its A-label form normalise to the same
// (A-label) domain; UnicodeDomain goes back.
func TestIDN(t *testing.T) {
	for in, want := range map[string]string{
		"пример.испытание":               "xn--e1afmkfd.xn--80akhbyknj4f",
		"ПРИМЕР.испытание.":              "xn--e1afmkfd.xn--80akhbyknj4f",
		"xn--e1afmkfd.xn--80akhbyknj4f":  "xn--e1afmkfd.xn--80akhbyknj4f",
		"XN--E1AFMKFD.XN--80AKHBYKNJ4F.": "xn--e1afmkfd.xn--80akhbyknj4f",
		"Example.ORG":                    "example.org",
		"example.org..":                  "example.org..",
		"[192.0.2.1]":                    "[192.0.2.1]",
		"bad\u200d.example":              "bad\u200d.example",
	} {
		if got := NormalizeDomain(in); got != want {
			t.Errorf("NormalizeDomain(%q) = %q, want %q", in, got, want)
		}
	}
	if got := UnicodeDomain("xn--e1afmkfd.xn--80akhbyknj4f"); got != "пример.испытание" {
		t.Errorf("UnicodeDomain = %q", got)
	}
	if got := UnicodeDomain("xn--broken--.example"); got != "xn--broken--.example" {
		t.Errorf("UnicodeDomain of a bad A-label = %q", got)
	}
}
