package mailname

import (
	"strconv"
	"testing"
)

func TestDecodeXtext(t *testing.T) {
	for _, c := range []struct {
		in     string
		equals bool
		want   string
		ok     bool
	}{
		{"", false, "", true},
		{"plain", false, "plain", true},
		{"a+2Bb", false, "a+b", true},
		{"a+2bb", false, "a+b", true},
		{"+3D", false, "=", true},
		{"+00+FF", false, "\x00\xff", true},
		{"a=b", false, "", false},
		{"a=b", true, "a=b", true},
		{"a+2", false, "", false},
		{"a+", false, "", false},
		{"+G0", false, "", false},
		{"++20", false, "", false},
		{"a b", false, "", false},
		{"a\x7f", false, "", false},
		{"\xc3\xa9", false, "", false},
	} {
		got, ok := DecodeXtext(c.in, c.equals)
		if got != c.want || ok != c.ok {
			t.Errorf("DecodeXtext(%q, %v) = %q, %v, want %q, %v", c.in, c.equals, got, ok, c.want, c.ok)
		}
	}
}

// xtextByParse is DecodeXtext written with strconv, for FuzzXtext.
func xtextByParse(s string, equals bool) (string, bool) {
	var out []byte
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			if i+2 >= len(s) {
				return "", false
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", false
			}
			out = append(out, byte(n))
			i += 2
		case c < '!' || c > '~' || (c == '=' && !equals):
			return "", false
		default:
			out = append(out, c)
		}
	}
	return string(out), true
}

func FuzzXtext(f *testing.F) {
	for _, s := range []string{"a+2Bb", "+3d", "a=b", "+", "+2", "+-1", "+ 1", "x+7E+7e"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, equals bool) {
		got, ok := DecodeXtext(s, equals)
		want, wantOK := xtextByParse(s, equals)
		if got != want || ok != wantOK {
			t.Errorf("DecodeXtext(%q, %v) = %q, %v; by strconv %q, %v", s, equals, got, ok, want, wantOK)
		}
	})
}
