package smtpd

import (
	"errors"
	"net"
	"strings"
	"testing"
)

// TestWireReadLine: the connection layer reads a line without its line
// end, says when it ended in a bare LF, and consumes a line past the
// limit to its end, reporting errLineTooLong, and the next line is read
// whole after it.
func TestWireReadLine(t *testing.T) {
	long := strings.Repeat("x", 3*ioBufSize)
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		_, _ = client.Write([]byte("EHLO a\r\nNOOP\n" + long + "\r\nQUIT\r\n"))
	}()
	var w wireConn
	w.init(server, &bufPools{})
	defer w.close()
	for _, want := range []struct {
		line   string
		bareLF bool
		err    error
	}{
		{"EHLO a", false, nil},
		{"NOOP", true, nil},
		{"", false, errLineTooLong},
		{"QUIT", false, nil},
	} {
		line, bareLF, err := w.readLine(2048)
		if line != want.line || bareLF != want.bareLF || !errors.Is(err, want.err) {
			t.Errorf("readLine = %q, %v, %v; want %q, %v, %v", line, bareLF, err, want.line, want.bareLF, want.err)
		}
	}
}
