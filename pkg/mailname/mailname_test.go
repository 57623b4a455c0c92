package mailname

import (
	"strconv"
	"strings"
	"testing"
)

// predicateCase is an input and what a predicate says of it.
type predicateCase struct {
	in   string
	want bool
}

func checkPredicate(t *testing.T, name string, f func(string) bool, cases []predicateCase) {
	t.Helper()
	for _, c := range cases {
		if got := f(c.in); got != c.want {
			t.Errorf("%s(%q) = %v, want %v", name, c.in, got, c.want)
		}
	}
}

func TestValidHostname(t *testing.T) {
	long := strings.Repeat("a", 63)
	checkPredicate(t, "ValidHostname", ValidHostname, []predicateCase{
		{"example.org", true},
		{"mail-1.example.org", true},
		{"under_score.example", true},
		{"localhost", true},
		{"1a", true},
		{"1.2.3.a", true},
		{long + ".org", true},
		{strings.Repeat("a.", 127) + "a", true}, // 255 bytes
		{"", false},
		{"1.2.3.4", false},
		{"123", false},
		{"example.org.", false},
		{".example.org", false},
		{"example..org", false},
		{"-a.example", false},
		{"a-.example", false},
		{"a.-b", false},
		{"a-", false},
		{"-", false},
		{long + "a.org", false},
		{strings.Repeat("a.", 128), false},
		{strings.Repeat("a.", 127) + "ab", false}, // 256 bytes
		{"exa mple.org", false},
		{"exämple.org", false},
		{"[192.0.2.1]", false},
		{"a*.example", false},
	})
}

func TestValidUTF8Hostname(t *testing.T) {
	checkPredicate(t, "ValidUTF8Hostname", ValidUTF8Hostname, []predicateCase{
		{"example.org", true},
		{"пример.испытание", true},
		{"bücher.example", true},
		{"1.2.3.4", false},
		{"пример..испытание", false},
		{"-ü.example", false},
		{strings.Repeat("ü", 63) + ".example", true},
		{strings.Repeat("ü", 64) + ".example", false},
		{"ü .example", false},
	})
}

func TestValidMailhostLiteral(t *testing.T) {
	checkPredicate(t, "ValidMailhostLiteral", ValidMailhostLiteral, []predicateCase{
		{"[192.0.2.1]", true},
		{"[0.0.0.0]", true},
		{"[010.001.002.003]", true},
		{"[255.255.255.255]", true},
		{"[IPv6:2001:db8::1]", true},
		{"[ipv6:2001:DB8::1]", true},
		{"[IPv6:::1]", true},
		{"[IPv6:::]", true},
		{"[IPv6:1:2:3:4:5:6:7:8]", true},
		{"[IPv6:::ffff:192.0.2.1]", true},
		{"[IPv6:1:2:3:4:5:6:192.0.2.1]", true},
		{"[IPv6:1:2:3:4:5:6:7]", true},                                  // Postfix does not count fields without "::"
		{"[IPv6:0000:0000:0000:0000:0000:ffff:255.255.255.255]", false}, // 46 bytes inside
		{"192.0.2.1", false},
		{"[192.0.2.1", false},
		{"[192.0.2.1]x", false},
		{"[192.0.2.1]]", false},
		{"[]", false},
		{"[192.0.2]", false},
		{"[192.0.2.1.5]", false},
		{"[256.0.0.1]", false},
		{"[0.1.2.3]", false},
		{"[192.0.2.]", false},
		{"[.192.0.2.1]", false},
		{"[192..2.1]", false},
		{"[2001:db8::1]", false},
		{"[IPv6:192.0.2.1]", false},
		{"[IPv6:1::2::3]", false},
		{"[IPv6:12345::1]", false},
		{"[IPv6::1]", false},
		{"[IPv6:1:]", false},
		{"[IPv6:1:2:3:4:5:6:7:8:9]", false},
		{"[IPv6:1:2:3:4:5:6:7:1.2.3.4]", false},
		{"[IPv6:fe80::1%eth0]", false},
		{"[IPv6:g::1]", false},
	})
}

func TestValidHostAddr(t *testing.T) {
	checkPredicate(t, "ValidHostAddr", ValidHostAddr, []predicateCase{
		{"192.0.2.1", true}, {"010.1.1.1", true}, {"0.0.0.0", true}, {"0.1.2.3", false},
		{"192.0.2.256", false}, {"192.0.2", false}, {"2001:db8::1", true}, {"1:2:3:4:5:6:7", true},
		{"IPv6:2001:db8::1", false}, {"[192.0.2.1]", false}, {"fe80::1%eth0", false}, {"", false},
	})
}

func TestTruncateDot(t *testing.T) {
	for in, want := range map[string]string{
		"a.example.": "a.example", "a.example..": "a.example..", "a.example": "a.example", ".": ".", "": "",
	} {
		if got := TruncateDot(in); got != want {
			t.Errorf("TruncateDot(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAllDigits(t *testing.T) {
	checkPredicate(t, "AllDigits", AllDigits, []predicateCase{
		{"0", true}, {"0123456789", true}, {"", false}, {"12a", false}, {" 1", false}, {"-1", false}, {"١", false},
	})
}

func TestPrintable(t *testing.T) {
	for _, c := range []struct {
		s    string
		repl rune
		want string
	}{
		{"plain text", '?', "plain text"},
		{"a\x00b\tc\r\nd\x7fe", '?', "a?b?c??d?e"},
		{"a\x01b", '_', "a_b"},
		{"üñí", '?', "üñí"},
		{"a\xffb", '?', "a\uFFFDb"},
	} {
		if got := Printable(c.s, c.repl); got != c.want {
			t.Errorf("Printable(%q, %q) = %q, want %q", c.s, c.repl, got, c.want)
		}
	}
}

func TestNeuter(t *testing.T) {
	for _, c := range []struct{ s, want string }{
		{"mail.example.org", "mail.example.org"},
		{`a b<c>d(e)f\g"h;i@j`, "a?b?c?d?e?f?g?h?i?j"},
		{"[192.0.2.1]", "[192.0.2.1]"},
	} {
		if got := Neuter(c.s); got != c.want {
			t.Errorf("Neuter(%q) = %q, want %q", c.s, got, c.want)
		}
	}
}

// hostnameByLabels is valid_hostname written another way, label by
// label, for FuzzNames to compare against.
func hostnameByLabels(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	numeric := true
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			switch b := label[i]; {
			case b >= '0' && b <= '9':
			case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b == '-', b == '_':
				numeric = false
			default:
				return false
			}
		}
	}
	return !numeric
}

// ipv4ByOctets is valid_ipv4_hostaddr written another way, for FuzzNames.
func ipv4ByOctets(a string) bool {
	parts := strings.Split(a, ".")
	if len(parts) != 4 {
		return false
	}
	for i, p := range parts {
		if p == "" || !AllDigits(p) {
			return false
		}
		n, err := strconv.Atoi(strings.TrimLeft(p, "0") + "0")
		if err != nil || n/10 > 255 {
			return false
		}
		if i == 0 && n == 0 && strings.Trim(a, "0.") != "" {
			return false
		}
	}
	return true
}

func FuzzNames(f *testing.F) {
	for _, s := range []string{"example.org", "a-b.c_d", "1.2.3.4", "-a", "a..b", "0.0.0.0", "010.1.1.1", "2001:db8::1", "::ffff:1.2.3.4", "a\x00b", `a"b<c`, "ü.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidHostname(s), hostnameByLabels(s); got != want {
			t.Errorf("ValidHostname(%q) = %v, label by label %v", s, got, want)
		}
		if got, want := ValidIPv4(s), ipv4ByOctets(s); got != want {
			t.Errorf("ValidIPv4(%q) = %v, octet by octet %v", s, got, want)
		}
		if got, want := ValidMailhostLiteral("[IPv6:"+s+"]"), len(s)+5 < 46 && strings.IndexByte(s, ']') < 0 && ValidIPv6(s); got != want {
			t.Errorf("ValidMailhostLiteral([IPv6:%q]) = %v, want %v", s, got, want)
		}
		if ValidUTF8Hostname(s) != ValidHostname(s) && isASCII(s) {
			t.Errorf("ValidUTF8Hostname(%q) differs from ValidHostname for ASCII", s)
		}
		if p := Printable(s, '?'); strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Errorf("Printable(%q) = %q keeps a control character", s, p)
		}
		if n := Neuter(s); strings.ContainsAny(n, neuterChars) {
			t.Errorf("Neuter(%q) = %q keeps a neuter character", s, n)
		}
	})
}
