package smtpd

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// TestReadDataLongLines: lines of any length come out whole (no line is
// held whole in memory, only pieces of dataPiece bytes), with their dot
// unstuffed and the end of data found where it is, also when a CR LF or
// the dot of a "." line falls on a piece's edge.
func TestReadDataLongLines(t *testing.T) {
	huge := strings.Repeat("x", 5<<20)
	edge := strings.Repeat("e", dataPiece-1) // its CR is the piece's last byte
	for _, tc := range []struct {
		name, in, want string
		bare           byte
	}{
		{name: "5 MB line", in: huge + "\r\n.\r\n", want: huge + "\r\n"},
		{name: "dot-led long line", in: "." + huge + "\r\n.\r\n", want: huge + "\r\n"},
		{name: "two dots, long", in: ".." + huge + "\r\n.\r\n", want: "." + huge + "\r\n"},
		{name: "CRLF on the edge", in: edge + "\r\n" + edge + "\r\n.\r\n", want: edge + "\r\n" + edge + "\r\n"},
		{name: "line of exactly a piece", in: edge + "e\r\n.\r\nNOOP\r\n", want: edge + "e\r\n"},
		{name: "dot line after a long line ends", in: huge + "\r\n.\r\nNOOP\r\n", want: huge + "\r\n"},
		{name: "a dot inside a long line is content", in: edge + "e.\r\n.\r\n", want: edge + "e.\r\n"},
		{name: "bare CR on the edge", in: edge + "\rx\r\n.\r\n", want: edge + "\r\nx\r\n", bare: '\r'},
		{name: "bare LF after a long line", in: huge + "\n.\r\n.\r\n", want: huge + "\r\n\r\n", bare: '\n'},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.in), ioBufSize)
			var got bytes.Buffer
			size, tooBig, bare, err := readData(br, &got, 1<<30, BareNewlineNormalize, nil)
			if err != nil || tooBig {
				t.Fatalf("readData: %v tooBig=%v", err, tooBig)
			}
			if got.String() != tc.want || bare != tc.bare {
				t.Errorf("readData = %.60q… (%d bytes) bare=%q, want %.60q… (%d bytes) bare=%q", got.String(), got.Len(), bare, tc.want, len(tc.want), tc.bare)
			}
			if size != int64(len(tc.want)) {
				t.Errorf("size = %d, want %d", size, len(tc.want))
			}
		})
	}
}

// TestReadDataLongLineTooBig: a line past message_size_limit is read to
// the end of data and dropped; the session stays in step.
func TestReadDataLongLineTooBig(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("short\r\n" + strings.Repeat("y", 3<<20) + "\r\n.\r\nNOOP\r\n"))
	var got bytes.Buffer
	_, tooBig, _, err := readData(br, &got, 1<<20, BareNewlineNormalize, nil)
	if err != nil || !tooBig {
		t.Fatalf("readData: %v tooBig=%v", err, tooBig)
	}
	if got.Len() > 1<<20 {
		t.Errorf("%d bytes kept, over the limit", got.Len())
	}
	if l, _ := br.ReadString('\n'); l != "NOOP\r\n" {
		t.Errorf("next command %q", l)
	}
}

// FuzzReadDataPieces: how a line is cut into pieces, and how the
// client's bytes arrive, change nothing: the content, the size, the bare
// line end, the end of data and what is left unread are those of
// reading each line whole (with smtpd_forbid_bare_newline = reject,
// content that is refused may differ: it is dropped).
func FuzzReadDataPieces(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\nX", "abcdefgh\r\n.\r\n", ".abcdefg\r\n..\r\n.\r\n", "abc\rdef\r\n.\r\n", "abcdefg\r", "abc\n.\nx\r\n.\r\n", "....\r\n.\r\n"} {
		f.Add(s, uint8(0), uint8(2))
		f.Add(s, uint8(2), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in string, m, p uint8) {
		mode := BareNewline(m % 3)
		piece := 3 + int(p%16)
		type result struct {
			content, rest string
			size          int64
			tooBig        bool
			bare          byte
			failed        bool
		}
		read := func(piece, bufSize int) result {
			br := bufio.NewReaderSize(strings.NewReader(in), bufSize)
			var got bytes.Buffer
			size, tooBig, bare, err := readDataPieces(br, &got, 1<<16, mode, nil, piece)
			var rest bytes.Buffer
			_, _ = rest.ReadFrom(br)
			return result{got.String(), rest.String(), size, tooBig, bare, err != nil}
		}
		whole := read(1<<20, 4096)
		for _, got := range []result{read(piece, 16), read(piece, 4096)} {
			if got.failed != whole.failed {
				t.Fatalf("pieces of %d: failed=%v, whole lines: %v", piece, got.failed, whole.failed)
			}
			if got.failed {
				continue
			}
			if mode == BareNewlineReject && whole.bare != 0 {
				// Refused: what was kept of the content (the start of
				// the line with the bare line end may be) is dropped
				// by the caller; the rest must agree.
				got.content, got.size, got.tooBig = whole.content, whole.size, whole.tooBig
			}
			if got != whole {
				t.Fatalf("pieces of %d: %+v\nwhole lines: %+v", piece, got, whole)
			}
		}
	})
}
