package matchlist

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/services/policy/internal/table"
)

func TestDomains(t *testing.T) {
	for _, tc := range []struct {
		name     string
		patterns string
		parent   bool
		domain   string
		want     bool
	}{
		{"exact", "example.org, localhost", false, "example.org", true},
		{"second pattern", "example.org, localhost", false, "localhost", true},
		{"pattern case and dot", "Example.ORG.", false, "example.org", true},
		{"subdomain not matched", "example.org", false, "sub.example.org", false},
		{"subdomain with parent style", "example.org", true, "sub.example.org", true},
		{"dot pattern subdomain", ".example.org", false, "a.b.example.org", true},
		{"dot pattern not the domain", ".example.org", false, "example.org", false},
		{"suffix is not a subdomain", "example.org", true, "badexample.org", false},
		{"other domain", "example.org", true, "example.com", false},
		{"negation first wins", "!sub.example.org, example.org", true, "sub.example.org", false},
		{"negation elsewhere", "!sub.example.org, example.org", true, "x.example.org", true},
		{"empty list", "", true, "example.org", false},
		{"empty domain", "example.org", true, "", false},
		{"literal never matches a name", "example.org", true, "[192.0.2.1]", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDomains(maincf.SplitList(tc.patterns), tc.parent)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := d.Match(context.Background(), tc.domain); got != tc.want || err != nil {
				t.Errorf("%q.Match(%q) = %v, %v; want %v", tc.patterns, tc.domain, got, err, tc.want)
			}
		})
	}
}

func TestDomainsErrors(t *testing.T) {
	for _, p := range []string{"hash:/etc/postfix/relay", "/etc/postfix/domains", "!", "."} {
		t.Run(p, func(t *testing.T) {
			if _, err := ParseDomains([]string{p}, false); err == nil {
				t.Errorf("ParseDomains(%q): no error", p)
			}
		})
	}
}

func TestNetworks(t *testing.T) {
	const list = "127.0.0.0/8 [::1]/128 192.0.2.7 !10.1.2.3 10.0.0.0/8 [2001:db8::]/32 [fe80::1]"
	n, err := ParseNetworks(maincf.SplitList(list))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"128.0.0.1", false},
		{"::1", true},
		{"::2", false},
		{"192.0.2.7", true},
		{"192.0.2.8", false},
		{"10.1.2.3", false},
		{"10.1.2.4", true},
		{"2001:db8:1::5", true},
		{"2001:db9::5", false},
		{"fe80::1", true},
		{"::ffff:127.0.0.1", true},
		{"::ffff:10.1.2.3", false},
		{"", false},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			a, _ := netip.ParseAddr(tc.addr)
			if got := n.Match(a); got != tc.want {
				t.Errorf("Match(%s) = %v, want %v", tc.addr, got, tc.want)
			}
		})
	}
	if got, want := n.String(), "127.0.0.0/8 [::1]/128 192.0.2.7/32 !10.1.2.3/32 10.0.0.0/8 [2001:db8::]/32 [fe80::1]/128"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// Debian's default mynetworks holds an IPv4-mapped network.
func TestIPv4MappedNetwork(t *testing.T) {
	n, err := ParseNetworks([]string{"127.0.0.0/8", "[::ffff:127.0.0.0]/104", "[::1]/128"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{"127.0.0.9": true, "::ffff:127.0.0.9": true, "::ffff:10.0.0.1": false} {
		if got := n.Match(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Match(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestNetworksErrors(t *testing.T) {
	for _, tc := range []struct{ pattern, want string }{
		{"::1/128", "must be written in brackets"},
		{"2001:db8::1", "must be written in brackets"},
		{"cidr:/etc/postfix/networks", "lookup tables are not supported"},
		{"hash:mynets", "lookup tables are not supported"},
		{"/etc/postfix/networks", "file patterns are not supported"},
		{"10.0.0.1/8", "perhaps you meant 10.0.0.0/8"},
		{"[2001:db8::1]/32", "perhaps you meant [2001:db8::]/32"},
		{"10.0.0.0/33", "bad mask length"},
		{"10.0.0.0/-1", "bad mask length"},
		{"10.0.0.0/", "bad mask length"},
		{"[10.0.0.1]", "without brackets"},
		{"mail.example.org", "host names are not supported"},
		{"[]", "want an IPv4"},
		{"[::ffff:127.0.0.0]/64", "at least 96 bits"},
		{"[::ffff:127.0.0.1]/104", "perhaps you meant 127.0.0.0/8"},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			_, err := ParseNetworks([]string{tc.pattern})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseNetworks(%q) error = %v, want one containing %q", tc.pattern, err, tc.want)
			}
		})
	}
}

func FuzzParseNetworks(f *testing.F) {
	for _, s := range []string{"127.0.0.0/8 [::1]/128", "!10.0.0.0/8", "[fe80::1%eth0]", "::1", "10.0.0.1/8", "cidr:/x", "[::ffff:1.2.3.4]/120", "1.2.3.4/+8"} {
		f.Add(s, "127.0.0.1")
	}
	f.Fuzz(func(t *testing.T, list, addr string) {
		n, err := ParseNetworks(maincf.SplitList(list))
		if err != nil {
			return
		}
		a, err := netip.ParseAddr(addr)
		if err != nil {
			a = netip.Addr{}
		}
		got := n.Match(a)
		// The list written back must parse to the same matcher.
		again, err := ParseNetworks(maincf.SplitList(n.String()))
		if err != nil {
			t.Fatalf("ParseNetworks(%q) (from %q): %v", n.String(), list, err)
		}
		if again.Match(a) != got {
			t.Fatalf("round trip of %q changed Match(%s)", list, addr)
		}
	})
}

func FuzzParseDomains(f *testing.F) {
	for _, s := range []string{"example.org, .example.com", "!a.example, example", "hash:/x", "EXAMPLE.org."} {
		f.Add(s, "sub.example.org", true)
	}
	f.Fuzz(func(t *testing.T, list, domain string, parent bool) {
		d, err := ParseDomains(maincf.SplitList(list), parent)
		if err != nil {
			return
		}
		_, _ = d.Match(context.Background(), domain)
	})
}

// A table in a domain list matches the domains it has, then parents as
// match_hostname() does; a table that fails fails the match.
func TestDomainsTable(t *testing.T) {
	dir := t.TempDir()
	cf := filepath.Join(dir, "down.cf")
	if err := os.WriteFile(cf, []byte("dbpath = "+filepath.Join(dir, "none.sqlite")+"\nquery = SELECT 1 WHERE '%s' = 'x'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	open := func(spec string) (table.Table, error) { return table.Open(spec, table.Options{}) }
	plain, err := ParseDomainsWith([]string{"!inline:{bad.example.com=x}", "inline:{example.com=x, .sub.example.org=x}"}, false, open)
	if err != nil {
		t.Fatal(err)
	}
	parent, err := ParseDomainsWith([]string{"inline:{example.org=x}"}, true, open)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		d      *Domains
		domain string
		want   bool
	}{
		{plain, "example.com", true},
		{plain, "bad.example.com", false}, // negated
		{plain, "other.example.com", false},
		{plain, "a.sub.example.org", true}, // ".sub.example.org" is a parent key
		{parent, "example.org", true},
		{parent, "a.b.example.org", true},
		{parent, "example.net", false},
	} {
		if got, err := c.d.Match(ctx, c.domain); got != c.want || err != nil {
			t.Errorf("Match(%q) = %v, %v; want %v", c.domain, got, err, c.want)
		}
	}
	down, err := ParseDomainsWith([]string{"example.net", "sqlite:" + cf}, false, open)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := down.Match(ctx, "example.net"); !ok || err != nil {
		t.Errorf("a name before the table: %v, %v", ok, err)
	}
	if ok, err := down.Match(ctx, "example.com"); ok || !errors.Is(err, table.ErrLookup) {
		t.Errorf("a failing table: %v, %v; want an ErrLookup", ok, err)
	}
	if _, err := ParseDomains([]string{"inline:{a=b}"}, false); err == nil {
		t.Error("ParseDomains without tables accepted one")
	}
}
