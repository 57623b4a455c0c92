package e2e

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// postfixadminSQL is the part of PostfixAdmin's schema that a Postfix
// site's sqlite tables query, with a few rows.
const postfixadminSQL = `
CREATE TABLE domain (domain TEXT PRIMARY KEY, active TEXT NOT NULL DEFAULT '1');
CREATE TABLE mailbox (username TEXT PRIMARY KEY, maildir TEXT, domain TEXT, active TEXT NOT NULL DEFAULT '1');
CREATE TABLE alias (address TEXT, goto TEXT, domain TEXT, active TEXT NOT NULL DEFAULT '1');
INSERT INTO domain VALUES ('example.com', '1'), ('old.example', '0');
INSERT INTO mailbox VALUES ('lisa@example.com', 'example.com/lisa/', 'example.com', '1'),
  ('john@example.com', 'example.com/john/', 'example.com', '1');
INSERT INTO alias VALUES ('lisa@example.com', 'lisa@example.com', 'example.com', '1'),
  ('john@example.com', 'john@example.org', 'example.com', '1'),
  ('team@example.com', 'lisa@example.com,john@example.com', 'example.com', '1');
`

// sqliteTables writes a PostfixAdmin-like SQLite database and the .cf
// files of a Postfix site that uses it into dir, and returns the main.cf
// lines that name them.
func sqliteTables(t *testing.T, dir string) (db, mainCF string) {
	t.Helper()
	if _, err := exec.LookPath("sqlite3"); err != nil {
		t.Fatalf("sqlite3 is needed (scripts/deps --test installs it): %v", err)
	}
	db = filepath.Join(dir, "postfixadmin.sqlite")
	sqlite3(t, db, postfixadminSQL)
	cf := map[string]string{
		"domains.cf":   "dbpath = " + db + "\nquery = SELECT domain FROM domain WHERE domain='%s' AND active = '1'\n",
		"mailboxes.cf": "dbpath = " + db + "\nquery = SELECT maildir FROM mailbox\n  WHERE username='%s' AND active = '1'\n",
		"aliases.cf":   "dbpath = " + db + "\nquery = SELECT goto FROM alias WHERE address='%s' AND active = '1'\n",
		"logins.cf":    "dbpath = " + db + "\nquery = SELECT goto FROM alias WHERE address='%s' AND active = '1'\n",
	}
	for name, text := range cf {
		write(t, filepath.Join(dir, name), text)
	}
	mainCF = strings.NewReplacer("DIR", dir).Replace(`
virtual_mailbox_domains = proxy:sqlite:DIR/domains.cf
virtual_mailbox_maps = proxy:sqlite:DIR/mailboxes.cf
virtual_alias_maps = proxy:sqlite:DIR/aliases.cf
smtpd_sender_login_maps = proxy:sqlite:DIR/logins.cf
smtpd_sender_restrictions = reject_sender_login_mismatch
`)
	return db, mainCF
}

// sqlite3 runs SQL on the database file with the sqlite3 shell.
func sqlite3(t *testing.T, db, sql string) string {
	t.Helper()
	cmd := exec.Command("sqlite3", db)
	cmd.Stdin = strings.NewReader(sql)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v\n%s", db, err, out)
	}
	return string(out)
}

// A Postfix site's sqlite: tables (PostfixAdmin's shape) serve the
// virtual domains, mailboxes, aliases and sender logins through the real
// stack; what a client puts in an address reaches SQLite only as data;
// a locked database defers (451 4.3.0) and the site recovers when it is
// released.
func TestSQLiteTablesAttack(t *testing.T) {
	dir := t.TempDir()
	db, extra := sqliteTables(t, dir)
	s := newStack(t, extra)

	t.Run("mailboxes and aliases", func(t *testing.T) {
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@example.com"), "ok")
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "LISA@Example.COM"), "ok")
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "team@example.com"), "ok") // an alias is valid
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "nobody@example.com"),
			"550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table")
		// A domain the table does not list is no destination: relay denied.
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@old.example"), "554 5.7.1 <lisa@old.example>: Relay access denied")
		tok := newToken("sqlite")
		if err := s.send(message{from: Stranger, listener: "mx", sender: "someone@example.net", rcpts: []string{"lisa@example.com"}, token: tok}); err != nil {
			t.Fatalf("message to a mailbox: %v", err)
		}
		if s.maildirTokens()[tok] != 1 {
			t.Errorf("message %s not delivered once", tok)
		}
	})

	t.Run("sender logins", func(t *testing.T) {
		// Unauthenticated, an address that has an owner is refused.
		expectPrefix(t, s.rcptReply(t, Stranger, "lisa@example.com", "lisa@example.com"), "553 5.7.1 <lisa@example.com>: Sender address rejected: not logged in")
		// john@example.org owns john@example.com, not lisa@example.com.
		send := func(sender string) error {
			c, err := s.dial(Trusted, "submission", false)
			if err != nil {
				t.Fatal(err)
			}
			return sendOn(c, message{startTLS: true, auth: plain(JohnPassword), sender: sender, rcpts: []string{"lisa@example.com"}, token: newToken("login")})
		}
		if err := send("john@example.com"); err != nil {
			t.Errorf("john as john@example.com: %v", err)
		}
		expectPrefix(t, replyOf(send("lisa@example.com")), "553 5.7.1 <lisa@example.com>: Sender address rejected: not owned by user john@example.org")
	})

	t.Run("injection", func(t *testing.T) {
		for _, local := range []string{
			`"x'; DROP TABLE mailbox; --"`,
			`"' OR '1'='1"`,
			`"' UNION SELECT maildir FROM mailbox --"`,
			"_isa",
		} {
			addr := local + "@example.com"
			expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", addr), "550 5.1.1 <"+addr+">: Recipient address rejected: User unknown in virtual mailbox table")
		}
		// A '%' in a recipient is sender-specified routing, refused before
		// any table; as a sender it reaches smtpd_sender_login_maps, where
		// a wildcard that matched lisa@example.com would say "not logged
		// in".
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "%@example.com"), "554 5.7.1 <%@example.com>: Relay access denied")
		for _, sender := range []string{"%@example.com", "lisa%@example.com", "_isa@example.com", "%isa@example.com", `"' OR '1'='1"@example.com`} {
			expectPrefix(t, s.rcptReply(t, Stranger, sender, "lisa@example.com"), "ok")
		}
		// A NUL in the address never reaches a table: the edge refuses
		// the command line.
		r, err := s.dialListener(Stranger, "mx", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer r.conn.Close()
		if greeting, err := r.last(); err != nil || !strings.HasPrefix(greeting, "220") {
			t.Fatalf("greeting %q: %v", greeting, err)
		}
		var last string
		for _, l := range []string{"EHLO client.example.net", "MAIL FROM:<someone@example.net>", "RCPT TO:<lisa\x00' OR '1'='1@example.com>"} {
			if err := r.writeLine(l); err != nil {
				t.Fatal(err)
			}
			if last, err = r.last(); err != nil {
				t.Fatalf("after %q: %v", l, err)
			}
		}
		if !strings.HasPrefix(last, "5") {
			t.Errorf("RCPT with a NUL: %q; want a 5xx", last)
		}
		if got := sqlite3(t, db, "SELECT count(*) FROM mailbox;"); strings.TrimSpace(got) != "2" {
			t.Errorf("mailbox rows after the attacks: %q; want 2", got)
		}
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@example.com"), "ok")
	})

	t.Run("locked database defers and recovers", func(t *testing.T) {
		lock := exec.Command("sqlite3", db)
		in, err := lock.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		outPipe, err := lock.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := lock.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { in.Close(); _ = lock.Wait() }()
		out := bufio.NewReader(outPipe)
		if _, err := io.WriteString(in, "BEGIN EXCLUSIVE;\nUPDATE mailbox SET active = '1';\n.print locked\n"); err != nil {
			t.Fatal(err)
		}
		if l, err := out.ReadString('\n'); err != nil || l != "locked\n" {
			t.Fatalf("sqlite3 lock: %q, %v", l, err)
		}
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@example.com"), "451 4.3.0 <lisa@example.com>: Temporary lookup failure")
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "nobody@example.com"), "451 4.3.0 <nobody@example.com>: Temporary lookup failure")
		if !strings.Contains(s.log("policy"), "table lookup failed") {
			t.Errorf("policy did not log the failed lookup:\n%s", s.log("policy"))
		}
		if _, err := io.WriteString(in, "COMMIT;\n.print released\n"); err != nil {
			t.Fatal(err)
		}
		if l, err := out.ReadString('\n'); err != nil || l != "released\n" {
			t.Fatalf("sqlite3 commit: %q, %v", l, err)
		}
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@example.com"), "ok")
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "nobody@example.com"), "550 5.1.1")
	})

	t.Run("check validates the .cf files", func(t *testing.T) {
		mainCF, err := os.ReadFile(filepath.Join(s.conf, "main.cf"))
		if err != nil {
			t.Fatal(err)
		}
		run := func(name, text string) (string, error) {
			conf := t.TempDir()
			write(t, filepath.Join(conf, name), text)
			m := strings.ReplaceAll(string(mainCF), filepath.Join(dir, name), filepath.Join(conf, name))
			write(t, filepath.Join(conf, "main.cf"), m)
			for _, f := range []string{"master.cf", "passwd"} {
				b, err := os.ReadFile(filepath.Join(s.conf, f))
				if err != nil {
					t.Fatal(err)
				}
				write(t, filepath.Join(conf, f), string(b))
			}
			out, err := exec.Command(filepath.Join(binDir, "smtpgate-policy"), "-c", conf, "check").CombinedOutput()
			return string(out), err
		}
		out, err := run("mailboxes.cf", "dbpath = "+db+"\nhosts = db.example.com\nquery = SELECT maildir FROM mailbox WHERE username='%s'\n")
		if err == nil || !strings.Contains(out, "mailboxes.cf:2: unknown sqlite parameter \"hosts\"") {
			t.Errorf("unknown parameter: err %v, output:\n%s", err, out)
		}
		out, err = run("aliases.cf", "dbpath = "+db+"\nquery = SELECT goto FROM alias\n")
		if err == nil || !strings.Contains(out, "aliases.cf:2: query: \"SELECT goto FROM alias\" does not use the lookup key") {
			t.Errorf("query without %%s: err %v, output:\n%s", err, out)
		}
		out, err = run("domains.cf", "dbpath = "+filepath.Join(dir, "gone.sqlite")+"\nquery = SELECT domain FROM domain WHERE domain='%s'\n")
		if err != nil || !strings.Contains(out, "domains.cf: cannot be reached now") {
			t.Errorf("missing database: want a warning, not an error: err %v, output:\n%s", err, out)
		}
	})
}

// rcptReply says EHLO, MAIL FROM:<sender> and RCPT TO:<to> on the mx
// listener from the address from, and returns the reply to the first of
// MAIL and RCPT that is refused, or "ok".
func (s *stack) rcptReply(t *testing.T, from, sender, to string) string {
	t.Helper()
	c, err := s.dial(from, "mx", false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(sender); err != nil {
		return replyOf(err)
	}
	return replyOf(c.Rcpt(to))
}

// expectPrefix fails t unless got starts with want.
func expectPrefix(t *testing.T, got, want string) {
	t.Helper()
	if !strings.HasPrefix(got, want) {
		t.Errorf("got %q; want %q...", got, want)
	}
}
