package spf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func check(t *testing.T, s *testDNS, req Request) Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return Check(ctx, s.resolver(), req)
}

func req(ip string) Request {
	return Request{IP: netip.MustParseAddr(ip), Sender: "user@example.com", HELO: "client.example.net", Receiver: "mx.example.net"}
}

// TestCheck are cases in the manner of the OpenSPF test suite, written
// from the RFC 7208 text: each a zone, a client and the expected verdict.
func TestCheck(t *testing.T) {
	hosts := ""
	for i := 1; i <= 12; i++ {
		hosts += fmt.Sprintf("h%d.example.com. A 198.51.100.%d\n", i, i)
	}
	aTerms := func(n int) string {
		var b strings.Builder
		for i := 1; i <= n; i++ {
			fmt.Fprintf(&b, " a:h%d.example.com", i)
		}
		return b.String()
	}
	manyMX := ""
	for i := 1; i <= 11; i++ {
		manyMX += fmt.Sprintf("many.example.com. MX %d h%d.example.com.\n", i, i)
	}
	manyPTR := ""
	for i := 1; i <= 11; i++ {
		manyPTR += fmt.Sprintf("9.100.51.198.in-addr.arpa. PTR n%d.example.com.\nn%d.example.com. A 198.51.100.9\n", i, i)
	}

	for _, tc := range []struct {
		name string
		zone string
		req  Request
		want Response
	}{
		// §4.5 record selection.
		{"no txt", `example.com. A 192.0.2.1`, req("192.0.2.1"),
			Response{Result: None, Domain: "example.com", Problem: "no SPF record at example.com"}},
		{"nxdomain", `example.org. A 192.0.2.1`, req("192.0.2.1"),
			Response{Result: None, Domain: "example.com", Problem: "no SPF record at example.com"}},
		{"other txt only", `example.com. TXT "v=spf10 -all"
example.com. TXT "spf2.0/pra -all"
example.com. TXT "v=spf1-all"`, req("192.0.2.1"),
			Response{Result: None, Domain: "example.com", Problem: "no SPF record at example.com"}},
		{"two records", `example.com. TXT "v=spf1 -all"
example.com. TXT "v=spf1 +all"`, req("192.0.2.1"),
			Response{Result: PermError, Domain: "example.com", Problem: "2 SPF records at example.com"}},
		{"one among others", `example.com. TXT "google-site-verification=x"
example.com. TXT "v=spf1 -all"`, req("192.0.2.1"),
			Response{Result: Fail, Domain: "example.com", Mechanism: "-all"}},
		{"split strings joined", `example.com. TXT "v=spf1 ip4:192.0.2.0/24" " -all"`, req("192.0.2.1"),
			Response{Result: Pass, Domain: "example.com", Mechanism: "ip4:192.0.2.0/24"}},
		{"version case-insensitive", `example.com. TXT "V=SPF1 IP4:192.0.2.1 -ALL"`, req("192.0.2.1"),
			Response{Result: Pass, Domain: "example.com", Mechanism: "IP4:192.0.2.1"}},
		{"empty record", `example.com. TXT "v=spf1"`, req("192.0.2.1"),
			Response{Result: Neutral, Domain: "example.com"}},
		{"extra spaces", `example.com. TXT "v=spf1   ?all  "`, req("192.0.2.1"),
			Response{Result: Neutral, Domain: "example.com", Mechanism: "?all"}},
		{"softfail", `example.com. TXT "v=spf1 ~all"`, req("192.0.2.1"),
			Response{Result: SoftFail, Domain: "example.com", Mechanism: "~all"}},

		// §4.6: a syntax error anywhere is permerror, before evaluation.
		{"syntax after match", `example.com. TXT "v=spf1 +all foo"`, req("192.0.2.1"),
			Response{Result: PermError, Domain: "example.com", Problem: `record at example.com: unknown mechanism "foo": spf syntax error`}},
		{"unknown modifier ignored", `example.com. TXT "v=spf1 moo.cow-x_y=%{d}.x -all"`, req("192.0.2.1"),
			Response{Result: Fail, Domain: "example.com", Mechanism: "-all"}},

		// §4.3: malformed or single-label domains have no policy.
		{"single label", `com. TXT "v=spf1 -all"`, Request{IP: netip.MustParseAddr("192.0.2.1"), Sender: "user@com"},
			Response{Result: None, Domain: "com", Problem: `malformed domain "com"`}},
		{"empty label", `example.com. TXT "v=spf1 -all"`, Request{IP: netip.MustParseAddr("192.0.2.1"), Sender: "user@a..example.com"},
			Response{Result: None, Domain: "a..example.com", Problem: `malformed domain "a..example.com"`}},

		// §2.4: the null sender is checked as postmaster@HELO.
		{"null sender", `helo.example.org. TXT "v=spf1 a -all"
helo.example.org. A 192.0.2.7`, Request{IP: netip.MustParseAddr("192.0.2.7"), HELO: "helo.example.org"},
			Response{Result: Pass, Domain: "helo.example.org", Mechanism: "a"}},
		{"null sender, address literal HELO", `example.com. TXT "v=spf1 -all"`, Request{IP: netip.MustParseAddr("192.0.2.7"), HELO: "[192.0.2.7]"},
			Response{Result: None, Domain: "[192.0.2.7]", Problem: `malformed domain "[192.0.2.7]"`}},
		{"no local part", `example.com. TXT "v=spf1 exists:%{l}.users.example.com -all"
postmaster.users.example.com. A 127.0.0.2`, Request{IP: netip.MustParseAddr("192.0.2.7"), Sender: "@example.com"},
			Response{Result: Pass, Domain: "example.com", Mechanism: "exists:%{l}.users.example.com"}},

		// §5.2 include.
		{"include of no record", `example.com. TXT "v=spf1 include:other.example.com -all"
other.example.com. A 192.0.2.1`, req("192.0.2.1"),
			Response{Result: PermError, Domain: "example.com", Problem: "include:other.example.com: no SPF record at other.example.com"}},
		{"include of nxdomain", `example.com. TXT "v=spf1 include:nx.example.com -all"`, req("192.0.2.1"),
			Response{Result: PermError, Domain: "example.com", Problem: "include:nx.example.com: no SPF record at nx.example.com"}},
		{"include softfail is no match", `example.com. TXT "v=spf1 include:o.example.com ?all"
o.example.com. TXT "v=spf1 ~all"`, req("192.0.2.1"),
			Response{Result: Neutral, Domain: "example.com", Mechanism: "?all"}},
		{"include neutral is no match", `example.com. TXT "v=spf1 include:o.example.com -all"
o.example.com. TXT "v=spf1"`, req("192.0.2.1"),
			Response{Result: Fail, Domain: "example.com", Mechanism: "-all"}},
		{"include permerror", `example.com. TXT "v=spf1 include:o.example.com +all"
o.example.com. TXT "v=spf1 ip4:300.1.1.1"`, req("192.0.2.1"),
			Response{Result: PermError, Domain: "example.com", Problem: `include:o.example.com: record at o.example.com: "ip4:300.1.1.1": bad address "300.1.1.1": spf syntax error`}},
		{"include pass with minus", `example.com. TXT "v=spf1 -include:o.example.com +all"
o.example.com. TXT "v=spf1 +all"`, req("192.0.2.1"),
			Response{Result: Fail, Domain: "example.com", Mechanism: "-include:o.example.com"}},

		// §6.1 redirect.
		{"redirect", `example.com. TXT "v=spf1 ip4:10.0.0.0/8 redirect=o.example.com"
o.example.com. TXT "v=spf1 ip4:192.0.2.0/24 -all"`, req("192.0.2.1"),
			Response{Result: Pass, Domain: "example.com", Mechanism: "ip4:192.0.2.0/24"}},
		{"redirect ignored with all", `example.com. TXT "v=spf1 redirect=o.example.com ?all"
o.example.com. TXT "v=spf1 +all"`, req("192.0.2.1"),
			Response{Result: Neutral, Domain: "example.com", Mechanism: "?all"}},
		{"redirect to no record", `example.com. TXT "v=spf1 redirect=o.example.com"`, req("192.0.2.1"),
			Response{Result: PermError, Domain: "example.com", Problem: "redirect=o.example.com: no SPF record at o.example.com"}},
		{"redirect loop", `example.com. TXT "v=spf1 redirect=o.example.com"
o.example.com. TXT "v=spf1 redirect=example.com"`, req("192.0.2.1"),
			Response{Result: PermError, Domain: "example.com", Problem: "more than 10 DNS-querying terms"}},
		{"include loop", `example.com. TXT "v=spf1 include:example.com -all"`, req("192.0.2.1"),
			Response{Result: PermError, Domain: "example.com", Problem: strings.Repeat("include:example.com: ", 10) + "more than 10 DNS-querying terms"}},
		{"two redirects", `example.com. TXT "v=spf1 redirect=a.example.com redirect=b.example.com"`, req("192.0.2.1"),
			Response{Result: PermError, Domain: "example.com", Problem: "record at example.com: more than one redirect modifier: spf syntax error"}},

		// §4.6.4 the limit of 10 DNS-querying terms.
		{"10 lookups", `example.com. TXT "v=spf1` + aTerms(10) + ` +all"` + "\n" + hosts, req("192.0.2.1"),
			Response{Result: Pass, Domain: "example.com", Mechanism: "+all"}},
		{"11 lookups", `example.com. TXT "v=spf1` + aTerms(11) + ` +all"` + "\n" + hosts, req("192.0.2.1"),
			Response{Result: PermError, Domain: "example.com", Problem: "more than 10 DNS-querying terms"}},
		{"11 lookups, match before the limit", `example.com. TXT "v=spf1` + aTerms(11) + ` +all"` + "\n" + hosts, req("198.51.100.3"),
			Response{Result: Pass, Domain: "example.com", Mechanism: "a:h3.example.com"}},
		{"ip and all do not count", `example.com. TXT "v=spf1` + aTerms(10) + ` ip4:192.0.2.9 ip6:2001:db8::/32 ip4:192.0.2.1 -all"` + "\n" + hosts, req("192.0.2.1"),
			Response{Result: Pass, Domain: "example.com", Mechanism: "ip4:192.0.2.1"}},

		// §4.6.4 void lookups.
		{"2 void lookups", `example.com. TXT "v=spf1 a:v1.example.com exists:v2.example.com +all"`, req("192.0.2.1"),
			Response{Result: Pass, Domain: "example.com", Mechanism: "+all"}},
		{"3 void lookups", `example.com. TXT "v=spf1 a:v1.example.com mx:v2.example.com exists:v3.example.com +all"`, req("192.0.2.1"),
			Response{Result: PermError, Domain: "example.com", Problem: "more than 2 void lookups"}},
		{"void by no data", `example.com. TXT "v=spf1 a:n.example.com a:n.example.com a:n.example.com +all"
n.example.com. MX 10 h1.example.com.`, req("192.0.2.1"),
			Response{Result: PermError, Domain: "example.com", Problem: "more than 2 void lookups"}},

		// §5.3, §5.4, §5.6 a and mx with CIDR lengths.
		{"a dual cidr v4", `example.com. TXT "v=spf1 a/24//64 -all"
example.com. A 192.0.2.200`, req("192.0.2.1"),
			Response{Result: Pass, Domain: "example.com", Mechanism: "a/24//64"}},
		{"a dual cidr v6", `example.com. TXT "v=spf1 a/24//64 -all"
example.com. AAAA 2001:db8:1:2::1`, req("2001:db8:1:2:ffff::9"),
			Response{Result: Pass, Domain: "example.com", Mechanism: "a/24//64"}},
		{"a v6 only cidr", `example.com. TXT "v=spf1 a//64 -all"
example.com. A 192.0.2.200`, req("192.0.2.1"),
			Response{Result: Fail, Domain: "example.com", Mechanism: "-all"}},
		{"a v6 outside cidr", `example.com. TXT "v=spf1 a:o.example.com//64 -all"
o.example.com. AAAA 2001:db8:1:2::1`, req("2001:db8:1:3::1"),
			Response{Result: Fail, Domain: "example.com", Mechanism: "-all"}},
		{"mx more than 10", `example.com. TXT "v=spf1 mx:many.example.com +all"` + "\n" + manyMX + hosts, req("192.0.2.1"),
			Response{Result: PermError, Domain: "example.com", Problem: "mx:many.example.com: 11 MX records, more than 10"}},
		{"null mx", `example.com. TXT "v=spf1 mx -all"
example.com. MX 0 .`, req("192.0.2.1"),
			Response{Result: Fail, Domain: "example.com", Mechanism: "-all"}},
		{"mx host servfail", `example.com. TXT "v=spf1 mx -all"
example.com. MX 0 broken.example.com.`, req("192.0.2.1"),
			Response{Result: TempError, Domain: "example.com", Problem: "A broken.example.com: query broken.example.com A: SERVFAIL"}},

		// §5.5 ptr.
		{"ptr first 10 names only", `example.com. TXT "v=spf1 ptr:n11.example.com -all"` + "\n" + manyPTR, req("198.51.100.9"),
			Response{Result: Fail, Domain: "example.com", Mechanism: "-all"}},
		{"ptr among the first 10", `example.com. TXT "v=spf1 ptr:n10.example.com -all"` + "\n" + manyPTR, req("198.51.100.9"),
			Response{Result: Pass, Domain: "example.com", Mechanism: "ptr:n10.example.com"}},
		{"ptr name not validated", `example.com. TXT "v=spf1 ptr -all"
1.2.0.192.in-addr.arpa. PTR liar.example.com.
liar.example.com. A 192.0.2.2`, req("192.0.2.1"),
			Response{Result: Fail, Domain: "example.com", Mechanism: "-all"}},
		{"ptr subdomain case-insensitive", `example.com. TXT "v=spf1 ptr -all"
1.2.0.192.in-addr.arpa. PTR Host.Sub.EXAMPLE.com.
host.sub.example.com. A 192.0.2.1`, req("192.0.2.1"),
			Response{Result: Pass, Domain: "example.com", Mechanism: "ptr"}},
		{"ptr not a suffix match", `example.com. TXT "v=spf1 ptr -all"
1.2.0.192.in-addr.arpa. PTR notexample.com.
notexample.com. A 192.0.2.1`, req("192.0.2.1"),
			Response{Result: Fail, Domain: "example.com", Mechanism: "-all"}},
		{"ptr servfail is no match", `example.com. TXT "v=spf1 ptr ?all"`, req("192.0.2.99"),
			Response{Result: Neutral, Domain: "example.com", Mechanism: "?all"}},
		{"ptr v6", `example.com. TXT "v=spf1 ptr -all"
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR h6.example.com.
h6.example.com. AAAA 2001:db8::1`, req("2001:db8::1"),
			Response{Result: Pass, Domain: "example.com", Mechanism: "ptr"}},

		// §5.7 exists always asks for A.
		{"exists v6 client", `example.com. TXT "v=spf1 exists:%{ir}.%{v}.bl.example.com -all"
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.bl.example.com. A 127.0.0.2`, req("2001:db8::1"),
			Response{Result: Pass, Domain: "example.com", Mechanism: "exists:%{ir}.%{v}.bl.example.com"}},
		{"exists with %{p}", `example.com. TXT "v=spf1 exists:%{p}.ok.example.com -all"
1.2.0.192.in-addr.arpa. PTR other.example.org.
1.2.0.192.in-addr.arpa. PTR mail.example.com.
mail.example.com. A 192.0.2.1
other.example.org. A 192.0.2.1
mail.example.com.ok.example.com. A 127.0.0.2`, req("192.0.2.1"),
			Response{Result: Pass, Domain: "example.com", Mechanism: "exists:%{p}.ok.example.com"}},

		// §5 note: an IPv4-mapped client is the IPv4 client.
		{"mapped client", `example.com. TXT "v=spf1 ip6:::ffff:0:0/96 ip4:192.0.2.0/24 -all"`, req("::ffff:192.0.2.1"),
			Response{Result: Pass, Domain: "example.com", Mechanism: "ip4:192.0.2.0/24"}},
		{"ip6", `example.com. TXT "v=spf1 ip4:0.0.0.0/0 ip6:2001:db8::/32 -all"`, req("2001:db8:ff::1"),
			Response{Result: Pass, Domain: "example.com", Mechanism: "ip6:2001:db8::/32"}},

		// §4.4, §5: DNS errors.
		{"servfail", `example.com. A 192.0.2.1`, req("192.0.2.1"), Response{}},
		{"include servfail", `example.com. TXT "v=spf1 include:broken.example.com -all"`, req("192.0.2.1"),
			Response{Result: TempError, Domain: "example.com", Problem: "include:broken.example.com: TXT broken.example.com: query broken.example.com TXT: SERVFAIL"}},
		{"a servfail", `example.com. TXT "v=spf1 a:broken.example.com -all"`, req("192.0.2.1"),
			Response{Result: TempError, Domain: "example.com", Problem: "A broken.example.com: query broken.example.com A: SERVFAIL"}},

		// §4.8 target domains after expansion.
		{"malformed target", `example.com. TXT "v=spf1 a:%{l}.example.com -all"`, Request{IP: netip.MustParseAddr("192.0.2.1"), Sender: "a..b@example.com"},
			Response{Result: PermError, Domain: "example.com", Problem: `a:%{l}.example.com: malformed target domain "a..b.example.com"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startDNS(t, tc.zone)
			s.failName("broken.example.com")
			s.failName("99.2.0.192.in-addr.arpa")
			if tc.name == "servfail" {
				s.failName("example.com")
				tc.want = Response{Result: TempError, Domain: "example.com", Problem: "TXT example.com: query example.com TXT: SERVFAIL"}
			}
			got := check(t, s, tc.req)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Check (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoopsAreBounded: records that include or redirect to each other end
// by the term limit, after a bounded number of queries.
func TestLoopsAreBounded(t *testing.T) {
	s := startDNS(t, `example.com. TXT "v=spf1 include:a.example.com include:b.example.com -all"
a.example.com. TXT "v=spf1 include:example.com include:b.example.com"
b.example.com. TXT "v=spf1 redirect=a.example.com"`)
	got := check(t, s, req("192.0.2.1"))
	if got.Result != PermError {
		t.Errorf("Check = %+v, want permerror", got)
	}
	if n := s.queries.Load(); n > 11 {
		t.Errorf("%d queries, want at most 11 (one TXT per counted term and the first)", n)
	}
}

// TestPMacroLookedUpOnce: many %{p} in a record cost one reverse lookup
// and one address lookup per name, not one each.
func TestPMacroLookedUpOnce(t *testing.T) {
	s := startDNS(t, `example.com. TXT "v=spf1 exists:%{p}.%{p}.%{p}.%{p}.%{p}.x.example.com a:%{p} -all"
1.2.0.192.in-addr.arpa. PTR h.example.com.
h.example.com. A 192.0.2.1`)
	got := check(t, s, req("192.0.2.1"))
	if got.Result != Pass || got.Mechanism != "a:%{p}" {
		t.Errorf("Check = %+v", got)
	}
	// TXT, PTR, A h, A exists, A a:h.
	if n := s.queries.Load(); n != 5 {
		t.Errorf("%d queries, want 5", n)
	}
}

// TestExplanation covers exp= (RFC 7208 §6.2).
func TestExplanation(t *testing.T) {
	for _, tc := range []struct {
		name, zone, want string
		result           Result
	}{
		{"expanded", `example.com. TXT "v=spf1 ip4:192.0.2.2 -all exp=why.example.com"
why.example.com. TXT "%{i} is not one of %{d}'s designated mail servers (%{c}, %{r}, %{S})."`,
			"192.0.2.1 is not one of example.com's designated mail servers (192.0.2.1, mx.example.net, user%40example.com).", Fail},
		{"macro in exp domain", `example.com. TXT "v=spf1 -all exp=%{l}._exp.%{d}"
user._exp.example.com. TXT "sorry " "%{l}"`, "sorry user", Fail},
		{"not on softfail", `example.com. TXT "v=spf1 ~all exp=why.example.com"
why.example.com. TXT "no"`, "", SoftFail},
		{"no record", `example.com. TXT "v=spf1 -all exp=why.example.com"`, "", Fail},
		{"two records", `example.com. TXT "v=spf1 -all exp=why.example.com"
why.example.com. TXT "one"
why.example.com. TXT "two"`, "", Fail},
		{"bad macro", `example.com. TXT "v=spf1 -all exp=why.example.com"
why.example.com. TXT "100%"`, "", Fail},
		{"servfail ignored", `example.com. TXT "v=spf1 -all exp=broken.example.com"`, "", Fail},
		{"from include not used", `example.com. TXT "v=spf1 -include:o.example.com"
o.example.com. TXT "v=spf1 +all exp=why.example.com"
why.example.com. TXT "inner"`, "", Fail},
		// The included fail's exp= is not even fetched: 2 queries.
		{"from include not fetched", `example.com. TXT "v=spf1 include:o.example.com -all"
o.example.com. TXT "v=spf1 -all exp=why.example.com"
why.example.com. TXT "inner"`, "", Fail},
		{"redirect uses target's", `example.com. TXT "v=spf1 redirect=o.example.com exp=outer.example.com"
o.example.com. TXT "v=spf1 -all exp=inner.example.com"
outer.example.com. TXT "outer %{d}"
inner.example.com. TXT "inner %{d}"`, "inner o.example.com", Fail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startDNS(t, tc.zone)
			s.failName("broken.example.com")
			got := check(t, s, req("192.0.2.1"))
			if got.Result != tc.result || got.Explanation != tc.want {
				t.Errorf("Check = %+v, want %s with explanation %q", got, tc.result, tc.want)
			}
			if n := s.queries.Load(); tc.name == "from include not fetched" && n != 2 {
				t.Errorf("%d queries, want 2", n)
			}
		})
	}
}

// TestTimeout: an unanswered query and a spent deadline give temperror.
func TestTimeout(t *testing.T) {
	s := startDNS(t, `example.com. TXT "v=spf1 a:slow.example.com -all"`)
	s.dropName("slow.example.com")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	got := Check(ctx, s.resolver(), req("192.0.2.1"))
	if got.Result != TempError || !strings.Contains(got.Problem, "deadline exceeded") {
		t.Errorf("Check = %+v, want temperror for the deadline", got)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Check took %v, past its deadline", d)
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	got = Check(ctx, s.resolver(), req("192.0.2.1"))
	if got.Result != TempError {
		t.Errorf("Check with a cancelled context = %+v, want temperror", got)
	}
}

func TestInvalidIP(t *testing.T) {
	got := Check(context.Background(), failingResolver{}, Request{Sender: "a@example.com"})
	if got.Result != PermError {
		t.Errorf("Check without IP = %+v", got)
	}
}

type failingResolver struct{}

var errBroken = errors.New("broken")

func (failingResolver) LookupTXT(context.Context, string) ([]string, error) { return nil, errBroken }
func (failingResolver) LookupA(context.Context, string) ([]netip.Addr, error) {
	return nil, errBroken
}
func (failingResolver) LookupAAAA(context.Context, string) ([]netip.Addr, error) {
	return nil, errBroken
}
func (failingResolver) LookupMX(context.Context, string) ([]MX, error) { return nil, errBroken }
func (failingResolver) LookupPTR(context.Context, netip.Addr) ([]string, error) {
	return nil, errBroken
}

// TestParseRecord covers the syntax of RFC 7208 §4.6.1, §5 and §12.
func TestParseRecord(t *testing.T) {
	for _, tc := range []struct {
		rec string
		ok  bool
	}{
		{"v=spf1", true},
		{"v=spf1 a mx ptr all", true},
		{"v=spf1 a:example.com/24//64 mx:example.com//0 a/0", true},
		{"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ip6:::1 ip4:0.0.0.0/0", true},
		{"v=spf1 include:%{d}. exists:%{ir}.%{v}.example.com redirect=%{d}", true},
		{"v=spf1 a:foo.example.com. a:x.123-4", true},
		{"v=spf1 exp=%{d} other=", true},
		{"v=spf1 a:example", false},
		{"v=spf1 a:example.123", false},
		{"v=spf1 a:example.-com", false},
		{"v=spf1 a:", false},
		{"v=spf1 a/33", false},
		{"v=spf1 a//129", false},
		{"v=spf1 a/024", false},
		{"v=spf1 a/", false},
		{"v=spf1 ax", false},
		{"v=spf1 all:x", false},
		{"v=spf1 all/24", false},
		{"v=spf1 include", false},
		{"v=spf1 include:", false},
		{"v=spf1 exists", false},
		{"v=spf1 ip4", false},
		{"v=spf1 ip4:192.0.2.1/33", false},
		{"v=spf1 ip4:2001:db8::1", false},
		{"v=spf1 ip4:192.000.2.1", false},
		{"v=spf1 ip6:192.0.2.1", false},
		{"v=spf1 ip6:2001:db8::/129", false},
		{"v=spf1 ip6:fe80::1%eth0", false},
		{"v=spf1 ptr:", false},
		{"v=spf1 ptr/24", false},
		{"v=spf1 *all", false},
		{"v=spf1 --all", false},
		{"v=spf1 exp=a.example.com exp=b.example.com", false},
		{"v=spf1 redirect=", false},
		{"v=spf1 redirect=%{c}.example.com", false},
		{"v=spf1 other=%{z}", false},
		{"v=spf1 a:%{d", false},
		{"v=spf1 -all\t", false},
		{"v=spf1 1a=b", false},
		{"v=spf2 -all", false},
	} {
		_, err := parseRecord(tc.rec)
		if (err == nil) != tc.ok {
			t.Errorf("parseRecord(%q) error = %v, want ok %v", tc.rec, err, tc.ok)
		}
		if err != nil && !errors.Is(err, errSyntax) {
			t.Errorf("parseRecord(%q) error %v does not wrap errSyntax", tc.rec, err)
		}
	}
}

func TestReceivedSPF(t *testing.T) {
	r := req("192.0.2.1")
	for _, tc := range []struct {
		req  Request
		resp Response
		want string
	}{
		{r, Response{Result: Pass, Domain: "example.com", Mechanism: "ip4:192.0.2.0/24"},
			`pass (mx.example.net: domain of user@example.com designates 192.0.2.1 as permitted sender) client-ip=192.0.2.1; envelope-from="user@example.com"; helo=client.example.net; receiver=mx.example.net; identity=mailfrom; mechanism="ip4:192.0.2.0/24";`},
		{r, Response{Result: Neutral, Domain: "example.com"},
			`neutral (mx.example.net: domain of user@example.com neither permits nor denies 192.0.2.1) client-ip=192.0.2.1; envelope-from="user@example.com"; helo=client.example.net; receiver=mx.example.net; identity=mailfrom; mechanism=default;`},
		{Request{IP: netip.MustParseAddr("::ffff:192.0.2.1"), HELO: "x (y)\r\n"}, Response{Result: PermError, Problem: `bad "thing"`},
			`permerror (permanent error in the SPF policy of domain of postmaster@x \(y\)??: bad "thing") client-ip=192.0.2.1; envelope-from=""; helo="x (y)??"; identity=mailfrom; problem="bad \"thing\"";`},
		{Request{IP: netip.MustParseAddr("2001:db8::1"), Sender: "a@b.example", HELO: "h.example"}, Response{Result: Fail, Mechanism: "-all"},
			`fail (domain of a@b.example does not designate 2001:db8::1 as permitted sender) client-ip="2001:db8::1"; envelope-from="a@b.example"; helo=h.example; identity=mailfrom; mechanism=-all;`},
	} {
		if got := ReceivedSPF(tc.req, tc.resp); got != tc.want {
			t.Errorf("ReceivedSPF =\n%s\nwant\n%s", got, tc.want)
		}
	}
}
