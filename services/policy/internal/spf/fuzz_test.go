package spf

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The fuzz targets parse and expand arbitrary text; nothing may panic, and
// an evaluation always ends in one of the seven results within the
// limits. Seeds beyond the f.Add ones are in testdata/fuzz/<FuzzName>/.

// echoResolver answers every TXT query with the record under test, so
// include and redirect loop back into it, and every other query with a
// few fixed records.
type echoResolver struct {
	txt     string
	queries int
}

func (r *echoResolver) LookupTXT(context.Context, string) ([]string, error) {
	r.queries++
	return []string{r.txt}, nil
}

func (r *echoResolver) LookupA(_ context.Context, name string) ([]netip.Addr, error) {
	r.queries++
	if strings.HasPrefix(name, "void") {
		return nil, ErrNotFound
	}
	return []netip.Addr{netip.MustParseAddr("192.0.2.1")}, nil
}

func (r *echoResolver) LookupAAAA(context.Context, string) ([]netip.Addr, error) {
	r.queries++
	return nil, ErrNoData
}

func (r *echoResolver) LookupMX(context.Context, string) ([]MX, error) {
	r.queries++
	return []MX{{10, "mx.example.com"}, {20, "."}}, nil
}

func (r *echoResolver) LookupPTR(context.Context, netip.Addr) ([]string, error) {
	r.queries++
	return []string{"mx.example.com.", "other.example.org"}, nil
}

func FuzzParseRecord(f *testing.F) {
	f.Add("v=spf1 a mx ptr include:example.com -all")
	f.Add("v=spf1 a:%{d}/24//64 exists:%{ir}.%{l1r+-}.%{d2} ~all exp=%{d}")
	f.Add("v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 redirect=%{o}")
	f.Add("v=spf1 x-y.z=%{p}%%%_%- ?ptr:a.example.com +all")
	f.Fuzz(func(t *testing.T, txt string) {
		rec, err := parseRecord(txt)
		if err == nil && rec == nil {
			t.Fatal("nil record without error")
		}
		res := &echoResolver{txt: txt}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got := CheckHost(ctx, res, netip.MustParseAddr("192.0.2.1"), "example.com", "a-b+c@example.com", "h.example.com", "mx.example.net")
		switch got.Result {
		case None, Neutral, Pass, Fail, SoftFail, TempError, PermError:
		default:
			t.Fatalf("result %q", got.Result)
		}
		if isSPF(txt) && err != nil && got.Result != PermError {
			t.Fatalf("unparsable record %q gave %s", txt, got.Result)
		}
		// 11 TXT lookups at most, each term looking at ≤ 10 names
		// with ≤ 2 lookups each, plus the explanation.
		if res.queries > 11*(2+2*maxMXHosts)+2 {
			t.Fatalf("%d queries", res.queries)
		}
		_ = ReceivedSPF(Request{IP: netip.MustParseAddr("192.0.2.1"), HELO: txt}, got)
	})
}

func FuzzExpand(f *testing.F) {
	f.Add("%{ir}.%{v}._spf.%{d2}", "strong-bad@email.example.com", []byte{192, 0, 2, 3})
	f.Add("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "a@b", []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xcb, 0x01})
	f.Add("%{S}%{L}%{c} %{t} %{R2r.-+,/_=}", "@example.com", []byte{})
	f.Fuzz(func(t *testing.T, s, sender string, ip []byte) {
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			addr = netip.MustParseAddr("192.0.2.3")
		}
		local, domain := splitSender(sender)
		env := &macroEnv{sender: sender, local: local, senderDomain: domain, domain: domain, ip: addr.Unmap(),
			helo: sender, now: time.Unix(0, 0), ptr: func() string { return "unknown" }}
		for _, mode := range []macroMode{macroDomain, macroExp, macroAny} {
			toks, err := parseMacroString(s, mode)
			if err != nil {
				continue
			}
			_ = expand(toks, env)
			if mode == macroDomain {
				if d := expandDomain(toks, env); len(d) > 253 && strings.Contains(d, ".") {
					t.Fatalf("expandDomain left %d octets", len(d))
				}
				_, _ = parseDomainSpec(s)
			}
		}
	})
}
