package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/postfixtest"
)

// A real Postfix and smtpgate read the same sqlite_table(5) files and the
// same PostfixAdmin-like database: every reply of the dialogues is the
// same, step by step (virtual mailboxes, aliases, unknown users, senders
// and recipients that try to inject SQL or wildcards). Replies are
// compared as the other differential dialogues are (code and enhanced
// code).
func TestSQLiteDifferential(t *testing.T) {
	if _, err := os.Stat("/usr/lib/postfix/postfix-sqlite.so"); err != nil {
		t.Fatalf("Postfix's sqlite tables are needed (scripts/deps --test installs postfix-sqlite): %v", err)
	}
	// Postfix's daemons run as the postfix user: the database and the
	// .cf files must be readable by it.
	dir, err := os.MkdirTemp("", "tables-differential-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, extra := sqliteTables(t, dir)
	for _, name := range []string{"domains.cf", "mailboxes.cf", "aliases.cf", "logins.cf"} {
		if err := os.Chmod(dir+"/"+name, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	main := common + extra
	pf := postfixtest.Start(t, postfixtest.Options{Main: main})
	s := startStack(t, main)
	smtpgateAddr := fmt.Sprintf("127.0.0.1:%d", s.ports("edge")[0])
	for _, d := range []*dialogue{
		{name: "virtual mailboxes and aliases", from: Stranger, cmds: []string{
			"EHLO client.example.net",
			"MAIL FROM:<someone@example.net>",
			"RCPT TO:<lisa@example.com>",
			"RCPT TO:<LISA@EXAMPLE.COM>",
			"RCPT TO:<team@example.com>",
			"RCPT TO:<nobody@example.com>",
			"RCPT TO:<lisa@old.example>",
			"RCPT TO:<lisa@sub.example.com>",
			"QUIT",
		}},
		{name: "SQL in the address", from: Stranger, cmds: []string{
			"EHLO client.example.net",
			"MAIL FROM:<someone@example.net>",
			`RCPT TO:<"x'; DROP TABLE mailbox; --"@example.com>`,
			`RCPT TO:<"' OR '1'='1"@example.com>`,
			"RCPT TO:<_isa@example.com>",
			"RCPT TO:<%@example.com>",
			"RCPT TO:<lisa@example.com>",
			"QUIT",
		}},
		// The sender/login check itself is not compared: postfixtest's
		// Postfix has no SASL, and ignores reject_sender_login_mismatch
		// (TestSQLiteTablesAttack checks smtpgate's answers). Senders that
		// try wildcards and SQL find no owner on both.
		{name: "senders", from: Stranger, cmds: []string{
			"EHLO client.example.net",
			"MAIL FROM:<%@example.com>",
			"RCPT TO:<lisa@example.com>",
			"RSET",
			`MAIL FROM:<"' OR '1'='1"@example.com>`,
			"RCPT TO:<lisa@example.com>",
			"QUIT",
		}},
	} {
		rows, unexpected, _ := d.run(t, pf.Addr(), smtpgateAddr)
		// The texts too, where the address has no quoted local part
		// (Postfix shows it unquoted in the reply, smtpgate as sent).
		for _, r := range rows {
			if strings.HasPrefix(r.cmd, "RCPT") && !strings.Contains(r.cmd, `"`) && r.postfix.text != r.gate.text {
				t.Errorf("dialogue %q step %s %s: Postfix %q, smtpgate %q", d.name, r.step, r.cmd, r.postfix.text, r.gate.text)
			}
		}
		if unexpected > 0 {
			t.Errorf("dialogue %q: %d step(s) differ from Postfix:\n%s", d.name, unexpected, table(rows))
		} else {
			t.Logf("dialogue %q: the same replies:\n%s", d.name, table(rows))
		}
	}
	if t.Failed() {
		t.Logf("--- Postfix maillog ---\n%s", pf.Log())
	}
}
