package smtpd

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestReadData(t *testing.T) {
	for _, tc := range []struct {
		name, in, want, rest string
		mode                 BareNewline
		bare                 byte
	}{
		{name: "plain", in: "Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n", want: "Subject: x\r\n\r\nhello\r\n", rest: "QUIT\r\n"},
		{name: "empty", in: ".\r\n", want: ""},
		{name: "dot-stuffed", in: "..hidden\r\n...\r\n.\r\n", want: ".hidden\r\n..\r\n"},
		{name: "smuggle LF.LF", in: "a\n.\nMAIL FROM:<x>\r\n.\r\n", want: "a\r\n\r\nMAIL FROM:<x>\r\n", bare: '\n'},
		{name: "smuggle CRLF.LF", in: "a\r\n.\nMAIL FROM:<x>\r\n.\r\n", want: "a\r\n\r\nMAIL FROM:<x>\r\n", bare: '\n'},
		{name: "smuggle LF.CRLF", in: "a\n.\r\nMAIL FROM:<x>\r\n.\r\n", want: "a\r\n\r\nMAIL FROM:<x>\r\n", bare: '\n'},
		{name: "smuggle CR.CRLF", in: "a\r.\r\nMAIL FROM:<x>\r\n.\r\n", want: "a\r\n\r\nMAIL FROM:<x>\r\n", bare: '\r'},
		{name: "smuggle CR.CR", in: "a\r.\rMAIL FROM:<x>\r\n.\r\n", want: "a\r\n\r\nMAIL FROM:<x>\r\n", bare: '\r'},
		{name: "bare LF lines", in: "a\nb\r\n.\r\n", want: "a\r\nb\r\n", bare: '\n'},
		{name: "dot after bare LF is content", in: "a\n.\r\n.\r\n", want: "a\r\n\r\n", bare: '\n'},
		// reject: the whole content is read, to the real end, and dropped
		// from the first bare line end on.
		{name: "reject LF.LF", mode: BareNewlineReject, in: "a\r\nb\n.\nMAIL FROM:<x>\r\n.\r\nNOOP\r\n", want: "a\r\n", rest: "NOOP\r\n", bare: '\n'},
		{name: "reject LF.CRLF", mode: BareNewlineReject, in: "a\n.\r\nRSET\r\n.\r\nNOOP\r\n", want: "", rest: "NOOP\r\n", bare: '\n'},
		{name: "reject CR.CRLF", mode: BareNewlineReject, in: "a\r.\r\nRSET\r\n.\r\nNOOP\r\n", want: "", rest: "NOOP\r\n", bare: '\r'},
		{name: "reject clean", mode: BareNewlineReject, in: "a\r\n.\r\nNOOP\r\n", want: "a\r\n", rest: "NOOP\r\n"},
		// no: Postfix's old behaviour, a bare LF is a CRLF.
		{name: "no LF.LF ends", mode: BareNewlineNo, in: "a\n.\nNOOP\r\n", want: "a\r\n", rest: "NOOP\r\n", bare: '\n'},
		{name: "no CRLF.LF ends", mode: BareNewlineNo, in: "a\r\n.\nNOOP\r\n", want: "a\r\n", rest: "NOOP\r\n"},
		{name: "no LF.CRLF ends", mode: BareNewlineNo, in: "a\n.\r\nNOOP\r\n", want: "a\r\n", rest: "NOOP\r\n", bare: '\n'},
		{name: "no CR.CRLF does not end", mode: BareNewlineNo, in: "a\r.\r\nb\r\n.\r\n", want: "a\r\n\r\nb\r\n", bare: '\r'},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.in))
			var buf bytes.Buffer
			_, tooBig, bare, err := readData(br, &buf, 1<<20, tc.mode, nil)
			got := buf.String()
			if err != nil || tooBig {
				t.Fatalf("readData: %v tooBig=%v", err, tooBig)
			}
			if got != tc.want || bare != tc.bare {
				t.Errorf("readData = %q bare=%q, want %q bare=%q", got, bare, tc.want, tc.bare)
			}
			rest := make([]byte, 100)
			n, _ := br.Read(rest)
			if string(rest[:n]) != tc.rest {
				t.Errorf("left %q unread, want %q", rest[:n], tc.rest)
			}
		})
	}
}

func TestReadDataLimit(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("0123456789\r\n0123456789\r\n.\r\nNOOP\r\n"))
	var got bytes.Buffer
	_, tooBig, _, err := readData(br, &got, 15, BareNewlineNormalize, nil)
	if err != nil || !tooBig || got.String() != "0123456789\r\n" {
		t.Errorf("readData over limit = %q, %v, %v", got.String(), tooBig, err)
	}
	if l, _ := br.ReadString('\n'); l != "NOOP\r\n" {
		t.Errorf("after an over-size message the next command is %q", l)
	}
	if _, _, _, err := readData(bufio.NewReader(strings.NewReader("no end")), io.Discard, 100, BareNewlineNormalize, nil); err == nil {
		t.Error("unterminated content did not fail")
	}
}

// FuzzReadData checks that whatever the client sends, the content handed
// on never holds a line that the next hop could take as the end of data:
// after re-stuffing, a "." line is impossible, and every line ends in CRLF.
func FuzzReadData(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\n", "a\n.\nb\r\n.\r\n", "a\r.\r\nb\r\n.\r\n", "..x\r\n.\r\n", "\r\r\n\n.\r\n"} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
	}
	f.Fuzz(func(t *testing.T, in string, m uint8) {
		mode := BareNewline(m % 3)
		var got bytes.Buffer
		_, _, _, err := readData(bufio.NewReader(strings.NewReader(in)), &got, 1<<16, mode, nil)
		if err != nil {
			return
		}
		s := got.String()
		if s != "" && !strings.HasSuffix(s, "\r\n") {
			t.Fatalf("content %q does not end in CRLF", s)
		}
		for _, line := range strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n") {
			if strings.ContainsAny(line, "\r\n") {
				t.Fatalf("content line %q holds a bare CR or LF", line)
			}
		}
	})
}

// segments is a client connection that delivers its content in the
// given pieces, one per Read, and counts the reads; renewals counts the
// deadline renewals, and a read not preceded by one is an error.
type segments struct {
	t               *testing.T
	parts           []string
	reads, renewals int
}

func (s *segments) Read(p []byte) (int, error) {
	if s.renewals <= s.reads {
		s.t.Errorf("read %d from the connection without a renewed deadline", s.reads+1)
	}
	s.reads++
	if len(s.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.parts[0])
	s.parts[0] = s.parts[0][n:]
	if s.parts[0] == "" {
		s.parts = s.parts[1:]
	}
	return n, nil
}

// TestReadDataRenewsDeadline: the read deadline (smtpd_timeout) is
// renewed before every read from the connection, also where a line or
// its CR LF is split between two segments, and not for the lines read
// from the buffer.
func TestReadDataRenewsDeadline(t *testing.T) {
	conn := &segments{t: t, parts: []string{
		"Subject: x\r\n\r\none\r\ntwo\r\nthr", // three lines buffered, one split
		"ee\r",                                // CR at the end of the segment
		"\nfour\r\n.\r\n",
	}}
	var got bytes.Buffer
	_, _, _, err := readData(bufio.NewReaderSize(conn, 64), &got, 1<<20, BareNewlineNormalize, func() { conn.renewals++ })
	if err != nil {
		t.Fatal(err)
	}
	if want := "Subject: x\r\n\r\none\r\ntwo\r\nthree\r\nfour\r\n"; got.String() != want {
		t.Errorf("content %q, want %q", got.String(), want)
	}
	if conn.reads != 3 || conn.renewals != 3 {
		t.Errorf("%d reads and %d deadline renewals, want 3 and 3 (one per segment)", conn.reads, conn.renewals)
	}
}
