package table

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/ldaptest"
)

func benchLookups(b *testing.B, tb Table, keys []string, wantOK bool) {
	b.Helper()
	ctx := context.Background()
	for _, k := range keys {
		if _, ok, _ := tb.Lookup(ctx, k); ok != wantOK {
			b.Fatalf("Lookup(%q) ok = %v, want %v", k, ok, wantOK)
		}
	}
	i := 0
	for b.Loop() {
		tb.Lookup(ctx, keys[i%len(keys)])
		i++
	}
}

// BenchmarkCIDR10k looks up addresses in a 10,000-rule cidr: table of
// /24, /32, /16 and IPv6 /48 rules.
func BenchmarkCIDR10k(b *testing.B) {
	var text strings.Builder
	for i := range 10_000 {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&text, "10.%d.%d.0/24 REJECT net %d\n", i/256%256, i%256, i)
		case 1:
			fmt.Fprintf(&text, "172.%d.%d.%d OK host %d\n", 16+i%16, i/256%256, i%256, i)
		case 2:
			fmt.Fprintf(&text, "[2001:db8:%x::]/48 REJECT v6 %d\n", i, i)
		case 3:
			fmt.Fprintf(&text, "100.%d.0.0/16 DUNNO %d\n", i%64, i)
		}
	}
	tb := benchOpen(b, "cidr", text.String())
	b.Run("hit", func(b *testing.B) {
		benchLookups(b, tb, []string{"10.0.4.9", "172.17.0.1", "2001:db8:2::1", "100.3.200.1", "10.38.252.1"}, true)
	})
	b.Run("miss", func(b *testing.B) {
		benchLookups(b, tb, []string{"192.0.2.1", "172.16.0.2", "2001:db8:3::1", "2001:db9::1", "not-an-ip"}, false)
	})
}

// BenchmarkRegexp1k looks up host names in a 1,000-rule regexp: table.
func BenchmarkRegexp1k(b *testing.B) {
	var text strings.Builder
	for i := range 1_000 {
		fmt.Fprintf(&text, "/^host[0-9]+\\.example%d\\.com$/ REJECT rule %d\n", i, i)
	}
	tb := benchOpen(b, "regexp", text.String())
	b.Run("hit-first", func(b *testing.B) {
		benchLookups(b, tb, []string{"host1.example0.com", "HOST42.Example0.com"}, true)
	})
	b.Run("hit-last", func(b *testing.B) {
		benchLookups(b, tb, []string{"host1.example999.com", "HOST42.Example999.com"}, true)
	})
	b.Run("miss", func(b *testing.B) {
		benchLookups(b, tb, []string{"mail.example.org", "host1.example1000.com", "hostx.example5.com", "smtp.gmail.com"}, false)
	})
}

// BenchmarkHash looks up keys in a 100,000-entry hash: table.
func BenchmarkHash(b *testing.B) {
	var text strings.Builder
	for i := range 100_000 {
		fmt.Fprintf(&text, "user%d@example%d.com OK %d\n", i, i%100, i)
	}
	tb := benchOpen(b, "hash", text.String())
	b.Run("hit", func(b *testing.B) {
		benchLookups(b, tb, []string{"user1@example1.com", "USER99999@Example99.COM"}, true)
	})
	b.Run("miss", func(b *testing.B) {
		benchLookups(b, tb, []string{"user1@example2.com", "nobody@example.org"}, false)
	})
}

func benchOpen(b *testing.B, typ, text string) Table {
	b.Helper()
	dir := b.TempDir()
	path := dir + "/" + typ
	if err := writeFile(path, text); err != nil {
		b.Fatal(err)
	}
	tb, err := Open(typ+":"+path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	return tb
}

// BenchmarkSQLiteLookup looks mailboxes up in a PostfixAdmin-like SQLite
// database of 10,000 mailboxes (an indexed column), as
// virtual_mailbox_maps = sqlite:... does at each RCPT TO.
func BenchmarkSQLiteLookup(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "db.sqlite")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		b.Fatal(err)
	}
	var ins strings.Builder
	ins.WriteString("CREATE TABLE mailbox (username TEXT PRIMARY KEY, maildir TEXT);\nBEGIN;\n")
	keys := make([]string, 0, 100)
	for i := range 10_000 {
		fmt.Fprintf(&ins, "INSERT INTO mailbox VALUES ('user%d@example.com', 'example.com/user%d/');\n", i, i)
		if i%100 == 0 {
			keys = append(keys, fmt.Sprintf("user%d@example.com", i))
		}
	}
	ins.WriteString("COMMIT;\n")
	if _, err := db.Exec(ins.String()); err != nil {
		b.Fatal(err)
	}
	db.Close()
	cf := filepath.Join(dir, "m.cf")
	if err := os.WriteFile(cf, []byte("dbpath = "+path+"\nquery = SELECT maildir FROM mailbox WHERE username='%s'\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	tb, err := Open("sqlite:"+cf, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer tb.(io.Closer).Close()
	benchLookups(b, tb, keys, true)
}

// BenchmarkLDAPLookup looks mailboxes up in a real slapd holding 2,000
// inetOrgPerson entries (mail indexed), as virtual_mailbox_maps =
// ldap:... does at each RCPT TO, over kept connections.
func BenchmarkLDAPLookup(b *testing.B) {
	var ldif strings.Builder
	ldif.WriteString(ldaptest.Entries)
	keys := make([]string, 0, 100)
	for i := range 2_000 {
		fmt.Fprintf(&ldif, "\ndn: uid=user%d,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: user%d\ncn: u\nsn: u\nmail: user%d@example.com\n", i, i, i)
		if i%20 == 0 {
			keys = append(keys, fmt.Sprintf("user%d@example.com", i))
		}
	}
	srv := ldaptest.Start(b, ldif.String())
	cf := filepath.Join(b.TempDir(), "m.cf")
	if err := os.WriteFile(cf, []byte("server_host = "+srv.URL()+"\nversion = 3\nsearch_base = dc=example, dc=com\n"+
		"query_filter = (mail=%s)\nresult_attribute = mail\nresult_format = %d/%u/\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	tb, err := Open("ldap:"+cf, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer tb.(io.Closer).Close()
	benchLookups(b, tb, keys, true)
}
