package table

import (
	"testing"
)

func TestCIDR(t *testing.T) {
	tb := mustOpenText(t, "cidr", `# client access
192.0.2.1          host
192.0.2.0/24       net24
!198.51.100.0/24   not-198
`)
	if !tb.Pattern() {
		t.Error("Pattern() = false")
	}
	checkLookups(t, tb, []lookupCase{
		hit("192.0.2.1", "host"),
		hit("192.0.2.2", "net24"),
		hit("::ffff:192.0.2.1", "host"),
		hit("::ffff:192.0.2.77", "net24"),
		miss("198.51.100.9"),
		hit("203.0.113.1", "not-198"),
		hit("2001:db8::1", "not-198"), // a negated IPv4 pattern matches IPv6 keys
		miss("not an address"),
		miss(""),
		miss("[192.0.2.1]"),
		miss("192.0.2.1/32"),
	})
	checkEntries(t, tb, []Entry{
		{Pos: "2", Key: "192.0.2.1", Value: "host"},
		{Pos: "3", Key: "192.0.2.0/24", Value: "net24"},
		{Pos: "4", Key: "!198.51.100.0/24", Value: "not-198"},
	})
}

func TestCIDRForms(t *testing.T) {
	tb := mustOpenText(t, "cidr", `
2001:db8:1::/48          v6-48
[2001:db8:2::]/48        v6-brackets-outside
[2001:db8:3::/48]        v6-brackets-inside
[2001:db8:4::1]          v6-host
2001:DB8:5::1            v6-upper
::ffff:203.0.113.0/120   mapped
0.0.0.0/0                any-v4
::/0                     any-v6
`)
	checkLookups(t, tb, []lookupCase{
		hit("2001:db8:1:ffff::1", "v6-48"),
		hit("2001:db8:2::5", "v6-brackets-outside"),
		hit("2001:db8:3::5", "v6-brackets-inside"),
		hit("2001:db8:4::1", "v6-host"),
		hit("2001:db8:4::2", "any-v6"),
		hit("2001:db8:5::1", "v6-upper"),
		hit("fe80::1%eth0", "any-v6"),
		hit("203.0.113.9", "mapped"),
		hit("::ffff:203.0.113.9", "mapped"),
		hit("192.0.2.1", "any-v4"),
		hit("2001:db8:ffff::1", "any-v6"),
	})
}

func TestCIDRFirstMatch(t *testing.T) {
	// Many rules make the group indexed; the answer must still be the
	// first rule in file order, whatever its prefix length.
	text := "10.0.0.0/8 wide\n10.1.0.0/16 narrower\n10.1.2.3 host\n"
	for i := range 20 {
		text += "172.16." + itoa(i) + ".0/24 filler" + itoa(i) + "\n"
	}
	text += "172.16.3.3/32 too-late\n10.1.2.0/24 late\n"
	text += "!10.0.0.0/8 negated\n192.0.2.0/24 after-negation\n"
	tb := mustOpenText(t, "cidr", text)
	checkLookups(t, tb, []lookupCase{
		hit("10.1.2.3", "wide"),
		hit("10.200.0.1", "wide"),
		hit("172.16.3.3", "filler3"),
		hit("172.16.19.1", "filler19"),
		hit("192.0.2.1", "negated"),
		miss("10.9.9.9x"),
	})
	tb = mustOpenText(t, "cidr", "10.1.2.3 host\n10.1.2.0/24 net\n"+text)
	checkLookups(t, tb, []lookupCase{
		hit("10.1.2.3", "host"),
		hit("10.1.2.4", "net"),
	})
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func TestCIDRIf(t *testing.T) {
	tb := mustOpenText(t, "cidr", `
if 192.0.2.0/24
IF !192.0.2.128/25
192.0.2.0/26 low
endif
192.0.2.0/24 net
ENDIF
if !192.0.2.0/24
if ::/0
::1 loopback6
endif
0.0.0.0/0 other
endif
`)
	checkLookups(t, tb, []lookupCase{
		hit("192.0.2.1", "low"),
		hit("192.0.2.100", "net"),
		hit("192.0.2.200", "net"),
		hit("::1", "loopback6"),
		miss("::2"),
		hit("198.51.100.1", "other"),
	})
	checkEntries(t, tb, []Entry{
		{Pos: "2", Key: "if 192.0.2.0/24"},
		{Pos: "3", Key: "if !192.0.2.128/25"},
		{Pos: "4", Key: "192.0.2.0/26", Value: "low"},
		{Pos: "5", Key: "endif"},
		{Pos: "6", Key: "192.0.2.0/24", Value: "net"},
		{Pos: "7", Key: "endif"},
		{Pos: "8", Key: "if !192.0.2.0/24"},
		{Pos: "9", Key: "if ::/0"},
		{Pos: "10", Key: "::1", Value: "loopback6"},
		{Pos: "11", Key: "endif"},
		{Pos: "12", Key: "0.0.0.0/0", Value: "other"},
		{Pos: "13", Key: "endif"},
	})
}

func TestCIDRErrors(t *testing.T) {
	checkErrors(t, "cidr", []errCase{
		{"host bits", "192.0.2.0/24 ok\n192.0.2.1/24 REJECT\n",
			`cidr:cidr.txt:2: non-null host address bits in "192.0.2.1/24", perhaps you should use "192.0.2.0/24" instead`},
		{"host bits v6", "2001:db8::1/64 x\n",
			`cidr:cidr.txt:1: non-null host address bits in "2001:db8::1/64", perhaps you should use "2001:db8::/64" instead`},
		{"host bits in brackets", "[2001:db8::1]/64 x\n",
			`cidr:cidr.txt:1: non-null host address bits in "2001:db8::1/64", perhaps you should use "2001:db8::/64" instead`},
		{"mask too long", "192.0.2.0/33 x\n", `cidr:cidr.txt:1: bad net/mask pattern: "192.0.2.0/33"`},
		{"mask sign", "192.0.2.0/+24 x\n", `cidr:cidr.txt:1: bad net/mask pattern: "192.0.2.0/+24"`},
		{"mask empty", "192.0.2.0/ x\n", `cidr:cidr.txt:1: bad net/mask pattern: "192.0.2.0/"`},
		{"v6 mask too long", "::/129 x\n", `cidr:cidr.txt:1: bad net/mask pattern: "::/129"`},
		{"bad address", "# c\n\n192.0.2 x\n", `cidr:cidr.txt:3: bad address pattern: "192.0.2"`},
		{"hostname", "example.com x\n", `cidr:cidr.txt:1: bad address pattern: "example.com"`},
		{"leading zero", "192.0.2.01 x\n", `cidr:cidr.txt:1: bad address pattern: "192.0.2.01"`},
		{"zone", "fe80::1%eth0 x\n", `cidr:cidr.txt:1: bad address pattern: "fe80::1%eth0"`},
		{"missing bracket", "[::1 x\n", `cidr:cidr.txt:1: missing ']' in "[::1"`},
		{"garbage after bracket", "[::1]x y\n", `cidr:cidr.txt:1: garbage after ']' in "[::1]x"`},
		{"no result", "192.0.2.0/24\n", `cidr:cidr.txt:1: expected format: pattern whitespace result`},
		{"bare negation", "! x\n", `cidr:cidr.txt:1: missing address pattern`},
		{"if without pattern", "if\nendif\n", `cidr:cidr.txt:1: no address pattern after "if"`},
		{"if with extra", "if 10.0.0.0/8 x\nendif\n", `cidr:cidr.txt:1: extra text after "if" pattern: "x"`},
		{"if bad pattern", "if 10.0.0.1/8\nendif\n", `cidr:cidr.txt:1: non-null host address bits in "10.0.0.1/8", perhaps you should use "10.0.0.0/8" instead`},
		{"missing endif", "if 10.0.0.0/8\nif 10.0.0.0/16\nendif\n", `cidr:cidr.txt:1: if has no matching endif`},
		{"extra endif", "10.0.0.0/8 x\nendif\n", `cidr:cidr.txt:2: endif without matching if`},
		{"endif with extra", "if 10.0.0.0/8\nendif x\n", `cidr:cidr.txt:2: extra text after "endif": "x"`},
		{"continuation keeps first line", "10.0.0.1/8\n  REJECT\n", `cidr:cidr.txt:1: non-null host address bits in "10.0.0.1/8", perhaps you should use "10.0.0.0/8" instead`},
	})
}
