package postfixtest

import (
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var enhanced = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}\b`)

// dialogue connects from the source address, sends each command, and
// returns the code (and enhanced code, if any) of the greeting and of each
// reply.
func dialogue(t *testing.T, addr, from string, cmds ...string) []string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewConn(c)
	var got []string
	read := func() {
		code, msg, err := tp.ReadResponse(0)
		if code == 0 {
			t.Fatalf("reading a reply: %v", err)
		}
		r := strconv.Itoa(code)
		if e := enhanced.FindString(msg); e != "" {
			r += " " + e
		}
		got = append(got, r)
	}
	read()
	for _, cmd := range cmds {
		if err := tp.PrintfLine("%s", cmd); err != nil {
			t.Fatal(err)
		}
		read()
	}
	return got
}

func TestStart(t *testing.T) {
	start := time.Now()
	p := Start(t, Options{
		Main:    "smtpd_helo_restrictions = check_helo_access hash:$config_directory/helo_access\n",
		Files:   map[string]string{"helo_access": "bad.example.net REJECT go away\n"},
		Postmap: []string{"helo_access"},
	})
	t.Logf("started in %v on %s", time.Since(start), p.Addr())
	if _, err := os.Stat(filepath.Join(p.Dir(), "helo_access.db")); err != nil {
		t.Errorf("postmap made no table: %v", err)
	}

	t0 := time.Now()
	got := dialogue(t, p.Addr(), "127.0.0.1",
		"EHLO client.example.net",
		"MAIL FROM:<a@example.net>",
		"RCPT TO:<b@example.com>", // relaying: mynetworks permits it
		"QUIT")
	t.Logf("a whole dialogue took %v", time.Since(t0))
	if want := []string{"220", "250", "250 2.1.0", "250 2.1.5", "221 2.0.0"}; !slices.Equal(got, want) {
		t.Errorf("client in mynetworks: got %q, want %q", got, want)
	}

	got = dialogue(t, p.Addr(), "127.0.0.66",
		"HELO bad.example.net",
		"MAIL FROM:<a@example.net>",
		"RCPT TO:<postmaster@example.org>", // the HELO table refuses, at RCPT
		"RCPT TO:<b@example.com>",
		"QUIT")
	if want := []string{"220", "250", "250 2.1.0", "554 5.7.1", "554 5.7.1", "221 2.0.0"}; !slices.Equal(got, want) {
		t.Errorf("stranger with a listed HELO name: got %q, want %q", got, want)
	}

	// Postfix's log daemon writes a moment after the event.
	log := p.Log()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log, "Helo command rejected: go away") && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		log = p.Log()
	}
	if log == "" {
		t.Fatal("empty maillog")
	}
	for _, want := range []string{"connect from unknown[127.0.0.66]", "Helo command rejected: go away"} {
		if !strings.Contains(log, want) {
			t.Errorf("maillog lacks %q:\n%s", want, log)
		}
	}
}

// TestTwoInstances checks that instances are independent: each answers
// on its own port with its own configuration. The second also shows what
// Postfix does with smtpd_delay_reject = no: the client restriction
// replaces the greeting, and every later command gets 503 5.7.0.
func TestTwoInstances(t *testing.T) {
	a := Start(t, Options{})
	b := Start(t, Options{Main: "smtpd_client_restrictions = reject\nsmtpd_delay_reject = no\n"})
	if a.Addr() == b.Addr() || a.Dir() == b.Dir() {
		t.Fatalf("shared address or directory: %s %s, %s %s", a.Addr(), a.Dir(), b.Addr(), b.Dir())
	}
	if got, want := dialogue(t, a.Addr(), "127.0.0.66", "NOOP"), []string{"220", "250 2.0.0"}; !slices.Equal(got, want) {
		t.Errorf("a: got %q, want %q", got, want)
	}
	if got, want := dialogue(t, b.Addr(), "127.0.0.66", "HELO x.example.net"), []string{"554 5.7.1", "503 5.7.0"}; !slices.Equal(got, want) {
		t.Errorf("b: got %q, want %q", got, want)
	}
}
