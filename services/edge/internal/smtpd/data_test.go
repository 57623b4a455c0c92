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
		bareLF               bool
	}{
		{name: "plain", in: "Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n", want: "Subject: x\r\n\r\nhello\r\n", rest: "QUIT\r\n"},
		{name: "empty", in: ".\r\n", want: ""},
		{name: "dot-stuffed", in: "..hidden\r\n...\r\n.\r\n", want: ".hidden\r\n..\r\n"},
		{name: "smuggle LF.LF", in: "a\n.\nMAIL FROM:<x>\r\n.\r\n", want: "a\r\n\r\nMAIL FROM:<x>\r\n", bareLF: true},
		{name: "smuggle CRLF.LF", in: "a\r\n.\nMAIL FROM:<x>\r\n.\r\n", want: "a\r\n\r\nMAIL FROM:<x>\r\n", bareLF: true},
		{name: "smuggle LF.CRLF", in: "a\n.\r\nMAIL FROM:<x>\r\n.\r\n", want: "a\r\n\r\nMAIL FROM:<x>\r\n", bareLF: true},
		{name: "smuggle CR.CRLF", in: "a\r.\r\nMAIL FROM:<x>\r\n.\r\n", want: "a\r\n\r\nMAIL FROM:<x>\r\n", bareLF: true},
		{name: "smuggle CR.CR", in: "a\r.\rMAIL FROM:<x>\r\n.\r\n", want: "a\r\n\r\nMAIL FROM:<x>\r\n", bareLF: true},
		{name: "bare LF lines", in: "a\nb\r\n.\r\n", want: "a\r\nb\r\n", bareLF: true},
		{name: "dot after bare LF is content", in: "a\n.\r\n.\r\n", want: "a\r\n\r\n", bareLF: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.in))
			var buf bytes.Buffer
			_, tooBig, bareLF, err := readData(br, &buf, 1<<20, nil)
			got := buf.String()
			if err != nil || tooBig {
				t.Fatalf("readData: %v tooBig=%v", err, tooBig)
			}
			if string(got) != tc.want || bareLF != tc.bareLF {
				t.Errorf("readData = %q bareLF=%v, want %q bareLF=%v", got, bareLF, tc.want, tc.bareLF)
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
	_, tooBig, _, err := readData(br, &got, 15, nil)
	if err != nil || !tooBig || got.String() != "0123456789\r\n" {
		t.Errorf("readData over limit = %q, %v, %v", got.String(), tooBig, err)
	}
	if l, _ := br.ReadString('\n'); l != "NOOP\r\n" {
		t.Errorf("after an over-size message the next command is %q", l)
	}
	if _, _, _, err := readData(bufio.NewReader(strings.NewReader("no end")), io.Discard, 100, nil); err == nil {
		t.Error("unterminated content did not fail")
	}
}

// FuzzReadData checks that whatever the client sends, the content handed
// on never holds a line that the next hop could take as the end of data:
// after re-stuffing, a "." line is impossible, and every line ends in CRLF.
func FuzzReadData(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\n", "a\n.\nb\r\n.\r\n", "a\r.\r\nb\r\n.\r\n", "..x\r\n.\r\n", "\r\r\n\n.\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var got bytes.Buffer
		_, _, _, err := readData(bufio.NewReader(strings.NewReader(in)), &got, 1<<16, nil)
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
