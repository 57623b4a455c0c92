package table

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// postfixadminSchema is the part of PostfixAdmin's schema that Postfix's
// tables query, with a few rows.
const postfixadminSchema = `
CREATE TABLE domain (domain TEXT PRIMARY KEY, active INTEGER NOT NULL DEFAULT 1);
CREATE TABLE mailbox (username TEXT PRIMARY KEY, maildir TEXT, domain TEXT, active INTEGER NOT NULL DEFAULT 1);
CREATE TABLE alias (address TEXT, goto TEXT, domain TEXT, active INTEGER NOT NULL DEFAULT 1);
INSERT INTO domain VALUES ('example.com', 1), ('old.example', 0);
INSERT INTO mailbox VALUES ('lisa@example.com', 'example.com/lisa/', 'example.com', 1),
  ('joe@example.com', 'example.com/joe/', 'example.com', 1),
  ('gone@example.com', 'example.com/gone/', 'example.com', 0),
  ('o''brien@example.com', 'example.com/obrien/', 'example.com', 1);
INSERT INTO alias VALUES ('postmaster@example.com', 'lisa@example.com', 'example.com', 1),
  ('team@example.com', 'lisa@example.com', 'example.com', 1),
  ('team@example.com', 'joe@example.com', 'example.com', 1),
  ('team@example.com', NULL, 'example.com', 1),
  ('all@example.com', 'a@example.com', 'example.com', 1),
  ('all@example.com', 'b@example.com', 'example.com', 1),
  ('all@example.com', 'c@example.com', 'example.com', 1);
`

// newSQLiteDB writes the schema to a new SQLite file in dir and returns
// its path.
func newSQLiteDB(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "postfixadmin.sqlite")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(postfixadminSchema); err != nil {
		t.Fatal(err)
	}
	return path
}

// openSQLiteCF writes a .cf file with text and opens it.
func openSQLiteCF(t *testing.T, dir, name, text string) Table {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	tb, err := Open("proxy:sqlite:"+filepath.Join(dir, name), Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { tb.(io.Closer).Close() })
	return tb
}

func TestSQLitePostfixAdmin(t *testing.T) {
	dir := t.TempDir()
	db := newSQLiteDB(t, dir)
	domains := openSQLiteCF(t, dir, "domains.cf", "dbpath = "+db+"\nquery = SELECT domain FROM domain WHERE domain='%s' AND active = 1\n")
	mailboxes := openSQLiteCF(t, dir, "mailboxes.cf", "dbpath = "+db+"\n"+
		"query = SELECT maildir FROM mailbox\n    WHERE username='%s' AND active = '1'\n")
	aliases := openSQLiteCF(t, dir, "aliases.cf", "dbpath = "+db+"\nquery = SELECT goto FROM alias WHERE address='%s' AND active = 1\n")
	logins := openSQLiteCF(t, dir, "logins.cf", "dbpath = "+db+"\nquery = SELECT username FROM mailbox WHERE username='%s'\nresult_format = %u\n")
	byDomain := openSQLiteCF(t, dir, "bydomain.cf", "dbpath = "+db+"\nquery = SELECT username FROM mailbox WHERE domain='%d' AND username='%u@%d'\ndomain = example.com\n")

	checkLookups(t, domains, []lookupCase{
		{"example.com", "example.com", true},
		{"EXAMPLE.COM", "example.com", true}, // keys are case-folded
		{"old.example", "", false},           // inactive
		{"example.org", "", false},
	})
	checkLookups(t, mailboxes, []lookupCase{
		{"lisa@example.com", "example.com/lisa/", true},
		{"Lisa@Example.COM", "example.com/lisa/", true},
		{"gone@example.com", "", false},
		{"nobody@example.com", "", false},
		{"o'brien@example.com", "example.com/obrien/", true}, // a quote in the key is data
		{"@example.com", "", false},
	})
	checkLookups(t, aliases, []lookupCase{
		{"postmaster@example.com", "lisa@example.com", true},
		{"team@example.com", "lisa@example.com,joe@example.com", true}, // rows joined, NULL skipped
		{"nobody@example.com", "", false},
	})
	checkLookups(t, logins, []lookupCase{{"lisa@example.com", "lisa", true}})
	checkLookups(t, byDomain, []lookupCase{
		{"joe@example.com", "joe@example.com", true},
		{"joe@example.org", "", false}, // not in domain: not asked
		{"joe", "", false},
	})
}

// What a client can put in an address reaches the query only as data:
// quotes, LIKE wildcards, NUL and bytes that are not UTF-8 find nothing
// and change nothing.
func TestSQLiteInjection(t *testing.T) {
	dir := t.TempDir()
	db := newSQLiteDB(t, dir)
	mailboxes := openSQLiteCF(t, dir, "mailboxes.cf", "dbpath = "+db+"\nquery = SELECT maildir FROM mailbox WHERE username='%s'\n")
	like := openSQLiteCF(t, dir, "like.cf", "dbpath = "+db+"\nquery = SELECT maildir FROM mailbox WHERE username LIKE '%u@%d'\n")
	attacks := []string{
		"x'; DROP TABLE mailbox; --@example.com",
		"' OR '1'='1",
		"' OR 1=1 --@example.com",
		"x' UNION SELECT sql FROM sqlite_master --",
		"%@example.com",
		"_isa@example.com",
		"lisa\x00@example.com",
		"lisa@example.com\x00' OR '1'='1",
		"lisa\xff@example.com",
		"''@example.com",
		`\'@example.com`,
	}
	for _, key := range attacks {
		v, ok, err := mailboxes.Lookup(context.Background(), key)
		if ok || err != nil {
			t.Errorf("Lookup(%q) = %q, %v, %v; want not found", key, v, ok, err)
		}
	}
	// With LIKE in the query the postmaster asked for wildcards: %
	// matches, as it does in Postfix; the quote still cannot escape.
	for _, key := range []string{"x'; DROP TABLE mailbox; --@example.com", "' OR 1=1 --@example.com"} {
		if v, ok, err := like.Lookup(context.Background(), key); ok || err != nil {
			t.Errorf("LIKE Lookup(%q) = %q, %v, %v; want not found", key, v, ok, err)
		}
	}
	check, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	var n int
	if err := check.QueryRow("SELECT count(*) FROM mailbox").Scan(&n); err != nil || n != 4 {
		t.Fatalf("after the attacks: mailbox rows = %d, %v; want 4", n, err)
	}
	checkLookups(t, mailboxes, []lookupCase{{"lisa@example.com", "example.com/lisa/", true}})
}

// A database that cannot be read is a temporary failure, never "not
// found", and lookups recover when it can be read again.
func TestSQLiteFailures(t *testing.T) {
	dir := t.TempDir()
	db := newSQLiteDB(t, dir)
	mailboxes := openSQLiteCF(t, dir, "mailboxes.cf", "dbpath = "+db+"\nquery = SELECT maildir FROM mailbox WHERE username='%s'\n")
	aliases := openSQLiteCF(t, dir, "aliases.cf", "dbpath = "+db+"\nquery = SELECT goto FROM alias WHERE address='%s'\nexpansion_limit = 2\n")
	missing := openSQLiteCF(t, dir, "missing.cf", "dbpath = "+filepath.Join(dir, "none.sqlite")+"\nquery = SELECT maildir FROM mailbox WHERE username='%s'\n")
	badSQL := openSQLiteCF(t, dir, "bad.cf", "dbpath = "+db+"\nquery = SELECT maildir FROM nosuchtable WHERE username='%s'\n")
	ctx := context.Background()

	wantRetry := func(tb Table, key string) {
		t.Helper()
		v, ok, err := tb.Lookup(ctx, key)
		if !errors.Is(err, ErrLookup) || ok {
			t.Errorf("%s: Lookup(%q) = %q, %v, %v; want an ErrLookup", tb.Name(), key, v, ok, err)
		}
	}
	wantRetry(missing, "lisa@example.com")
	wantRetry(badSQL, "lisa@example.com")
	wantRetry(aliases, "all@example.com") // three rows, expansion_limit 2
	checkLookups(t, aliases, []lookupCase{{"team@example.com", "lisa@example.com,joe@example.com", true}})
	if _, err := os.Stat(filepath.Join(dir, "none.sqlite")); !os.IsNotExist(err) {
		t.Errorf("a missing database was created: %v", err)
	}

	// A writer holds the database locked: lookups fail (after the busy
	// timeout), then work again once it lets go.
	checkLookups(t, mailboxes, []lookupCase{{"lisa@example.com", "example.com/lisa/", true}})
	w, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	conn, err := w.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "UPDATE mailbox SET maildir = 'moved/' WHERE username = 'lisa@example.com'"); err != nil {
		t.Fatal(err)
	}
	wantRetry(mailboxes, "lisa@example.com")
	wantRetry(mailboxes, "nobody@example.com")
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	checkLookups(t, mailboxes, []lookupCase{{"lisa@example.com", "moved/", true}, {"nobody@example.com", "", false}})

	// A deadline that has passed fails the lookup too.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := mailboxes.Lookup(done, "lisa@example.com"); !errors.Is(err, ErrLookup) {
		t.Errorf("cancelled lookup: err = %v; want an ErrLookup", err)
	}
}

func TestSQLiteOpenErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct{ text, want string }{
		{"dbpath = /x\nhosts = db.example\nquery = %s\n", "b.cf:2: unknown sqlite parameter \"hosts\""},
		{"query = SELECT a FROM t WHERE b='%s'\n", "b.cf: dbpath: missing"},
		{"dbpath = /x\nquery = SELECT 1\n", "b.cf:2: query: \"SELECT 1\" does not use the lookup key"},
	} {
		p := write("b.cf", c.text)
		_, err := Open("sqlite:"+p, Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v; want %q", c.text, err, c.want)
		}
	}
	if _, err := Open("sqlite:"+filepath.Join(dir, "none.cf"), Options{}); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing .cf: err = %v", err)
	}
	if _, err := Open("sqlite:mailboxes", Options{}); err == nil || !strings.Contains(err.Error(), "name the configuration file") {
		t.Errorf("main.cf-style name: err = %v", err)
	}
	// Relative names are in Options.Dir, the .cf file's dbpath too.
	db := newSQLiteDB(t, dir)
	write("rel.cf", "dbpath = "+filepath.Base(db)+"\nquery = SELECT maildir FROM mailbox WHERE username='%s'\n")
	tb, err := Open("sqlite:./rel.cf", Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.(io.Closer).Close()
	checkLookups(t, tb, []lookupCase{{"joe@example.com", "example.com/joe/", true}})
}

// Probe is what check reports as a warning; Close ends the table.
func TestSQLiteProbeAndClose(t *testing.T) {
	dir := t.TempDir()
	db := newSQLiteDB(t, dir)
	good := openSQLiteCF(t, dir, "good.cf", "dbpath = "+db+"\nquery = SELECT maildir FROM mailbox WHERE username='%s'\n")
	missing := openSQLiteCF(t, dir, "missing.cf", "dbpath = "+filepath.Join(dir, "none.sqlite")+"\nquery = SELECT maildir FROM mailbox WHERE username='%s'\n")
	notDB := filepath.Join(dir, "text.sqlite")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("not a database\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := openSQLiteCF(t, dir, "garbage.cf", "dbpath = "+notDB+"\nquery = SELECT maildir FROM mailbox WHERE username='%s'\n")
	ctx := context.Background()
	if err := good.(Prober).Probe(ctx); err != nil {
		t.Errorf("probe of a good database: %v", err)
	}
	for _, tb := range []Table{missing, garbage} {
		if err := tb.(Prober).Probe(ctx); err == nil {
			t.Errorf("probe of %s: no error", tb.Name())
		}
		if _, _, err := tb.Lookup(ctx, "lisa@example.com"); !errors.Is(err, ErrLookup) {
			t.Errorf("%s: lookup err = %v; want an ErrLookup", tb.Name(), err)
		}
	}
	if err := good.(io.Closer).Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := good.Lookup(ctx, "lisa@example.com"); !errors.Is(err, ErrLookup) {
		t.Errorf("lookup after Close: err = %v; want an ErrLookup", err)
	}
}
