package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/postfixtest"
	"github.com/smtpgate/smtpgate/pkg/sqltest"
)

// The real MariaDB and PostgreSQL of this package (Debian's
// mariadb-server and postgresql-15), each started once by the first test
// that needs it and stopped by stopSQLServers when the package's tests
// end. Their table user logs in with a password over TCP.
var sqlServers struct {
	mariaOnce, pgOnce sync.Once
	maria, pg         *sqltest.Server
	mariaErr, pgErr   error
	dirs              []string
}

const sqlTablePassword = "table-secret"

// sqlServerSchema is PostfixAdmin's shape with the rows of
// postfixadminSQL, in SQL both servers take.
const sqlServerSchema = `
CREATE TABLE domain (domain VARCHAR(255) PRIMARY KEY, active CHAR(1) NOT NULL DEFAULT '1');
CREATE TABLE mailbox (username VARCHAR(255) PRIMARY KEY, maildir VARCHAR(255), domain VARCHAR(255), active CHAR(1) NOT NULL DEFAULT '1');
CREATE TABLE alias (address VARCHAR(255), goto TEXT, domain VARCHAR(255), active CHAR(1) NOT NULL DEFAULT '1');
INSERT INTO domain VALUES ('example.com', '1'), ('old.example', '0');
INSERT INTO mailbox VALUES ('lisa@example.com', 'example.com/lisa/', 'example.com', '1'),
  ('john@example.com', 'example.com/john/', 'example.com', '1');
INSERT INTO alias VALUES ('lisa@example.com', 'lisa@example.com', 'example.com', '1'),
  ('john@example.com', 'john@example.org', 'example.com', '1'),
  ('team@example.com', 'lisa@example.com,john@example.com', 'example.com', '1');
`

// sqlServer returns the package's server for typ ("mysql" or "pgsql"),
// started once with the schema loaded.
func sqlServer(t *testing.T, typ string) *sqltest.Server {
	t.Helper()
	once, srv, serr := &sqlServers.mariaOnce, &sqlServers.maria, &sqlServers.mariaErr
	start := func(dir, password string) (*sqltest.Server, error) { return sqltest.StartMariaDB(dir, password) }
	if typ == "pgsql" {
		once, srv, serr = &sqlServers.pgOnce, &sqlServers.pg, &sqlServers.pgErr
		start = sqltest.StartPostgres
	}
	once.Do(func() {
		dir, err := os.MkdirTemp("", "e2e-"+typ+"-")
		if err != nil {
			*serr = err
			return
		}
		sqlServers.dirs = append(sqlServers.dirs, dir)
		if *srv, *serr = start(dir, sqlTablePassword); *serr != nil {
			return
		}
		_, *serr = (*srv).Exec("mail", sqlServerSchema)
	})
	if *serr != nil {
		t.Fatal(*serr)
	}
	return *srv
}

// stopSQLServers ends the package's database servers, if started.
func stopSQLServers() {
	for _, s := range []*sqltest.Server{sqlServers.maria, sqlServers.pg} {
		if s != nil {
			s.Stop()
		}
	}
	for _, d := range sqlServers.dirs {
		os.RemoveAll(d)
	}
}

// sqlServerTables writes the .cf files of a Postfix site whose tables
// live in srv (typ "mysql" or "pgsql") into dir, and returns the main.cf
// lines that name them.
func sqlServerTables(t *testing.T, typ string, srv *sqltest.Server, dir string) string {
	t.Helper()
	conn := fmt.Sprintf("hosts = inet:%s\nuser = %s\npassword = %s\ndbname = %s\n", srv.Addr(), srv.User, srv.Password, srv.DB)
	for name, q := range map[string]string{
		"domains.cf":   "query = SELECT domain FROM domain WHERE domain='%s' AND active = '1'\n",
		"mailboxes.cf": "query = SELECT maildir FROM mailbox\n  WHERE username='%s' AND active = '1'\n",
		"aliases.cf":   "query = SELECT goto FROM alias WHERE address='%s' AND active = '1'\n",
		"logins.cf":    "query = SELECT goto FROM alias WHERE address='%s' AND active = '1'\n",
	} {
		// Postfix's daemons run as the postfix user: the files must be
		// readable by it (and hold a password: a real site makes them
		// 0640 root:postfix).
		write(t, filepath.Join(dir, name), conn+q)
		if err := os.Chmod(filepath.Join(dir, name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return strings.NewReplacer("DIR", dir, "TYPE", typ).Replace(`
virtual_mailbox_domains = proxy:TYPE:DIR/domains.cf
virtual_mailbox_maps = proxy:TYPE:DIR/mailboxes.cf
virtual_alias_maps = proxy:TYPE:DIR/aliases.cf
smtpd_sender_login_maps = proxy:TYPE:DIR/logins.cf
smtpd_sender_restrictions = reject_sender_login_mismatch
`)
}

// A Postfix site's mysql: and pgsql: tables (PostfixAdmin's shape, in a
// real MariaDB and PostgreSQL) serve the virtual domains, mailboxes,
// aliases and sender logins through the real stack; what a client puts
// in an address reaches the database only as data; the database stopped
// defers (451 4.3.0) and the site recovers when it is back on its port.
func TestSQLServerTablesAttack(t *testing.T) {
	for _, typ := range []string{"mysql", "pgsql"} {
		t.Run(typ, func(t *testing.T) {
			srv := sqlServer(t, typ)
			s := newStack(t, sqlServerTables(t, typ, srv, t.TempDir()))
			count := func() string {
				t.Helper()
				out, err := srv.Exec("mail", "SELECT count(*) FROM mailbox;")
				if err != nil {
					t.Fatal(err)
				}
				return strings.TrimSpace(out)
			}

			t.Run("mailboxes and aliases", func(t *testing.T) {
				expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@example.com"), "ok")
				expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "LISA@Example.COM"), "ok")
				expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "team@example.com"), "ok")
				expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "nobody@example.com"),
					"550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table")
				expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@old.example"), "554 5.7.1 <lisa@old.example>: Relay access denied")
				tok := newToken(typ)
				if err := s.send(message{from: Stranger, listener: "mx", sender: "someone@example.net", rcpts: []string{"lisa@example.com"}, token: tok}); err != nil {
					t.Fatalf("message to a mailbox: %v", err)
				}
				if s.maildirTokens()[tok] != 1 {
					t.Errorf("message %s not delivered once", tok)
				}
			})

			t.Run("sender logins", func(t *testing.T) {
				expectPrefix(t, s.rcptReply(t, Stranger, "lisa@example.com", "lisa@example.com"), "553 5.7.1 <lisa@example.com>: Sender address rejected: not logged in")
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
					`"x'; DROP TABLE mailbox; #"`,
					`"' OR '1'='1"`,
					`"' UNION SELECT maildir FROM mailbox --"`,
					`"x\\' OR 1=1 -- "`,
					`"\\'; DROP TABLE mailbox; -- "`,
					`"lisa\\"`,
					"_isa",
					"lis_",
				} {
					addr := local + "@example.com"
					expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", addr), "550 5.1.1 <"+addr+">: Recipient address rejected: User unknown in virtual mailbox table")
				}
				expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "%@example.com"), "554 5.7.1 <%@example.com>: Relay access denied")
				for _, sender := range []string{"%@example.com", "lisa%@example.com", "_isa@example.com", "%isa@example.com",
					`"' OR '1'='1"@example.com`, `"x\\' OR 1=1 -- "@example.com`} {
					expectPrefix(t, s.rcptReply(t, Stranger, sender, "lisa@example.com"), "ok")
				}
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
				if n := count(); n != "2" {
					t.Errorf("mailbox rows after the attacks: %q; want 2", n)
				}
				expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@example.com"), "ok")
			})

			t.Run("check validates the .cf files", func(t *testing.T) {
				conf := t.TempDir()
				for _, f := range []string{"main.cf", "master.cf", "passwd"} {
					b, err := os.ReadFile(filepath.Join(s.conf, f))
					if err != nil {
						t.Fatal(err)
					}
					write(t, filepath.Join(conf, f), string(b))
				}
				bad, nokey := filepath.Join(conf, "bad.cf"), filepath.Join(conf, "nokey.cf")
				write(t, bad, fmt.Sprintf("hosts = inet:%s\ndbname = mail\nquery = SELECT maildir FROM mailbox WHERE username='%%s'\ndbpath = /x\n", srv.Addr()))
				write(t, nokey, fmt.Sprintf("hosts = inet:%s\ndbname = mail\nquery = SELECT maildir FROM mailbox\n", srv.Addr()))
				write(t, filepath.Join(conf, "main.cf"), fmt.Sprintf("%s\nrelay_recipient_maps = %s:%s\nvirtual_alias_maps = %s:%s\n",
					readFile(t, filepath.Join(conf, "main.cf")), typ, bad, typ, nokey))
				out, err := exec.Command(filepath.Join(binDir, "smtpgate-policy"), "-c", conf, "check").CombinedOutput()
				for _, want := range []string{"bad.cf:4: unknown " + typ + " parameter \"dbpath\"", "nokey.cf:3: query: \"SELECT maildir FROM mailbox\" does not use the lookup key"} {
					if err == nil || !strings.Contains(string(out), want) {
						t.Errorf("check: want an error %q: err %v, output:\n%s", want, err, out)
					}
				}
			})

			t.Run("database stopped defers and recovers", func(t *testing.T) {
				srv.Stop()
				restarted := false
				defer func() {
					if !restarted {
						if err := srv.Start(); err != nil {
							t.Error(err)
						}
					}
				}()
				expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@example.com"), "451 4.3.0 <lisa@example.com>: Temporary lookup failure")
				expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "nobody@example.com"), "451 4.3.0 <nobody@example.com>: Temporary lookup failure")
				if log := s.log("policy"); !strings.Contains(log, "table lookup failed") || strings.Contains(log, sqlTablePassword) {
					t.Errorf("policy log: want \"table lookup failed\", and never the password:\n%s", log)
				}
				// check: a server that cannot be reached is a warning, not
				// an error.
				out, err := exec.Command(filepath.Join(binDir, "smtpgate-policy"), "-c", s.conf, "check").CombinedOutput()
				if err != nil || !strings.Contains(string(out), "mailboxes.cf: cannot be reached now") {
					t.Errorf("check with the database stopped: want a warning, not an error: err %v, output:\n%s", err, out)
				}
				if err := srv.Start(); err != nil {
					t.Fatal(err)
				}
				restarted = true
				expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@example.com"), "ok")
				expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "nobody@example.com"), "550 5.1.1")
			})
		})
	}
}

// The same .cf files and the same database in a real Postfix 3.7
// (Debian's postfix-mysql and postfix-pgsql) and in smtpgate give the
// same replies.
func TestSQLServerTablesDifferential(t *testing.T) {
	for _, typ := range []string{"mysql", "pgsql"} {
		t.Run(typ, func(t *testing.T) {
			if _, err := os.Stat("/usr/lib/postfix/postfix-" + typ + ".so"); err != nil {
				t.Fatalf("Postfix's %s tables are needed (scripts/deps --test installs postfix-%s): %v", typ, typ, err)
			}
			srv := sqlServer(t, typ)
			dir, err := os.MkdirTemp("", "sqltables-differential-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			main := common + sqlServerTables(t, typ, srv, dir)
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
					`RCPT TO:<"x\\' OR 1=1 -- "@example.com>`,
					"RCPT TO:<_isa@example.com>",
					"RCPT TO:<%@example.com>",
					"RCPT TO:<lisa@example.com>",
					"QUIT",
				}},
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
	}
}
