package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// smuggleVariants are the known SMTP-smuggling end-of-data look-alikes,
// with the bare line end smtpd_forbid_bare_newline = reject names for
// each.
var smuggleVariants = []struct{ name, sep, bare string }{
	{"LF.LF", "\n.\n", "LF"},
	{"CRLF.LF", "\r\n.\n", "LF"},
	{"LF.CRLF", "\n.\r\n", "LF"},
	{"CR.CRLF", "\r.\r\n", "CR"},
	{"CRLF.CR", "\r\n.\r", "CR"},
	{"LF.CR", "\n.\r", "LF"},
	{"CR.CR", "\r.\r", "CR"},
	{"CR.LF", "\r.\n", "CR"},
	{"LF..LF", "\n..\n", "LF"},
}

// rawSmuggle writes, on a raw socket from the address from to the MX
// listener, a whole session in one write: a message to john whose content
// holds a second transaction (to john as well, from evil@example.net)
// behind sep, then QUIT. It returns the replies after the greeting.
func rawSmuggle(t *testing.T, s *stack, from, sep, token string) []string {
	t.Helper()
	r, err := s.dialListener(from, "mx", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	readReply := func() string {
		last, err := r.last()
		if err != nil {
			return "read error: " + err.Error()
		}
		return last
	}
	if g := readReply(); !strings.HasPrefix(g, "220 ") {
		t.Fatalf("greeting %q", g)
	}
	var replies []string
	for _, cmd := range []string{"EHLO client.example.net", "MAIL FROM:<someone@example.net>", "RCPT TO:<john@example.org>", "DATA"} {
		fmt.Fprintf(r.conn, "%s\r\n", cmd)
		replies = append(replies, readReply())
	}
	fmt.Fprintf(r.conn, "Subject: %s\r\n\r\nfirst%sMAIL FROM:<evil@example.net>\r\nRCPT TO:<john@example.org>\r\nDATA\r\nSubject: %s-smuggled\r\n\r\nsecond\r\n.\r\nQUIT\r\n", token, sep, token)
	for {
		got := readReply()
		replies = append(replies, got)
		if strings.HasPrefix(got, "221 ") || strings.HasPrefix(got, "read error: ") {
			return replies
		}
	}
}

// maildirFiles returns the contents of the Maildir's new/ files.
func (s *stack) maildirFiles() []string {
	s.t.Helper()
	entries, _ := os.ReadDir(filepath.Join(s.maildir, "new"))
	var out []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(s.maildir, "new", e.Name()))
		if err != nil {
			s.t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// TestSmugglingEndToEnd sends every known smuggling variant through the
// real stack from a stranger (not in smtpd_forbid_bare_newline_exclusions
// = $mynetworks), on a raw socket, in one write with the QUIT after it.
// With the default smtpd_forbid_bare_newline = normalize exactly one
// message per variant reaches the next hop, the smuggled transaction
// inside its body and no bare CR left in it; with reject none does and
// the client gets Postfix's 550. A client in mynetworks is excluded, and
// gets Postfix's old behaviour (the "<LF>.<LF>" ends the message, and the
// second transaction is a real one).
func TestSmugglingEndToEnd(t *testing.T) {
	t.Run("normalize", func(t *testing.T) {
		s := newStack(t, "")
		for i, v := range smuggleVariants {
			token := newToken("smuggle-normalize")
			replies := rawSmuggle(t, s, Stranger, v.sep, token)
			if len(replies) != 6 || !strings.HasPrefix(replies[4], "250 2.0.0 Ok: queued as ") || !strings.HasPrefix(replies[5], "221 ") {
				t.Errorf("%s: replies %q, want one queued message and the QUIT's 221", v.name, replies)
			}
			files := s.maildirFiles()
			if len(files) != i+1 {
				t.Fatalf("%s: %d messages in the Maildir after %d sessions, want exactly one per session", v.name, len(files), i+1)
			}
			file := s.maildirFile(token)
			if !strings.Contains(file, "\nMAIL FROM:<evil@example.net>\nRCPT TO:<john@example.org>\nDATA\nSubject: "+token+"-smuggled\n") {
				t.Errorf("%s: the smuggled transaction is not in the message's body: %q", v.name, file)
			}
			if strings.ContainsRune(file, '\r') {
				t.Errorf("%s: the message holds a bare CR: %q", v.name, file)
			}
		}
	})
	t.Run("reject", func(t *testing.T) {
		s := newStack(t, "smtpd_forbid_bare_newline = reject\n")
		for _, v := range smuggleVariants {
			replies := rawSmuggle(t, s, Stranger, v.sep, newToken("smuggle-reject"))
			want := "550 5.5.2 mail.example.org Error: bare <" + v.bare + "> received"
			if len(replies) != 6 || replies[4] != want || !strings.HasPrefix(replies[5], "221 ") {
				t.Errorf("%s: replies %q, want %q and the QUIT's 221", v.name, replies, want)
			}
		}
		if files := s.maildirFiles(); len(files) != 0 {
			t.Errorf("%d messages reached the next hop, want none: %q", len(files), files)
		}
		if !strings.Contains(s.log("edge"), "bare <LF> received") {
			t.Error("the edge did not log the refusal")
		}
		// A command line ending in a bare LF ends the session.
		g := connectFrom(t, Trusted, fmt.Sprintf("127.0.0.1:%d", s.port["mx"]))
		defer g.conn.Close()
		conn, br := g.conn, g.tp.R
		_, _ = conn.Write([]byte("HELO client.example.net\r\n"))
		_, _ = br.ReadString('\n')
		// From 127.0.0.1, in mynetworks: excluded, so this one is taken.
		_, _ = conn.Write([]byte("NOOP\n"))
		if l, _ := br.ReadString('\n'); l != "250 2.0.0 Ok\r\n" {
			t.Errorf("excluded client's bare-LF NOOP: %q", l)
		}
		_ = conn.Close()

		// For an excluded client <LF>.<LF> ends DATA, so the smuggled
		// MAIL and RCPT are taken as commands; its DATA, sent ahead of
		// the 354 with the rest of the write, is refused by deploy/local's
		// smtpd_data_restrictions = reject_unauth_pipelining, and only the
		// first message is delivered.
		trusted := newToken("smuggle-excluded")
		replies := rawSmuggle(t, s, Trusted, "\n.\n", trusted)
		if len(replies) < 8 || !strings.HasPrefix(replies[4], "250 2.0.0 Ok: queued as ") || !strings.HasPrefix(replies[5], "250 2.1.0 ") || !strings.HasPrefix(replies[6], "250 2.1.5 ") ||
			replies[7] != "503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining" {
			t.Errorf("excluded client: replies %q, want the first message queued, the smuggled MAIL and RCPT taken as commands and their DATA refused", replies)
		}
		if files := s.maildirFiles(); len(files) != 1 {
			t.Errorf("excluded client: %d messages in the Maildir, want 1", len(files))
		}

		// A stranger's command line ending in a bare LF gets the 550 and
		// the end of the session.
		func() {
			g := connect(t, fmt.Sprintf("127.0.0.1:%d", s.port["mx"]))
			defer g.conn.Close()
			conn, br := g.conn, g.tp.R
			_, _ = conn.Write([]byte("HELO client.example.net\n"))
			if l, _ := br.ReadString('\n'); l != "550 5.5.2 mail.example.org Error: bare <LF> received\r\n" {
				t.Errorf("bare-LF HELO: %q", l)
			}
			if l, err := br.ReadString('\n'); err == nil {
				t.Errorf("the session went on: %q", l)
			}
		}()
	})
}
