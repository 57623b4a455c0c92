package maillog

import (
	"bytes"
	"os"
	"strconv"
	"testing"
	"time"
)

func TestPrintf(t *testing.T) {
	var b bytes.Buffer
	l := New(&b, "mail", "")
	l.Now = func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC) }
	l.Printf("connect from %s", "unknown[192.0.2.1]")
	want := "Mar  4 05:06:07 mail postfix/smtpd[" + strconv.Itoa(os.Getpid()) + "]: connect from unknown[192.0.2.1]\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
	var nl *Log
	nl.Printf("nothing") // a nil log is off
}

func TestCommands(t *testing.T) {
	for _, tc := range []struct {
		cmds []string
		fail map[int]bool
		want string
	}{
		{[]string{"EHLO", "MAIL", "RCPT", "DATA", "QUIT"}, nil, "ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5"},
		{[]string{"EHLO", "MAIL", "RCPT", "QUIT"}, map[int]bool{2: true}, "ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4"},
		{[]string{"quit", "XYZZY", "helo"}, map[int]bool{1: true}, "helo=1 quit=1 unknown=0/1 commands=2/3"},
		{nil, nil, "commands=0"},
	} {
		var c Commands
		for i, v := range tc.cmds {
			c.Count(v, !tc.fail[i])
		}
		if got := c.String(); got != tc.want {
			t.Errorf("%v: got %q, want %q", tc.cmds, got, tc.want)
		}
	}
}

// TestCommandsQuit: Quit tells a session that ended with QUIT from one
// the server closed.
func TestCommandsQuit(t *testing.T) {
	if commandOrder[quitIndex] != "quit" {
		t.Fatalf("quitIndex %d is %q in commandOrder", quitIndex, commandOrder[quitIndex])
	}
	var c Commands
	c.Count("EHLO", true)
	c.Count("MAIL", false)
	if c.Quit() {
		t.Error("Quit before QUIT")
	}
	c.Count("quit", true)
	if !c.Quit() {
		t.Error("no Quit after QUIT")
	}
}
