package dovecotwire

import (
	"bufio"
	"errors"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/services/auth/internal/sasl"
)

func TestEscape(t *testing.T) {
	for _, s := range []string{"plain", "a\tb", "x\x01y\x00z\r\n"} {
		e := Escape(s)
		if strings.ContainsAny(e, "\t\r\n\x00") {
			t.Errorf("Escape(%q) = %q still holds a separator", s, e)
		}
		got, ok := Unescape(e)
		if !ok || got != s {
			t.Errorf("round trip of %q = %q, %v", s, got, ok)
		}
	}
	for _, bad := range []string{"bad\x01x", "end\x01"} {
		if _, ok := Unescape(bad); ok {
			t.Errorf("bad escape %q accepted", bad)
		}
	}
}

func TestReadLine(t *testing.T) {
	br := bufio.NewReaderSize(strings.NewReader("a\tb\r\nc\n"+strings.Repeat("x", MaxLine+1)+"\n"), 16)
	for _, want := range []string{"a\tb", "c"} {
		if got, err := ReadLine(br); err != nil || got != want {
			t.Fatalf("ReadLine = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := ReadLine(br); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("a line of MaxLine+1 bytes: err %v, want ErrLineTooLong", err)
	}
}

func TestFlags(t *testing.T) {
	f, private := ParseFlags([]string{"plaintext", "DICTIONARY", "unknown", "private"})
	if f != sasl.Plaintext|sasl.Dictionary || !private {
		t.Fatalf("ParseFlags = %v, %v", f, private)
	}
	if got := FormatFlags(sasl.Plaintext | sasl.MutualAuth); got != "\tplaintext\tmutual-auth" {
		t.Fatalf("FormatFlags = %q", got)
	}
	back, _ := ParseFlags(strings.Split(FormatFlags(sasl.Anonymous|sasl.Active|sasl.ForwardSecrecy), "\t")[1:])
	if back != sasl.Anonymous|sasl.Active|sasl.ForwardSecrecy {
		t.Fatalf("flags round trip = %v", back)
	}
}

// FuzzUnescape: whatever Unescape accepts, Escape gives back a field
// that unescapes to the same value and holds no separator.
func FuzzUnescape(f *testing.F) {
	f.Add("a\x01tb\x010\x011")
	f.Add("\x01")
	f.Fuzz(func(t *testing.T, in string) {
		v, ok := Unescape(in)
		if !ok {
			return
		}
		e := Escape(v)
		if strings.ContainsAny(e, "\t\r\n\x00") {
			t.Fatalf("Escape(%q) = %q", v, e)
		}
		if back, ok := Unescape(e); !ok || back != v {
			t.Fatalf("round trip of %q = %q, %v", v, back, ok)
		}
	})
}
