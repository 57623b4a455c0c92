package resolver

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCanonical(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	max253 := strings.Repeat(long63+".", 3) + strings.Repeat("b", 61) // 3*64 + 61 = 253
	tests := []struct {
		in, want string
	}{
		{"example.org", "example.org."},
		{"Example.ORG.", "example.org."},
		{"_dmarc.example.org", "_dmarc.example.org."},
		{"2.0.0.127.zen.example", "2.0.0.127.zen.example."},
		{"xn--bcher-kva.example", "xn--bcher-kva.example."},
		{"localhost", "localhost."},
		{long63 + ".example", long63 + ".example."},
		{max253, max253 + "."},
		{max253 + ".", max253 + "."},
		{"", ""},
		{".", ""},
		{"example..org", ""},
		{".example.org", ""},
		{"example.org..", ""},
		{long63 + "a.example", ""},
		{max253 + "b", ""},
		{"exa mple.org", ""},
		{"exa\\.mple.org", ""},
		{"exa\x00mple.org", ""},
		{"bücher.example", ""},
		{"[192.0.2.1]", ""},
		{"*.example.org", ""},
	}
	for _, tc := range tests {
		got, err := Canonical(tc.in)
		if tc.want == "" {
			if !errors.Is(err, ErrInvalidName) {
				t.Errorf("Canonical(%q) = %q, %v; want ErrInvalidName", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestReverseName(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":        "1.2.0.192.in-addr.arpa.",
		"::ffff:192.0.2.1": "1.2.0.192.in-addr.arpa.",
		"10.20.30.255":     "255.30.20.10.in-addr.arpa.",
		"2001:db8::1":      "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
		"fe80::abcd%eth0":  "d.c.b.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.ip6.arpa.",
	} {
		got, err := ReverseName(netip.MustParseAddr(in))
		if err != nil || got != want {
			t.Errorf("ReverseName(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ReverseName(netip.Addr{}); !errors.Is(err, ErrInvalidName) {
		t.Errorf("ReverseName(invalid) = %v, want ErrInvalidName", err)
	}
}

func TestUnescapeTXT(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:            "plain",
		`say \"hi\"`:       `say "hi"`,
		`back\\slash`:      `back\slash`,
		`\255\000end`:      "\xff\x00end",
		`\256`:             "256",
		`trailing\`:        `trailing\`,
		`\1`:               "1",
		`v=spf1 -all\059x`: "v=spf1 -all;x",
	} {
		if got := unescapeTXT(in); got != want {
			t.Errorf("unescapeTXT(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLRU(t *testing.T) {
	now := time.Unix(1e9, 0)
	c := newLRU(2)
	e := func(ttl time.Duration) *entry {
		return &entry{kind: positive, records: []string{"x"}, expires: now.Add(ttl)}
	}
	a, b, d := key{"a.", 1}, key{"b.", 1}, key{"d.", 1}
	c.put(a, e(time.Minute))
	c.put(b, e(time.Second))
	if _, ok := c.get(a, now); !ok { // a is now the most recent
		t.Fatal("a missing")
	}
	c.put(d, e(time.Minute)) // drops b
	if _, ok := c.get(b, now); ok {
		t.Error("b kept beyond the size")
	}
	if _, ok := c.get(a, now.Add(time.Minute)); ok {
		t.Error("a returned at its expiry")
	}
	if n := c.len(); n != 1 {
		t.Errorf("len = %d, want 1 (expired a dropped)", n)
	}
}

func TestEncoding(t *testing.T) {
	exp := time.UnixMilli(1_800_000_000_123)
	for _, e := range []*entry{
		{kind: positive, rcode: 0, final: "a.example.test.", records: []string{"192.0.2.1", "192.0.2.2"}, expires: exp},
		{kind: positive, final: "txt.example.test.", records: []string{"", "\x00\xff" + strings.Repeat("x", 300)}, expires: exp},
		{kind: notFound, rcode: 3, final: "nx.example.test.", expires: exp},
		{kind: noData, final: "a.example.test.", expires: exp},
	} {
		got, err := decodeEntry(encodeEntry(e))
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", e, err)
		}
		if !got.equal(e) {
			t.Errorf("round trip: got %+v, want %+v", got, e)
		}
	}
	good := encodeEntry(&entry{kind: positive, final: "a.", records: []string{"x"}, expires: exp})
	for name, b := range map[string][]byte{
		"empty":     nil,
		"version":   append([]byte{2}, good[1:]...),
		"temporary": append([]byte{1, byte(temporary)}, good[2:]...),
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte(nil), good...), 0),
		"no record": encodeEntry(&entry{kind: positive, final: "a.", expires: exp}),
		"records":   encodeEntry(&entry{kind: noData, final: "a.", records: []string{"x"}, expires: exp}),
		"huge count": append(append([]byte{1, byte(positive), 0, 1, 0},
			0xff, 0xff, 0xff, 0xff, 0x0f), "x"...),
	} {
		if e, err := decodeEntry(b); err == nil {
			t.Errorf("%s: decoded %+v", name, e)
		}
	}
}

func TestParseResolvConf(t *testing.T) {
	rc, err := ParseResolvConf(strings.NewReader(`# comment
domain example.org
search example.org example.net
nameserver 192.0.2.53 # trailing comment
nameserver   2001:db8::53
nameserver fe80::1%eth0
nameserver 192.0.2.54
nameserver not-an-address
options ndots:2 timeout:3 attempts:9 rotate
options edns0
; other comment
`))
	if err != nil {
		t.Fatal(err)
	}
	want := &ResolvConf{
		Servers: []netip.AddrPort{
			netip.MustParseAddrPort("192.0.2.53:53"),
			netip.MustParseAddrPort("[2001:db8::53]:53"),
			netip.MustParseAddrPort("[fe80::1%eth0]:53"),
		},
		Timeout:  3 * time.Second,
		Attempts: 5, // glibc's limit
	}
	if diff := cmp.Diff(want, rc, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	rc, err = ParseResolvConf(strings.NewReader("search example.org\noptions timeout:0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.Servers) != 1 || rc.Servers[0].String() != "127.0.0.1:53" || rc.Timeout != time.Second {
		t.Errorf("no nameserver: %+v, want 127.0.0.1:53 and timeout 1s", rc)
	}
}
