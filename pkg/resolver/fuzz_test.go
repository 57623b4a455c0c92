package resolver

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzCanonical: names come from SMTP clients. Canonical never panics,
// and what it accepts is a valid, lower-case FQDN that it accepts again
// unchanged.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"example.org", "Example.ORG.", "", ".", "a..b", "_spf.example.org", strings.Repeat("a.", 127)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Canonical(s)
		if err != nil {
			if c != "" {
				t.Fatalf("Canonical(%q) = %q with error %v", s, c, err)
			}
			return
		}
		if len(c) > maxNameLen+1 || !strings.HasSuffix(c, ".") || c != strings.ToLower(c) {
			t.Fatalf("Canonical(%q) = %q", s, c)
		}
		for _, l := range strings.Split(strings.TrimSuffix(c, "."), ".") {
			if l == "" || len(l) > maxLabelLen {
				t.Fatalf("Canonical(%q) = %q: label %q", s, c, l)
			}
		}
		if again, err := Canonical(c); err != nil || again != c {
			t.Fatalf("Canonical(%q) = %q, %v", c, again, err)
		}
	})
}

// FuzzReverseName: every address gives a valid name of the right shape.
func FuzzReverseName(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "::ffff:10.0.0.1", "2001:db8::1", "::", "fe80::1%eth0"} {
		a := netip.MustParseAddr(s).WithZone("")
		b, _ := a.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var a netip.Addr
		if a.UnmarshalBinary(b) != nil {
			return
		}
		name, err := ReverseName(a)
		if !a.IsValid() {
			if err == nil {
				t.Fatalf("ReverseName(invalid) = %q", name)
			}
			return
		}
		if err != nil {
			t.Fatalf("ReverseName(%v): %v", a, err)
		}
		c, err := Canonical(name)
		if err != nil || c != name {
			t.Fatalf("ReverseName(%v) = %q, not canonical: %v", a, name, err)
		}
		labels := strings.Count(name, ".")
		switch {
		case a.Unmap().Is4() && (labels != 6 || !strings.HasSuffix(name, ".in-addr.arpa.")):
			t.Fatalf("ReverseName(%v) = %q", a, name)
		case !a.Unmap().Is4() && (labels != 34 || !strings.HasSuffix(name, ".ip6.arpa.")):
			t.Fatalf("ReverseName(%v) = %q", a, name)
		}
	})
}

// FuzzDecodeEntry: Redis entries may be garbage. Decoding never panics,
// and what decodes encodes back to the same bytes.
func FuzzDecodeEntry(f *testing.F) {
	exp := time.UnixMilli(1_800_000_000_000)
	for _, e := range []*entry{
		{kind: positive, final: "a.example.test.", records: []string{"192.0.2.1", "192.0.2.2"}, expires: exp},
		{kind: notFound, rcode: 3, final: "nx.example.test.", expires: exp},
		{kind: noData, final: "a.example.test.", expires: exp},
	} {
		f.Add(encodeEntry(e))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		if again := encodeEntry(e); string(again) != string(b) {
			// Varints have one shortest form; longer ones decode too
			// but the entry must survive a second round trip.
			e2, err := decodeEntry(again)
			if err != nil || !e2.equal(e) {
				t.Fatalf("round trip of %x: %v", b, err)
			}
		}
	})
}

func TestNewReadsResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte("nameserver 192.0.2.53\nnameserver ::1\noptions timeout:4 attempts:3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{ResolvConf: path})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.servers, " "); got != "192.0.2.53:53 [::1]:53" || r.timeout != 4*time.Second || r.attempts != 3 {
		t.Errorf("servers %q timeout %v attempts %d", got, r.timeout, r.attempts)
	}
	r, err = New(Config{ResolvConf: path, Timeout: time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.timeout != time.Second || r.attempts != 1 {
		t.Errorf("Config did not override resolv.conf: timeout %v attempts %d", r.timeout, r.attempts)
	}
}
