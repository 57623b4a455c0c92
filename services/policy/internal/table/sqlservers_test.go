package table

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/certtest"
	"github.com/smtpgate/smtpgate/pkg/sqltest"
)

// The real MariaDB and PostgreSQL of this package, each started once by
// the first test that needs it and stopped by TestMain.
var sqlServers struct {
	mariaOnce, pgOnce sync.Once
	maria, pg         *sqltest.Server
	mariaErr, pgErr   error
	dirs              []string
	// mariaCA signed the MariaDB's TLS certificate (localhost,
	// 127.0.0.1, ::1).
	mariaCA *certtest.CA
}

// sqlPassword is the table user's password (with a quote and a
// backslash: the .cf file passes them as they are).
const sqlPassword = `s3cret'\pw`

func TestMain(m *testing.M) {
	code := m.Run()
	for _, s := range []*sqltest.Server{sqlServers.maria, sqlServers.pg} {
		if s != nil {
			s.Stop()
		}
	}
	for _, d := range sqlServers.dirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// sqlSchema is PostfixAdmin's shape, in SQL both servers take.
const sqlSchema = `
CREATE TABLE domain (domain VARCHAR(255) PRIMARY KEY, active SMALLINT NOT NULL DEFAULT 1);
CREATE TABLE mailbox (username VARCHAR(255) PRIMARY KEY, maildir VARCHAR(255), domain VARCHAR(255), active SMALLINT NOT NULL DEFAULT 1);
CREATE TABLE alias (address VARCHAR(255), goto TEXT, domain VARCHAR(255), active SMALLINT NOT NULL DEFAULT 1);
INSERT INTO domain VALUES ('example.com', 1), ('old.example', 0);
INSERT INTO mailbox VALUES ('lisa@example.com', 'example.com/lisa/', 'example.com', 1),
  ('joe@example.com', 'example.com/joe/', 'example.com', 1),
  ('gone@example.com', 'example.com/gone/', 'example.com', 0),
  ('o''brien@example.com', 'example.com/obrien/', 'example.com', 1),
  ('back\slash@example.com', 'example.com/backslash/', 'example.com', 1),
  ('müller@example.com', 'example.com/mueller/', 'example.com', 1);
INSERT INTO alias VALUES ('postmaster@example.com', 'lisa@example.com', 'example.com', 1),
  ('team@example.com', 'lisa@example.com', 'example.com', 1),
  ('team@example.com', 'joe@example.com', 'example.com', 1),
  ('team@example.com', NULL, 'example.com', 1),
  ('all@example.com', 'a@example.com', 'example.com', 1),
  ('all@example.com', 'b@example.com', 'example.com', 1),
  ('all@example.com', 'c@example.com', 'example.com', 1);
`

// mariaDB returns the package's MariaDB with the schema loaded.
func mariaDB(t *testing.T) *sqltest.Server {
	t.Helper()
	sqlServers.mariaOnce.Do(func() {
		dir, err := os.MkdirTemp("", "table-mariadb-")
		if err != nil {
			sqlServers.mariaErr = err
			return
		}
		sqlServers.dirs = append(sqlServers.dirs, dir)
		sqlServers.mariaCA = certtest.NewCA(t, dir, "ca")
		cert, key := sqlServers.mariaCA.Server(t, "mariadb")
		if sqlServers.maria, sqlServers.mariaErr = sqltest.StartMariaDB(dir, sqlPassword,
			"--ssl-ca="+sqlServers.mariaCA.CertFile, "--ssl-cert="+cert, "--ssl-key="+key); sqlServers.mariaErr != nil {
			return
		}
		// MariaDB reads the backslash of 'back\slash' as an escape:
		// write it doubled there.
		_, sqlServers.mariaErr = sqlServers.maria.Exec("mail", strings.ReplaceAll(sqlSchema, `back\slash`, `back\\slash`))
	})
	if sqlServers.mariaErr != nil {
		t.Fatal(sqlServers.mariaErr)
	}
	return sqlServers.maria
}

// postgres returns the package's PostgreSQL with the schema loaded.
func postgres(t *testing.T) *sqltest.Server {
	t.Helper()
	sqlServers.pgOnce.Do(func() {
		dir, err := os.MkdirTemp("", "table-postgres-")
		if err != nil {
			sqlServers.pgErr = err
			return
		}
		sqlServers.dirs = append(sqlServers.dirs, dir)
		if sqlServers.pg, sqlServers.pgErr = sqltest.StartPostgres(dir, sqlPassword); sqlServers.pgErr != nil {
			return
		}
		_, sqlServers.pgErr = sqlServers.pg.Exec("mail", sqlSchema)
	})
	if sqlServers.pgErr != nil {
		t.Fatal(sqlServers.pgErr)
	}
	return sqlServers.pg
}

// sqlCF is the connection part of a .cf file for server s of type typ.
func sqlCF(s *sqltest.Server) string {
	return fmt.Sprintf("hosts = inet:%s\nuser = %s\npassword = %s\ndbname = %s\n", s.Addr(), s.User, s.Password, s.DB)
}

// openCF writes a .cf file and opens it as typ.
func openCF(t *testing.T, typ, text string, opts Options) Table {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, typ+".cf")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	tb, err := Open("proxy:"+typ+":"+path, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { tb.(io.Closer).Close() })
	return tb
}

// sqlServerCases runs f for each SQL server type.
func sqlServerCases(t *testing.T, f func(t *testing.T, typ string, s *sqltest.Server)) {
	t.Run("mysql", func(t *testing.T) { f(t, "mysql", mariaDB(t)) })
	t.Run("pgsql", func(t *testing.T) { f(t, "pgsql", postgres(t)) })
}

func TestSQLServersPostfixAdmin(t *testing.T) {
	sqlServerCases(t, func(t *testing.T, typ string, s *sqltest.Server) {
		conn := sqlCF(s)
		domains := openCF(t, typ, conn+"query = SELECT domain FROM domain WHERE domain='%s' AND active = 1\n", Options{})
		mailboxes := openCF(t, typ, conn+"query = SELECT maildir FROM mailbox\n    WHERE username='%s' AND active = '1'\n", Options{})
		aliases := openCF(t, typ, conn+"query = SELECT goto FROM alias WHERE address='%s' AND active = 1\n", Options{})
		logins := openCF(t, typ, conn+"query = SELECT username FROM mailbox WHERE username='%s'\nresult_format = %u\n", Options{})
		byDomain := openCF(t, typ, conn+"query = SELECT username FROM mailbox WHERE domain='%d' AND username='%u@%d'\ndomain = example.com\n", Options{})
		columns := openCF(t, typ, conn+"query = SELECT username, maildir FROM mailbox WHERE username='%s'\n", Options{})
		legacy := openCF(t, typ, conn+"table = mailbox\nselect_field = maildir\nwhere_field = username\nadditional_conditions = AND active = 1\n", Options{})
		limited := openCF(t, typ, conn+"query = SELECT goto FROM alias WHERE address='%s'\nexpansion_limit = 2\n", Options{})

		checkLookups(t, domains, []lookupCase{
			hit("example.com", "example.com"),
			hit("EXAMPLE.COM", "example.com"),
			{"old.example", "", false},
			{"example.org", "", false},
		})
		checkLookups(t, mailboxes, []lookupCase{
			hit("lisa@example.com", "example.com/lisa/"),
			hit("Lisa@Example.COM", "example.com/lisa/"),
			{"gone@example.com", "", false},
			{"nobody@example.com", "", false},
			hit("o'brien@example.com", "example.com/obrien/"),
			hit(`back\slash@example.com`, "example.com/backslash/"),
			hit("müller@example.com", "example.com/mueller/"),
			hit("MÜLLER@example.com", "example.com/mueller/"),
		})
		checkLookups(t, aliases, []lookupCase{
			hit("postmaster@example.com", "lisa@example.com"),
			hit("team@example.com", "lisa@example.com,joe@example.com"),
			{"nobody@example.com", "", false},
		})
		checkLookups(t, logins, []lookupCase{hit("lisa@example.com", "lisa")})
		checkLookups(t, byDomain, []lookupCase{
			hit("joe@example.com", "joe@example.com"),
			{"joe@example.org", "", false},
			{"joe", "", false},
		})
		// Every column of every row, as Postfix's mysql and pgsql
		// drivers do.
		checkLookups(t, columns, []lookupCase{hit("joe@example.com", "joe@example.com,example.com/joe/")})
		checkLookups(t, legacy, []lookupCase{hit("joe@example.com", "example.com/joe/"), {"gone@example.com", "", false}})
		checkLookups(t, limited, []lookupCase{hit("team@example.com", "lisa@example.com,joe@example.com")})
		if v, ok, err := limited.Lookup(context.Background(), "all@example.com"); !errors.Is(err, ErrLookup) {
			t.Errorf("3 results with expansion_limit = 2: %q, %v, %v; want ErrLookup", v, ok, err)
		}
	})
}

// sqlAttacks are keys a client can put in an address. None may find a
// row or change anything.
var sqlAttacks = []string{
	"x'; DROP TABLE mailbox; --@example.com",
	"x'; DROP TABLE mailbox; #@example.com",
	"' OR '1'='1",
	"' OR 1=1 --@example.com",
	"' OR 1=1 #@example.com",
	"x' UNION SELECT maildir FROM mailbox --",
	`x\' OR 1=1 -- @example.com`,
	`x\\' OR 1=1 -- @example.com`,
	`\'; DROP TABLE mailbox; -- @example.com`,
	`back\\slash@example.com`,
	`back\slash\@example.com`,
	`\`,
	`'`,
	`\'`,
	"x\" OR \"1\"=\"1",
	"%@example.com",
	"_isa@example.com",
	"lisa\x00@example.com",
	"lisa@example.com\x00' OR '1'='1",
	"lisa\xff@example.com",
	"lisa\xbf\x27 OR 1=1 -- @example.com",
	"\xbf' OR 1=1 -- ",
	"''@example.com",
	"lisa\x1a@example.com",
	"lisa\n@example.com",
	"lisa\r@example.com",
}

func sqlCount(t *testing.T, s *sqltest.Server, table string) string {
	t.Helper()
	out, err := s.Exec("mail", "SELECT count(*) FROM "+table+";")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// What a client can put in an address reaches the database only as
// data, with both of each server's quoting modes: quotes, backslashes,
// LIKE wildcards, NUL and bytes that are not UTF-8 find nothing and
// change nothing.
func TestSQLServersInjection(t *testing.T) {
	sqlServerCases(t, func(t *testing.T, typ string, s *sqltest.Server) {
		// The other quoting mode: MySQL's NO_BACKSLASH_ESCAPES,
		// PostgreSQL's standard_conforming_strings = off. New
		// connections take the setting.
		modeOn, modeOff := "SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, ',NO_BACKSLASH_ESCAPES');",
			"SET GLOBAL sql_mode = REPLACE(@@GLOBAL.sql_mode, 'NO_BACKSLASH_ESCAPES', '');"
		if typ == "pgsql" {
			modeOn, modeOff = "ALTER DATABASE mail SET standard_conforming_strings = off;",
				"ALTER DATABASE mail RESET standard_conforming_strings;"
		}
		for _, mode := range []string{"default", "other"} {
			t.Run(mode, func(t *testing.T) {
				if mode == "other" {
					if _, err := s.Exec("", modeOn); err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() {
						if _, err := s.Exec("", modeOff); err != nil {
							t.Error(err)
						}
					})
				}
				conn := sqlCF(s)
				mailboxes := openCF(t, typ, conn+"query = SELECT maildir FROM mailbox WHERE username='%s'\n", Options{})
				like := openCF(t, typ, conn+"query = SELECT maildir FROM mailbox WHERE username LIKE '%u@%d'\n", Options{})
				for _, key := range sqlAttacks {
					if v, ok, err := mailboxes.Lookup(context.Background(), key); ok || err != nil {
						t.Errorf("Lookup(%q) = %q, %v, %v; want not found", key, v, ok, err)
					}
				}
				for _, key := range []string{"x'; DROP TABLE mailbox; --@example.com", "' OR 1=1 --@example.com", `x\' OR 1=1 -- @example.com`} {
					if v, ok, err := like.Lookup(context.Background(), key); ok || err != nil {
						t.Errorf("LIKE Lookup(%q) = %q, %v, %v; want not found", key, v, ok, err)
					}
				}
				if n := sqlCount(t, s, "mailbox"); n != "6" {
					t.Fatalf("after the attacks: mailbox rows = %s; want 6", n)
				}
				checkLookups(t, mailboxes, []lookupCase{
					hit("lisa@example.com", "example.com/lisa/"),
					hit("o'brien@example.com", "example.com/obrien/"),
					hit(`back\slash@example.com`, "example.com/backslash/"),
				})
			})
		}
	})
}

// A database that cannot be reached is a temporary failure, never "not
// found"; lookups recover when it is back on the same port; a dead host
// among several is passed over; a bad password or query fails too.
func TestSQLServersFailures(t *testing.T) {
	sqlServerCases(t, func(t *testing.T, typ string, s *sqltest.Server) {
		q := "query = SELECT maildir FROM mailbox WHERE username='%s'\n"
		mailboxes := openCF(t, typ, sqlCF(s)+q, Options{})
		checkLookups(t, mailboxes, []lookupCase{hit("lisa@example.com", "example.com/lisa/")})

		dead, err := freeLoopbackPort()
		if err != nil {
			t.Fatal(err)
		}
		two := openCF(t, typ, strings.Replace(sqlCF(s), "hosts = ", "hosts = inet:"+dead+", ", 1)+q, Options{})
		for range 4 {
			checkLookups(t, two, []lookupCase{hit("lisa@example.com", "example.com/lisa/"), {"nobody@example.com", "", false}})
		}

		wrong := openCF(t, typ, strings.Replace(sqlCF(s), "password = "+s.Password, "password = wrong", 1)+q, Options{})
		badQuery := openCF(t, typ, sqlCF(s)+"query = SELECT maildir FROM no_such_table WHERE username='%s'\n", Options{})
		for name, tb := range map[string]Table{"wrong password": wrong, "bad query": badQuery} {
			if v, ok, err := tb.Lookup(context.Background(), "lisa@example.com"); !errors.Is(err, ErrLookup) {
				t.Errorf("%s: %q, %v, %v; want ErrLookup", name, v, ok, err)
			}
		}

		s.Stop()
		started := false
		defer func() {
			if !started {
				if err := s.Start(); err != nil {
					t.Error(err)
				}
			}
		}()
		for _, key := range []string{"lisa@example.com", "nobody@example.com"} {
			if v, ok, err := mailboxes.Lookup(context.Background(), key); !errors.Is(err, ErrLookup) || ok {
				t.Errorf("server stopped: Lookup(%q) = %q, %v, %v; want ErrLookup", key, v, ok, err)
			}
		}
		if err := mailboxes.(Prober).Probe(context.Background()); err == nil {
			t.Error("Probe: no error with the server stopped")
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		started = true
		checkLookups(t, mailboxes, []lookupCase{hit("lisa@example.com", "example.com/lisa/"), {"nobody@example.com", "", false}})
		if err := mailboxes.(Prober).Probe(context.Background()); err != nil {
			t.Errorf("Probe: %v", err)
		}

		// A restart while the pool holds connections: those the server
		// closed are replaced, and no lookup after the restart fails.
		var wg sync.WaitGroup
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 5 {
					if _, _, err := mailboxes.Lookup(context.Background(), "lisa@example.com"); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		s.Stop()
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		for range 10 {
			checkLookups(t, mailboxes, []lookupCase{hit("lisa@example.com", "example.com/lisa/")})
		}
	})
}

func TestSQLServersUnixSocket(t *testing.T) {
	sqlServerCases(t, func(t *testing.T, typ string, s *sqltest.Server) {
		hosts := "unix:" + s.Socket
		if typ == "pgsql" {
			// Postfix's "unix:/dir" takes no port; a URI does.
			hosts = fmt.Sprintf("postgresql:///%s?host=%s&port=%d&user=%s&password=%s", s.DB, s.Socket, s.Port, s.User, url.QueryEscape(s.Password))
		}
		tb := openCF(t, typ, fmt.Sprintf("hosts = %s\nuser = %s\npassword = %s\ndbname = %s\nquery = SELECT maildir FROM mailbox WHERE username='%%s'\n",
			hosts, s.User, s.Password, s.DB), Options{})
		checkLookups(t, tb, []lookupCase{hit("joe@example.com", "example.com/joe/")})
	})
}

// The .cf files are checked as Postfix reads them, with file:line.
func TestSQLServersConfigErrors(t *testing.T) {
	for _, c := range []struct{ typ, text, want string }{
		{"mysql", "hosts = x\nuser = u\ndbname = d\nquery = SELECT a FROM b WHERE c='%s'\ndbpath = /x\n", `:5: unknown mysql parameter "dbpath"`},
		{"mysql", "hosts = x\nquery = SELECT a FROM b WHERE c='%s'\n", "dbname: missing"},
		{"mysql", "dbname = d\nquery = SELECT a FROM b\n", `:2: query: "SELECT a FROM b" does not use the lookup key`},
		{"mysql", "dbname = d\nquery = SELECT a FROM b WHERE c='%s'\noption_file = /etc/my.cnf\n", ":3: option_file: MySQL option files are not read"},
		{"mysql", "dbname = d\nquery = SELECT a FROM b WHERE c='%s'\nhosts = inet:db:nope\n", `:3: hosts: "inet:db:nope": bad port`},
		{"mysql", "dbname = d\nquery = SELECT a FROM b WHERE c='%s'\nrequire_result_set = maybe\n", ":3: require_result_set"},
		{"pgsql", "dbname = d\nquery = SELECT a FROM b WHERE c='%s'\nhosts = db:0\n", `:3: hosts: "db:0": bad port`},
		{"pgsql", "dbname = d\nquery = SELECT a FROM b WHERE c='%x'\n", ":2: query: invalid query template"},
		{"pgsql", "dbname = d\nquery = SELECT a FROM b WHERE c='%s'\ntls_CAfile = /x\n", `:3: unknown pgsql parameter "tls_CAfile"`},
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "x.cf")
		if err := os.WriteFile(path, []byte(c.text), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Open(c.typ+":"+path, Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %q: %v; want %q", c.typ, c.text, err, c.want)
		}
	}
}

// freeLoopbackPort is "127.0.0.1:port" where nothing listens.
func freeLoopbackPort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// mysql: with the tls_* parameters talks TLS to MariaDB and checks its
// certificate: a user that MariaDB lets in over TLS only is let in, a
// server certificate from another CA is refused (a lookup failure,
// never "not found").
func TestSQLServersMySQLTLS(t *testing.T) {
	s := mariaDB(t)
	if _, err := s.Exec("", "CREATE USER IF NOT EXISTS 'tlsonly'@'127.0.0.1' IDENTIFIED BY 'tls-secret' REQUIRE SSL;\n"+
		"GRANT SELECT ON mail.* TO 'tlsonly'@'127.0.0.1';\n"); err != nil {
		t.Fatal(err)
	}
	conn := fmt.Sprintf("hosts = inet:%s\nuser = tlsonly\npassword = tls-secret\ndbname = mail\nquery = SELECT maildir FROM mailbox WHERE username='%%s'\n", s.Addr())
	other := certtest.NewCA(t, t.TempDir(), "other")
	for _, c := range []struct {
		name, tls string
		ok        bool
	}{
		{"CA and name checked", "tls_CAfile = " + sqlServers.mariaCA.CertFile + "\ntls_verify_cert = yes\n", true},
		{"CA checked", "tls_CAfile = " + sqlServers.mariaCA.CertFile + "\n", true},
		{"CA directory", "tls_CApath = " + filepath.Dir(sqlServers.mariaCA.CertFile) + "\ntls_verify_cert = yes\n", true},
		{"no TLS", "", false},
		{"another CA", "tls_CAfile = " + other.CertFile + "\n", false},
		{"another CA, name checked", "tls_CAfile = " + other.CertFile + "\ntls_verify_cert = yes\n", false},
		{"the system's CAs", "tls_verify_cert = yes\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			tb := openCF(t, "mysql", conn+c.tls, Options{})
			v, ok, err := tb.Lookup(context.Background(), "lisa@example.com")
			if c.ok {
				if err != nil || !ok || v != "example.com/lisa/" {
					t.Errorf("Lookup = %q, %v, %v; want example.com/lisa/", v, ok, err)
				}
				return
			}
			if !errors.Is(err, ErrLookup) {
				t.Errorf("Lookup = %q, %v, %v; want ErrLookup", v, ok, err)
			}
		})
	}
}

// A host whose connection failed is not asked again while another host
// answers (its last query worked, so it comes first, as in Postfix); when
// that one fails too, a minute later, the failed host is asked again.
func TestSQLServersDeadHostRetry(t *testing.T) {
	sqlServerCases(t, func(t *testing.T, typ string, s *sqltest.Server) {
		// The dead host accepts connections and closes them at once: a
		// server that fails every connection, counted.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var mu sync.Mutex
		tries := 0
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				tries++
				mu.Unlock()
				c.Close()
			}
		}()
		count := func() int {
			// Let the last close be counted.
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			return tries
		}
		var clock struct {
			sync.Mutex
			now time.Time
		}
		clock.now = time.Now()
		now := func() time.Time { clock.Lock(); defer clock.Unlock(); return clock.now }
		cf := strings.Replace(sqlCF(s), "hosts = inet:"+s.Addr(), "hosts = inet:"+ln.Addr().String()+" inet:"+s.Addr(), 1) +
			"query = SELECT maildir FROM mailbox WHERE username='%s'\n"
		// The order is random among hosts not tried yet: open the table
		// until a first lookup tries the dead one (and then the good
		// one).
		var tb Table
		first := 0
		for i := 0; first == 0; i++ {
			if i == 40 {
				t.Fatal("the dead host was never tried first")
			}
			tb = openCF(t, typ, cf, Options{Now: now})
			checkLookups(t, tb, []lookupCase{hit("lisa@example.com", "example.com/lisa/")})
			first = count()
		}
		for range 5 {
			checkLookups(t, tb, []lookupCase{hit("lisa@example.com", "example.com/lisa/")})
		}
		if n := count(); n != first {
			t.Errorf("the dead host was tried %d more times within the minute", n-first)
		}
		clock.Lock()
		clock.now = clock.now.Add(61 * time.Second)
		clock.Unlock()
		// The good host stays first (its last query worked); the dead
		// one is tried when the good one fails: stop it.
		s.Stop()
		restarted := false
		defer func() {
			if !restarted {
				if err := s.Start(); err != nil {
					t.Error(err)
				}
			}
		}()
		if _, _, err := tb.Lookup(context.Background(), "lisa@example.com"); !errors.Is(err, ErrLookup) {
			t.Errorf("both hosts down: %v; want ErrLookup", err)
		}
		if n := count(); n == first {
			t.Error("the dead host was not tried again after a minute")
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		restarted = true
		checkLookups(t, tb, []lookupCase{hit("lisa@example.com", "example.com/lisa/")})
	})
}
