package xclient

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want *Command
	}{
		{"NAME=mx.example.com ADDR=192.0.2.1", &Command{Name: Name{true, "mx.example.com", NameOK}, Addr: Value{true, "192.0.2.1"}}},
		{"name=[UNAVAILABLE] addr=IPV6:2001:DB8::1", &Command{Name: Name{true, "unknown", NamePermFail}, Addr: Value{true, "2001:db8::1"}}},
		{"NAME=[TEMPUNAVAIL] REVERSE_NAME=r.example", &Command{Name: Name{true, "unknown", NameTempFail}, ReverseName: Name{true, "r.example", NameOK}}},
		{"ADDR=[UNAVAILABLE] PORT=[UNAVAILABLE]", &Command{Addr: Value{true, "unknown"}, Port: Value{true, "0"}}},
		{"ADDR=ipv6:::ffff:192.0.2.1 PORT=4711", &Command{Addr: Value{true, "192.0.2.1"}, Port: Value{true, "4711"}}},
		{"PROTO=esmtp HELO=client+20name", &Command{Proto: Value{true, "ESMTP"}, HELO: Value{true, "client?name"}}},
		{"HELO=[UNAVAILABLE] LOGIN=[UNAVAILABLE]", &Command{HELO: Value{true, ""}, Login: Value{true, ""}}},
		{"LOGIN=lisa+40example.org", &Command{Login: Value{true, "lisa@example.org"}}},
		{"DESTADDR=IPV6:2001:db8::25 DESTPORT=587", &Command{DestAddr: Value{true, "2001:db8::25"}, DestPort: Value{true, "587"}}},
		// Not xtext (a bare "+"): taken as it is, as Postfix does.
		{"LOGIN=a+b", &Command{Login: Value{true, "a+b"}}},
		// Decoded control characters are masked.
		{"LOGIN=a+0Ab", &Command{Login: Value{true, "a?b"}}},
		{"ADDR=192.0.2.1 ADDR=192.0.2.2", &Command{Addr: Value{true, "192.0.2.2"}}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	long := make([]byte, 256)
	for i := range long {
		long[i] = 'a'
	}
	for _, tc := range []struct {
		in   string
		want Error
	}{
		{"", Error{Kind: NoAttributes}},
		{"   ", Error{Kind: NoAttributes}},
		{"NAME", Error{Kind: NotAttribute}},
		{"NAME=", Error{Kind: NotAttribute}},
		{"NAME=" + string(long), Error{Kind: TooLong}},
		{"Frob=1", Error{Kind: BadName, Attr: "Frob"}},
		{"ADDR=2001:db8::1", Error{Kind: BadValue, Attr: "ADDR", Value: "2001:db8::1"}},
		{"ADDR=IPV6:192.0.2.1", Error{Kind: BadValue, Attr: "ADDR", Value: "IPV6:192.0.2.1"}},
		{"ADDR=IPV6:fe80::1%eth0", Error{Kind: BadValue, Attr: "ADDR", Value: "IPV6:fe80::1%eth0"}},
		{"ADDR=[192.0.2.1]", Error{Kind: BadValue, Attr: "ADDR", Value: "[192.0.2.1]"}},
		{"port=123456", Error{Kind: BadValue, Attr: "PORT", Value: "123456"}},
		{"PORT=12a", Error{Kind: BadValue, Attr: "PORT", Value: "12a"}},
		{"PROTO=[UNAVAILABLE]", Error{Kind: BadValue, Attr: "PROTO", Value: "[UNAVAILABLE]"}},
		{"NAME=192.0.2.1", Error{Kind: BadValue, Attr: "NAME", Value: "192.0.2.1"}},
		{"NAME=a..b", Error{Kind: BadValue, Attr: "NAME", Value: "a..b"}},
		{"NAME=a+20b", Error{Kind: BadValue, Attr: "NAME", Value: "a b"}},
		{"DESTPORT=", Error{Kind: NotAttribute}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := Parse(tc.in)
			var xe *Error
			if !errors.As(err, &xe) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if diff := cmp.Diff(tc.want, *xe); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestXtext(t *testing.T) {
	for _, s := range []string{"", "plain", "a+b=c d", "\x00\xff", "lisa@example.org"} {
		enc := EncodeXtext(s)
		dec, err := DecodeXtext(enc)
		if err != nil || dec != s {
			t.Errorf("DecodeXtext(EncodeXtext(%q)) = %q, %v", s, dec, err)
		}
	}
	for _, bad := range []string{"+", "+4", "+GG", "a b", "a=b"} {
		if _, err := DecodeXtext(bad); err == nil {
			t.Errorf("DecodeXtext(%q) accepted", bad)
		}
	}
}

// FuzzParse: Parse never panics, and what it accepts is safe to log and
// to put in a Received header (no control characters; addresses parse).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"NAME=mx.example.com ADDR=192.0.2.1 PORT=25",
		"ADDR=IPV6:2001:db8::1 PROTO=ESMTP HELO=x LOGIN=a+2Bb",
		"NAME=[TEMPUNAVAIL] ADDR=[UNAVAILABLE] HELO=[UNAVAILABLE]",
		"DESTADDR=192.0.2.25 DESTPORT=587 REVERSE_NAME=r.example",
		"FOO=bar", "ADDR", "LOGIN=+0D+0A",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Parse(in)
		if err != nil {
			var xe *Error
			if !errors.As(err, &xe) {
				t.Fatalf("error %v is not an *Error", err)
			}
			return
		}
		for _, v := range []string{c.Name.Value, c.ReverseName.Value, c.Addr.Value, c.Port.Value, c.Proto.Value, c.HELO.Value, c.Login.Value, c.DestAddr.Value, c.DestPort.Value} {
			for i := 0; i < len(v); i++ {
				if v[i] < 0x20 || v[i] == 0x7f {
					t.Fatalf("control character in %q", v)
				}
			}
		}
		if c.Addr.Set && c.Addr.Value != Unknown {
			if _, ok := parseAddr(c.Addr.Value); !ok && !validIPv6(c.Addr.Value) {
				t.Fatalf("ADDR %q is not an address", c.Addr.Value)
			}
		}
	})
}

func validIPv6(s string) bool { _, ok := parseAddr("IPV6:" + s); return ok }
