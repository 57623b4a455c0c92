package handoff

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"net/textproto"
	"strings"
	"testing"
)

// dotEncoded is what go-smtp's own writer (net/textproto's DotWriter)
// sends for content, its final ".CRLF" included.
func dotEncoded(content []byte) []byte {
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	w := textproto.NewWriter(bw).DotWriter()
	_, _ = w.Write(content)
	_ = w.Close()
	return b.Bytes()
}

// stuffed is what stuffer sends for content written in the pieces cut
// at cuts, with dot's Close ending it, as relayTx.Data does.
func stuffed(t testing.TB, content []byte, cuts []int, bufSize int) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	dot := textproto.NewWriter(bw).DotWriter()
	s := newStuffer(&out, dot, make([]byte, 0, bufSize))
	prev := 0
	for _, c := range append(cuts, len(content)) {
		if _, err := s.Write(content[prev:c]); err != nil {
			t.Fatal(err)
		}
		prev = c
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dot.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestStuffer: the content reaches the next hop as go-smtp's own writer
// sends it, whatever pieces it comes in and whatever the buffer's size:
// dots doubled at the start of lines, one final ".CRLF", no empty line
// added.
func TestStuffer(t *testing.T) {
	for _, content := range []string{
		"", "Subject: x\r\n\r\nbody\r\n", ".\r\n", "..\r\n.x\r\n", "a\r\n.\r\n.\r\n",
		"no end of line", "ends in CR\r", "x\r\n\r\n", "\r\n", ".leading\r\nmiddle.\r\n.trailing",
		"folded\r\n .not a dot line\r\n",
	} {
		want := dotEncoded([]byte(content))
		for cut := 0; cut <= len(content); cut++ {
			for cut2 := cut; cut2 <= len(content); cut2++ {
				for _, size := range []int{1, 3, 32 << 10} {
					if got := stuffed(t, []byte(content), []int{cut, cut2}, size); !bytes.Equal(got, want) {
						t.Fatalf("%q cut at %d and %d, buffer %d: sent %q, want %q", content, cut, cut2, size, got, want)
					}
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	var big strings.Builder
	for big.Len() < 1<<20 {
		if r.IntN(5) == 0 {
			big.WriteByte('.')
		}
		big.WriteString(strings.Repeat("x", r.IntN(100)))
		big.WriteString("\r\n")
	}
	content := []byte(big.String())
	var cuts []int
	for c := r.IntN(5000); c < len(content); c += 1 + r.IntN(40000) {
		cuts = append(cuts, c)
	}
	if got, want := stuffed(t, content, cuts, 32<<10), dotEncoded(content); !bytes.Equal(got, want) {
		t.Errorf("1 MiB in %d pieces: %d bytes sent, want %d as go-smtp's writer sends them", len(cuts)+1, len(got), len(want))
	}
}

// FuzzStuffer: for any content with CRLF line ends (what the edge hands
// off: every bare CR or LF made a CRLF) and any two cuts, stuffer sends
// what go-smtp's own writer sends.
func FuzzStuffer(f *testing.F) {
	for _, s := range []string{"Subject: x\r\n\r\n.body\r\n", "..\r\n", "a\r", "\r\n.\r\n"} {
		f.Add([]byte(s), uint16(1), uint16(3))
	}
	f.Fuzz(func(t *testing.T, content []byte, a, b uint16) {
		content = crlfOnly(content)
		c1 := int(a) % (len(content) + 1)
		c2 := c1 + int(b)%(len(content)-c1+1)
		if got, want := stuffed(t, content, []int{c1, c2}, 16), dotEncoded(content); !bytes.Equal(got, want) {
			t.Fatalf("%q cut at %d and %d: sent %q, want %q", content, c1, c2, got, want)
		}
	})
}

// crlfOnly makes every bare CR and bare LF of b a CRLF.
func crlfOnly(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case b[i] == '\r' || b[i] == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, b[i])
		}
	}
	return out
}
