package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/ldaptest"
	"github.com/smtpgate/smtpgate/pkg/postfixtest"
)

// ldapTables writes the ldap_table(5) files of a Postfix site whose
// directory is ldaptest.Entries (domains, inetOrgPerson users, aliases)
// on srv into dir, binding as the service account with bindPW, and
// returns the main.cf lines that name them. version = 3: Postfix's
// default, 2, is refused by slapd's default configuration.
func ldapTables(t *testing.T, dir string, srv *ldaptest.Server, bindPW string) string {
	t.Helper()
	common := "server_host = " + srv.URL() + "\nversion = 3\ntimeout = 5\nsearch_base = dc=example, dc=com\n" +
		"bind = yes\nbind_dn = " + ldaptest.ServiceDN + "\nbind_pw = " + bindPW + "\n"
	cf := map[string]string{
		"domains.cf":   common + "query_filter = (associatedDomain=%s)\nresult_attribute = associatedDomain\n",
		"mailboxes.cf": common + "query_filter = (&(objectClass=inetOrgPerson)(mail=%s))\nresult_attribute = mail\nresult_format = %d/%u/\n",
		"aliases.cf":   common + "query_filter = (&(objectClass=nisMailAlias)(cn=%s))\nresult_attribute = rfc822MailMember\n",
		"logins.cf":    common + "query_filter = (mail=%s)\nresult_attribute = mailRoutingAddress\n",
	}
	for name, text := range cf {
		write(t, filepath.Join(dir, name), text)
		// Postfix's daemons run as the postfix user.
		if err := os.Chmod(filepath.Join(dir, name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return strings.NewReplacer("DIR", dir).Replace(`
virtual_mailbox_domains = proxy:ldap:DIR/domains.cf
virtual_mailbox_maps = proxy:ldap:DIR/mailboxes.cf
virtual_alias_maps = proxy:ldap:DIR/aliases.cf
smtpd_sender_login_maps = proxy:ldap:DIR/logins.cf
smtpd_sender_restrictions = reject_sender_login_mismatch
`)
}

// tempDirFor makes a directory the postfix user can read, removed when
// the test ends.
func tempDirFor(t *testing.T, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A Postfix site's ldap: tables serve the virtual domains, mailboxes,
// aliases and sender logins through the real stack, on a real slapd
// started once for all the cases: unknown mailboxes are refused, known
// ones and aliases accepted, a sender/login mismatch refused; what a
// client puts in an address reaches the directory only as an escaped
// value; a wrong bind_pw and a stopped slapd defer (451 4.3.0), never
// permit, and the site recovers when slapd is back on its port. A real
// Postfix with the same .cf files and the same directory gives the same
// replies.
func TestLDAPTablesAttack(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.Entries)
	dir := tempDirFor(t, "ldap-tables-")
	extra := ldapTables(t, dir, srv, ldaptest.ServicePW)
	// common is what the differential dialogues' Postfix is given
	// besides: the same for both.
	s := startStack(t, common+extra)

	t.Run("mailboxes and aliases", func(t *testing.T) {
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@example.com"), "ok")
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "LISA@Example.COM"), "ok")
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "team@example.com"), "ok") // an alias is valid
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "nobody@example.com"),
			"550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table")
		// A domain the directory does not list is no destination.
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@old.example"), "554 5.7.1 <lisa@old.example>: Relay access denied")
		tok := newToken("ldap")
		if err := s.send(message{from: Stranger, listener: "mx", sender: "someone@example.net", rcpts: []string{"lisa@example.com"}, token: tok}); err != nil {
			t.Fatalf("message to a mailbox: %v", err)
		}
		if s.maildirTokens()[tok] != 1 {
			t.Errorf("message %s not delivered once", tok)
		}
	})

	t.Run("sender logins", func(t *testing.T) {
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

	t.Run("filter injection", func(t *testing.T) {
		for _, local := range []string{"*", "lisa*", `"*)(mail=*"`, `"*)(|(mail=*"`, `"lisa)(objectClass=*"`, `"\\2a"`, `"\\"`, `"(lisa)"`, `"a(b)c"`} {
			addr := local + "@example.com"
			expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", addr),
				"550 5.1.1 <"+addr+">: Recipient address rejected: User unknown in virtual mailbox table")
		}
		// As senders they reach smtpd_sender_login_maps, where a
		// wildcard that matched an owned address would say "not logged
		// in".
		for _, sender := range []string{"*@example.com", "lisa*@example.com", `"*)(mail=*"@example.com`, `"\\2a"@example.com`} {
			expectPrefix(t, s.rcptReply(t, Stranger, sender, "lisa@example.com"), "ok")
		}
		// A NUL never reaches a table: the edge refuses the line.
		r, err := s.dialListener(Stranger, "mx", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer r.conn.Close()
		if greeting, err := r.last(); err != nil || !strings.HasPrefix(greeting, "220") {
			t.Fatalf("greeting %q: %v", greeting, err)
		}
		var last string
		for _, l := range []string{"EHLO client.example.net", "MAIL FROM:<someone@example.net>", "RCPT TO:<*\x00)(mail=*@example.com>"} {
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
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@example.com"), "ok")
	})

	t.Run("same replies as Postfix", func(t *testing.T) {
		if _, err := os.Stat("/usr/lib/postfix/postfix-ldap.so"); err != nil {
			t.Fatalf("Postfix's ldap tables are needed (scripts/deps --test installs postfix-ldap): %v", err)
		}
		pf := postfixtest.Start(t, postfixtest.Options{Main: common + extra})
		gateAddr := fmt.Sprintf("127.0.0.1:%d", s.ports("edge")[0])
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
			{name: "filter syntax in the address", from: Stranger, cmds: []string{
				"EHLO client.example.net",
				"MAIL FROM:<someone@example.net>",
				"RCPT TO:<*@example.com>",
				"RCPT TO:<lisa*@example.com>",
				`RCPT TO:<"*)(mail=*"@example.com>`,
				`RCPT TO:<"lisa)(objectClass=*"@example.com>`,
				`RCPT TO:<"\\2a"@example.com>`,
				`RCPT TO:<"(lisa)"@example.com>`,
				"RCPT TO:<lisa@example.com>",
				"QUIT",
			}},
			// The sender/login check itself is not compared:
			// postfixtest's Postfix has no SASL (see
			// TestSQLiteDifferential). Senders with filter syntax find
			// no owner on both.
			{name: "senders", from: Stranger, cmds: []string{
				"EHLO client.example.net",
				"MAIL FROM:<*@example.com>",
				"RCPT TO:<lisa@example.com>",
				"RSET",
				`MAIL FROM:<"*)(mail=*"@example.com>`,
				"RCPT TO:<lisa@example.com>",
				"QUIT",
			}},
		} {
			rows, unexpected, _ := d.run(t, pf.Addr(), gateAddr)
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
	})

	t.Run("wrong bind_pw defers", func(t *testing.T) {
		wrongDir := tempDirFor(t, "ldap-wrongpw-")
		wrong := startStack(t, common+ldapTables(t, wrongDir, srv, "not-the-password"))
		for _, rcpt := range []string{"lisa@example.com", "nobody@example.com", "team@example.com"} {
			expectPrefix(t, wrong.rcptReply(t, Stranger, "someone@example.net", rcpt), "451 4.3.0 <"+rcpt+">: Temporary lookup failure")
		}
		if !strings.Contains(wrong.log("policy"), "Invalid Credentials") {
			t.Errorf("policy did not log the failed bind:\n%s", wrong.log("policy"))
		}
		if strings.Contains(wrong.log("policy"), "not-the-password") {
			t.Error("policy logged the bind password")
		}
		// A real Postfix with the same files defers the same way.
		pf := postfixtest.Start(t, postfixtest.Options{Main: common + ldapTables(t, wrongDir, srv, "not-the-password")})
		d := &dialogue{name: "wrong bind_pw", from: Stranger, cmds: []string{
			"EHLO client.example.net",
			"MAIL FROM:<someone@example.net>",
			"RCPT TO:<lisa@example.com>",
			"RCPT TO:<nobody@example.com>",
			"QUIT",
		}}
		rows, unexpected, _ := d.run(t, pf.Addr(), fmt.Sprintf("127.0.0.1:%d", wrong.ports("edge")[0]))
		if unexpected > 0 {
			t.Errorf("dialogue %q: %d step(s) differ from Postfix:\n%s\n--- Postfix maillog ---\n%s", d.name, unexpected, table(rows), pf.Log())
		} else {
			t.Logf("dialogue %q: the same replies:\n%s", d.name, table(rows))
		}
	})

	t.Run("check validates the .cf files", func(t *testing.T) {
		run := func(name, text string) (string, error) {
			conf := t.TempDir()
			write(t, filepath.Join(conf, name), text)
			m, err := os.ReadFile(filepath.Join(s.conf, "main.cf"))
			if err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(conf, "main.cf"), strings.ReplaceAll(string(m), filepath.Join(dir, name), filepath.Join(conf, name)))
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
		out, err := run("mailboxes.cf", "server_host = "+srv.URL()+"\nquery = (mail=%s)\n")
		if err == nil || !strings.Contains(out, "mailboxes.cf:2: unknown ldap parameter \"query\"") {
			t.Errorf("unknown parameter: err %v, output:\n%s", err, out)
		}
		out, err = run("aliases.cf", "server_host = "+srv.URL()+"\nbind = sasl\n")
		if err == nil || !strings.Contains(out, "aliases.cf:2: bind: sasl: SASL binds are not supported") {
			t.Errorf("bind = sasl: err %v, output:\n%s", err, out)
		}
		out, err = run("domains.cf", "server_host = ldap://127.0.0.1:1\nquery_filter = (associatedDomain=%s)\n")
		if err != nil || !strings.Contains(out, "domains.cf: cannot be reached now") {
			t.Errorf("unreachable server: want a warning, not an error: err %v, output:\n%s", err, out)
		}
	})

	t.Run("slapd stopped defers and recovers", func(t *testing.T) {
		// A real Postfix beside it, with connections to slapd of its
		// own made before the stop.
		pf := postfixtest.Start(t, postfixtest.Options{Main: common + extra})
		d := &dialogue{name: "slapd", from: Stranger, cmds: []string{
			"EHLO client.example.net",
			"MAIL FROM:<someone@example.net>",
			"RCPT TO:<lisa@example.com>",
			"RCPT TO:<nobody@example.com>",
			"QUIT",
		}}
		compare := func(when string) {
			t.Helper()
			rows, unexpected, _ := d.run(t, pf.Addr(), fmt.Sprintf("127.0.0.1:%d", s.ports("edge")[0]))
			if unexpected > 0 {
				t.Errorf("%s: %d step(s) differ from Postfix:\n%s", when, unexpected, table(rows))
			} else {
				t.Logf("%s: the same replies:\n%s", when, table(rows))
			}
		}
		compare("slapd up")
		srv.Stop()
		for _, rcpt := range []string{"lisa@example.com", "nobody@example.com"} {
			expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", rcpt), "451 4.3.0 <"+rcpt+">: Temporary lookup failure")
		}
		if !strings.Contains(s.log("policy"), "table lookup failed") {
			t.Errorf("policy did not log the failed lookup:\n%s", s.log("policy"))
		}
		compare("slapd stopped")
		srv.Restart(t)
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@example.com"), "ok")
		expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "nobody@example.com"), "550 5.1.1")
		compare("slapd back")
		if t.Failed() {
			t.Logf("--- Postfix maillog ---\n%s", pf.Log())
		}
	})
}
