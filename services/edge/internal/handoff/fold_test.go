package handoff

import (
	"bytes"
	"strings"
	"testing"
)

// postfixFold is Postfix's smtp_text_out loop for one logical line
// (one REC_TYPE_NORM record), restated byte for byte: the reference
// foldLines is held to.
func postfixFold(line string, limit int) string {
	var out strings.Builder
	spaceLeft := limit
	data := line
	for {
		if len(data) >= spaceLeft {
			out.WriteString(data[:spaceLeft])
			out.WriteString("\r\n")
			data = data[spaceLeft:]
			spaceLeft = limit
			if len(data) > 0 {
				out.WriteByte(' ')
				spaceLeft--
			}
			if len(data) == 0 {
				return out.String()
			}
			continue
		}
		out.WriteString(data)
		out.WriteString("\r\n")
		return out.String()
	}
}

func TestFoldLines(t *testing.T) {
	long := strings.Repeat("a", 998) + strings.Repeat("b", 997) + strings.Repeat("c", 10)
	for _, tc := range []struct {
		name  string
		in    string
		limit int
		want  string
	}{
		{"short lines untouched", "Subject: x\r\n\r\nbody\r\n", 998, "Subject: x\r\n\r\nbody\r\n"},
		{"exactly the limit", strings.Repeat("x", 998) + "\r\n", 998, strings.Repeat("x", 998) + "\r\n"},
		{"one over", strings.Repeat("x", 999) + "\r\n", 998, strings.Repeat("x", 998) + "\r\n x\r\n"},
		{"the space counts", long + "\r\n", 998, strings.Repeat("a", 998) + "\r\n " + strings.Repeat("b", 997) + "\r\n " + strings.Repeat("c", 10) + "\r\n"},
		{"a header line too", "X-Long: " + strings.Repeat("h", 20) + "\r\n\r\n", 10, "X-Long: hh\r\n hhhhhhhhh\r\n hhhhhhhhh\r\n\r\n"},
		{"a dot-led line is folded like any", "." + strings.Repeat("d", 12) + "\r\n", 10, "." + strings.Repeat("d", 9) + "\r\n ddd\r\n"},
		{"limit 1 acts as 2", "abc\r\n", 1, "ab\r\n c\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var whole bytes.Buffer
			f := &foldLines{w: &whole, limit: tc.limit}
			if n, err := f.Write([]byte(tc.in)); err != nil || n != len(tc.in) {
				t.Fatalf("Write = %d, %v", n, err)
			}
			if whole.String() != tc.want {
				t.Errorf("folded %q, want %q", whole.String(), tc.want)
			}
			// Written a byte at a time (a CR at the end of one Write,
			// its LF in the next), the result is the same.
			var bytewise bytes.Buffer
			f = &foldLines{w: &bytewise, limit: tc.limit}
			for i := range len(tc.in) {
				_, _ = f.Write([]byte{tc.in[i]})
			}
			if bytewise.String() != tc.want {
				t.Errorf("byte by byte: %q, want %q", bytewise.String(), tc.want)
			}
		})
	}
}

// TestFoldLinesAsPostfix: for lines of every length around the limit,
// foldLines breaks them as Postfix's smtp(8) does.
func TestFoldLinesAsPostfix(t *testing.T) {
	const limit = 20
	for n := 0; n <= 5*limit; n++ {
		line := strings.Repeat("x", n)
		var got bytes.Buffer
		f := &foldLines{w: &got, limit: limit}
		_, _ = f.Write([]byte(line + "\r\n"))
		if want := postfixFold(line, limit); got.String() != want {
			t.Errorf("line of %d bytes: %q, want %q", n, got.String(), want)
		}
	}
}

// FuzzFoldLines: however the content is cut into writes, the output is
// the same; with CRLF line ends only, no output line is longer than the
// limit, and removing each inserted "<CR><LF><SPACE>" gives the input
// back.
func FuzzFoldLines(f *testing.F) {
	for _, s := range []string{"a\r\n", strings.Repeat("x", 40) + "\r\n", "\r\n\r\n", "ab\r\ncd", "a\rb\r\n", " " + strings.Repeat("y", 25) + "\r\n."} {
		f.Add(s, uint8(10), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in string, l, cut uint8) {
		limit := 2 + int(l%40)
		var whole, split bytes.Buffer
		_, _ = (&foldLines{w: &whole, limit: limit}).Write([]byte(in))
		fs := &foldLines{w: &split, limit: limit}
		step := 1 + int(cut%7)
		for i := 0; i < len(in); i += step {
			_, _ = fs.Write([]byte(in[i:min(i+step, len(in))]))
		}
		if whole.String() != split.String() {
			t.Fatalf("in one write %q, in writes of %d %q", whole.String(), step, split.String())
		}
		if strings.ContainsAny(strings.ReplaceAll(in, "\r\n", ""), "\r\n") || !strings.HasSuffix(in, "\r\n") {
			return // bare line ends, or a last line without CRLF
		}
		out := whole.String()
		for _, line := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
			if len(line) > limit {
				t.Fatalf("line %q over %d bytes", line, limit)
			}
		}
		// Every inserted break is "\r\n " at a place where the input had
		// no line end; undo them from the input's point of view.
		var back strings.Builder
		o, i := out, in
		for len(i) > 0 {
			if strings.HasPrefix(o, "\r\n ") && !strings.HasPrefix(i, "\r\n") {
				o = o[3:]
				continue
			}
			if o == "" || o[0] != i[0] {
				t.Fatalf("output %q does not fold input %q", out, in)
			}
			back.WriteByte(i[0])
			o, i = o[1:], i[1:]
		}
		if o != "" {
			t.Fatalf("output %q has %q after the input %q", out, o, in)
		}
	})
}
