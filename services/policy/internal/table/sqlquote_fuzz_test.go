package table

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mysqlLiteral reads a '...' literal at the start of s as MySQL's lexer
// does, and returns its value and what follows it.
func mysqlLiteral(s string, noBackslash bool) (value, rest string, ok bool) {
	if !strings.HasPrefix(s, "'") {
		return "", "", false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && !noBackslash:
			if i+1 == len(s) {
				return "", "", false
			}
			i++
			switch s[i] {
			case '0':
				b.WriteByte(0)
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 'Z':
				b.WriteByte(0x1a)
			case 't':
				b.WriteByte('\t')
			case 'b':
				b.WriteByte('\b')
			default:
				b.WriteByte(s[i])
			}
		case c == '\'':
			if i+1 < len(s) && s[i+1] == '\'' {
				b.WriteByte('\'')
				i++
				continue
			}
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}

// pgsqlLiteral reads a '...' literal at the start of s as PostgreSQL's
// lexer does, with standard_conforming_strings on or off.
func pgsqlLiteral(s string, standard bool) (value, rest string, ok bool) {
	if !strings.HasPrefix(s, "'") {
		return "", "", false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && !standard:
			if i+1 == len(s) {
				return "", "", false
			}
			i++
			b.WriteByte(s[i]) // the escapes the quoting makes: \\ only
		case c == '\'':
			if i+1 < len(s) && s[i+1] == '\'' {
				b.WriteByte('\'')
				i++
				continue
			}
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}

// A key quoted as Postfix's drivers quote it is, inside '...', exactly
// the key for the server's lexer in either of its modes: the literal
// ends where the quoting put its end, and nothing of the key is left
// outside it.
func FuzzSQLQuote(f *testing.F) {
	for _, s := range sqlAttacks {
		f.Add(s)
	}
	f.Add("lisa@example.com")
	f.Add("müller@example.com")
	f.Fuzz(func(t *testing.T, key string) {
		for _, mode := range []bool{false, true} {
			lit := "'" + mysqlQuote(key, mode) + "' AND 1"
			v, rest, ok := mysqlLiteral(lit, mode)
			if !ok || v != key || rest != " AND 1" {
				t.Fatalf("mysql (no backslash escapes %v): %q read back as %q, rest %q, %v", mode, key, v, rest, ok)
			}
			lit = "'" + pgsqlQuote(key, mode) + "' AND 1"
			v, rest, ok = pgsqlLiteral(lit, mode)
			if !ok || v != key || rest != " AND 1" {
				t.Fatalf("pgsql (standard strings %v): %q read back as %q, rest %q, %v", mode, key, v, rest, ok)
			}
		}
	})
}

// Any mysql: or pgsql: .cf file opens or fails with the file name; the
// hosts it names parse without a panic.
func FuzzSQLServerCF(f *testing.F) {
	f.Add("mysql", "hosts = unix:/run/mysqld/mysqld.sock, inet:db.example:3307 localhost\ndbname = mail\nquery = SELECT a FROM b WHERE c='%s'\n")
	f.Add("mysql", "hosts = [::1]:3306 db:mysql\nuser = u\npassword = p\ndbname = d\nquery = SELECT a FROM b WHERE c='%s'\nrequire_result_set = no\n")
	f.Add("mysql", "dbname = d\ntable = t\nselect_field = a\nwhere_field = b\ntls_verify_cert = yes\n")
	f.Add("pgsql", "hosts = postgresql://u:p@db/mail?sslmode=disable unix:/run/postgresql inet:db:5433\ndbname = mail\nquery = SELECT a FROM b WHERE c='%s'\n")
	f.Add("pgsql", "hosts = db:x\ndbname = d\nselect_function = f\n")
	f.Add("pgsql", "hosts = : :: inet: unix:\ndbname = d\nquery = %s\n")
	f.Fuzz(func(t *testing.T, typ, text string) {
		if typ != "mysql" && typ != "pgsql" {
			return
		}
		path := filepath.Join(t.TempDir(), "fuzz.cf")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		tb, err := Open(typ+":"+path, Options{})
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.cf") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		st := tb.(*sqlTable)
		if len(st.hosts) == 0 {
			t.Fatal("a table without hosts")
		}
		_ = st.Close()
	})
}
