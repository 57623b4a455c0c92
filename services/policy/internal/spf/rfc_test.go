package spf

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// zoneA1 is the DNS setup of RFC 7208 Appendix A.1, with the reverse
// entries for all its hosts and the rogue reverse entry for 10.0.0.4.
const zoneA1 = `
$ORIGIN example.com.
@       600 MX  10 mail-a
            MX  20 mail-b
            A   192.0.2.10
            A   192.0.2.11
amy         A   192.0.2.65
bob         A   192.0.2.66
mail-a      A   192.0.2.129
mail-b      A   192.0.2.130
www         CNAME example.com.

$ORIGIN example.org.
@       600 MX  10 mail-c
mail-c      A   192.0.2.140

$ORIGIN 2.0.192.in-addr.arpa.
10      600 PTR example.com.
11          PTR example.com.
65          PTR amy.example.com.
66          PTR bob.example.com.
129         PTR mail-a.example.com.
130         PTR mail-b.example.com.
140         PTR mail-c.example.org.

$ORIGIN 0.0.10.in-addr.arpa.
4       600 PTR bob.example.com.
`

type rfcCase struct {
	sender string
	ip     string
	want   Result
	mech   string
}

func runCases(t *testing.T, zone string, cases []rfcCase) {
	t.Helper()
	res := startDNS(t, zone).resolver()
	for _, tc := range cases {
		t.Run(tc.sender+"/"+tc.ip, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got := Check(ctx, res, Request{IP: netip.MustParseAddr(tc.ip), Sender: tc.sender, HELO: "client.example.net", Receiver: "mx.example.net"})
			if got.Result != tc.want || got.Mechanism != tc.mech {
				t.Errorf("Check = %+v, want result %s mechanism %q", got, tc.want, tc.mech)
			}
		})
	}
}

// TestAppendixA1 holds the "Simple Examples" of RFC 7208 Appendix A.1:
// each record published at example.com with the hosts the RFC says pass,
// and hosts outside them that must fail.
func TestAppendixA1(t *testing.T) {
	for _, tc := range []struct {
		record string
		pass   []string
		fail   []string
	}{
		{"v=spf1 +all", []string{"192.0.2.10", "10.0.0.1", "2001:db8::1"}, nil},
		{"v=spf1 a -all", []string{"192.0.2.10", "192.0.2.11"}, []string{"192.0.2.65", "192.0.2.129"}},
		// "no sending hosts pass since example.org has no A records"
		{"v=spf1 a:example.org -all", nil, []string{"192.0.2.10", "192.0.2.140"}},
		{"v=spf1 mx -all", []string{"192.0.2.129", "192.0.2.130"}, []string{"192.0.2.10", "192.0.2.140"}},
		{"v=spf1 mx:example.org -all", []string{"192.0.2.140"}, []string{"192.0.2.129"}},
		{"v=spf1 mx mx:example.org -all", []string{"192.0.2.129", "192.0.2.130", "192.0.2.140"}, []string{"192.0.2.65"}},
		{"v=spf1 mx/30 mx:example.org/30 -all",
			[]string{"192.0.2.128", "192.0.2.131", "192.0.2.140", "192.0.2.143"},
			[]string{"192.0.2.127", "192.0.2.132", "192.0.2.139", "192.0.2.144"}},
		// 192.0.2.65: reverse DNS valid and in example.com; 192.0.2.140:
		// valid but not in example.com; 10.0.0.4: the reverse name does
		// not map back to the address.
		{"v=spf1 ptr -all", []string{"192.0.2.65"}, []string{"192.0.2.140", "10.0.0.4"}},
		{"v=spf1 ip4:192.0.2.128/28 -all", []string{"192.0.2.129"}, []string{"192.0.2.65"}},
	} {
		t.Run(tc.record, func(t *testing.T) {
			var cases []rfcCase
			for _, ip := range tc.pass {
				cases = append(cases, rfcCase{"user@example.com", ip, Pass, firstMatching(tc.record, ip)})
			}
			for _, ip := range tc.fail {
				cases = append(cases, rfcCase{"user@example.com", ip, Fail, "-all"})
			}
			runCases(t, zoneA1+"example.com. TXT \""+tc.record+"\"\n", cases)
		})
	}
}

// firstMatching names the directive of an Appendix A.1 record that a
// passing host matches, as the RFC's comments explain it.
func firstMatching(record, ip string) string {
	m := map[string]string{
		"v=spf1 +all":                    "+all",
		"v=spf1 a -all":                  "a",
		"v=spf1 mx -all":                 "mx",
		"v=spf1 mx:example.org -all":     "mx:example.org",
		"v=spf1 ptr -all":                "ptr",
		"v=spf1 ip4:192.0.2.128/28 -all": "ip4:192.0.2.128/28",
	}
	if v, ok := m[record]; ok {
		return v
	}
	switch record {
	case "v=spf1 mx mx:example.org -all":
		if ip == "192.0.2.140" {
			return "mx:example.org"
		}
		return "mx"
	case "v=spf1 mx/30 mx:example.org/30 -all":
		if ip >= "192.0.2.140" {
			return "mx:example.org/30"
		}
		return "mx/30"
	}
	return ""
}

// TestAppendixA2 is the "Multiple Domain Example" of RFC 7208 Appendix
// A.2: example.org is the union of example.com and example.net, and
// la/ny/sf.example.org redirect to it. The records of example.com and
// example.net are this test's own.
func TestAppendixA2(t *testing.T) {
	zone := zoneA1 + `
example.com.    TXT "v=spf1 mx -all"
example.net.    TXT "v=spf1 ip4:198.51.100.0/24 -all"
example.org.    TXT "v=spf1 include:example.com include:example.net -all"
la.example.org. TXT "v=spf1 redirect=example.org"
ny.example.org. TXT "v=spf1 redirect=example.org"
sf.example.org. TXT "v=spf1 redirect=example.org"
`
	var cases []rfcCase
	for _, d := range []string{"example.org", "la.example.org", "ny.example.org", "sf.example.org"} {
		cases = append(cases,
			rfcCase{"user@" + d, "192.0.2.129", Pass, "include:example.com"},
			rfcCase{"user@" + d, "192.0.2.130", Pass, "include:example.com"},
			rfcCase{"user@" + d, "198.51.100.7", Pass, "include:example.net"},
			rfcCase{"user@" + d, "192.0.2.65", Fail, "-all"},
			rfcCase{"user@" + d, "2001:db8::1", Fail, "-all"},
		)
	}
	runCases(t, zone, cases)
}

// TestAppendixA3 is the "DNSBL Style Example" of RFC 7208 Appendix A.3:
// per-user policies through exists and the l, i and d macros.
func TestAppendixA3(t *testing.T) {
	zone := zoneA1 + `
$ORIGIN _spf.example.com.
mary.mobile-users                 A 127.0.0.2
fred.mobile-users                 A 127.0.0.2
15.15.168.192.joel.remote-users   A 127.0.0.2
16.15.168.192.joel.remote-users   A 127.0.0.2

example.com. TXT "v=spf1 mx include:mobile-users._spf.%{d} include:remote-users._spf.%{d} -all"
mobile-users._spf.example.com. TXT "v=spf1 exists:%{l1r+}.%{d}"
remote-users._spf.example.com. TXT "v=spf1 exists:%{ir}.%{l1r+}.%{d}"
`
	runCases(t, zone, []rfcCase{
		{"mary@example.com", "203.0.113.9", Pass, "include:mobile-users._spf.%{d}"},
		{"fred@example.com", "203.0.113.9", Pass, "include:mobile-users._spf.%{d}"},
		{"fred+bulk@example.com", "203.0.113.9", Pass, "include:mobile-users._spf.%{d}"},
		{"joel@example.com", "192.168.15.15", Pass, "include:remote-users._spf.%{d}"},
		{"joel@example.com", "192.168.15.16", Pass, "include:remote-users._spf.%{d}"},
		{"joel+lists@example.com", "192.168.15.16", Pass, "include:remote-users._spf.%{d}"},
		{"joel@example.com", "192.168.15.17", Fail, "-all"},
		{"mary@example.com", "192.0.2.129", Pass, "mx"},
		{"bob@example.com", "192.0.2.129", Pass, "mx"},
		{"bob@example.com", "203.0.113.9", Fail, "-all"},
	})
}

// TestAppendixA4 is the "Multiple Requirements Example" of RFC 7208
// Appendix A.4. As published, ptr._spf.example.com holds "-ptr", whose
// target is <domain> of that check, ptr._spf.example.com itself (§5.5), so
// no reverse name ever matches and every host fails; the variant with
// "-ptr:%{o}" (the sender's domain) shows the intended policy: in
// 192.0.2.0/24 and with valid reverse DNS in example.com.
func TestAppendixA4(t *testing.T) {
	base := zoneA1 + `
example.com.          TXT ( "v=spf1 "
                            "-include:ip4._spf.%{d} "
                            "-include:ptr._spf.%{d} "
                            "+all" )
ip4._spf.example.com. TXT "v=spf1 -ip4:192.0.2.0/24 +all"
`
	t.Run("as published", func(t *testing.T) {
		runCases(t, base+`ptr._spf.example.com. TXT "v=spf1 -ptr +all"`+"\n", []rfcCase{
			{"user@example.com", "192.0.2.65", Fail, "-include:ptr._spf.%{d}"},
			{"user@example.com", "192.0.2.200", Fail, "-include:ptr._spf.%{d}"},
			{"user@example.com", "10.0.0.4", Fail, "-include:ip4._spf.%{d}"},
		})
	})
	t.Run("ptr of the sender domain", func(t *testing.T) {
		runCases(t, base+`ptr._spf.example.com. TXT "v=spf1 -ptr:%{o} +all"`+"\n", []rfcCase{
			{"user@example.com", "192.0.2.65", Pass, "+all"},
			{"user@example.com", "192.0.2.10", Pass, "+all"},
			{"user@example.com", "192.0.2.200", Fail, "-include:ptr._spf.%{d}"},
			{"user@example.com", "10.0.0.4", Fail, "-include:ip4._spf.%{d}"},
		})
	})
}
