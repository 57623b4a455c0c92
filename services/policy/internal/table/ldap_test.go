package table

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/smtpgate/smtpgate/pkg/certtest"
	"github.com/smtpgate/smtpgate/pkg/ldaptest"
)

// openLDAPCF writes an ldap_table(5) .cf file with text and opens it.
func openLDAPCF(t *testing.T, dir, name, text string) Table {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	tb, err := Open("proxy:ldap:"+filepath.Join(dir, name), Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { tb.(io.Closer).Close() })
	return tb
}

// expectLookupError fails t unless looking key up fails temporarily.
func expectLookupError(t *testing.T, tb Table, key string) {
	t.Helper()
	v, ok, err := tb.Lookup(context.Background(), key)
	if !errors.Is(err, ErrLookup) || ok || v != "" {
		t.Errorf("Lookup(%q) = %q, %v, %v; want a temporary lookup failure", key, v, ok, err)
	}
}

// One slapd (ldaptest's sample directory, with a certificate of the
// test's CA) serves every case; the last one stops and restarts it.
func TestLDAPTable(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, dir, "ca")
	cert, key := ca.Server(t, "slapd")
	srv := ldaptest.StartWith(t, ldaptest.Options{LDIF: ldaptest.Entries, CertFile: cert, KeyFile: key})
	common := "server_host = " + srv.URL() + "\nsearch_base = dc=example, dc=com\nversion = 3\n"

	t.Run("TLS", func(t *testing.T) {
		bind := "bind_dn = " + ldaptest.ServiceDN + "\nbind_pw = " + ldaptest.ServicePW + "\nquery_filter = (mail=%s)\nresult_attribute = uid\n"
		base := "search_base = dc=example, dc=com\n"
		for name, text := range map[string]string{
			"starttls.cf": "server_host = " + srv.URL() + "\nstart_tls = yes\ntls_require_cert = yes\ntls_ca_cert_file = " + ca.CertFile + "\n",
			"ldaps.cf":    "server_host = " + srv.LDAPSURL() + "\ntls_require_cert = yes\ntls_ca_cert_dir = " + filepath.Dir(ca.CertFile) + "\n",
			// Postfix's default: the certificate is not verified.
			"noverify.cf": "server_host = " + srv.LDAPSURL() + "\n",
		} {
			checkLookups(t, openLDAPCF(t, dir, name, text+base+bind), []lookupCase{hit("lisa@example.com", "lisa")})
		}
		// Verified against the system's CAs, which do not know the
		// test's: the lookup fails, it never goes on unverified.
		for name, text := range map[string]string{
			"untrusted-starttls.cf": "server_host = " + srv.URL() + "\nstart_tls = yes\ntls_require_cert = yes\n",
			"untrusted-ldaps.cf":    "server_host = " + srv.LDAPSURL() + "\ntls_require_cert = yes\n",
		} {
			expectLookupError(t, openLDAPCF(t, dir, name, text+base+bind), "lisa@example.com")
		}
		// The certificate is for localhost and 127.0.0.1, not this name.
		other := openLDAPCF(t, dir, "wrongname.cf", "server_host = ldaps://127.0.0.2:"+fmt.Sprint(srv.TLSPort)+"\ntls_require_cert = yes\ntls_ca_cert_file = "+ca.CertFile+"\n"+base+bind)
		expectLookupError(t, other, "lisa@example.com")
	})

	t.Run("a server that does not answer", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var held []net.Conn
		var mu sync.Mutex
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				held = append(held, c) // read nothing, answer nothing
				mu.Unlock()
			}
		}()
		defer func() {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range held {
				c.Close()
			}
		}()
		silent := openLDAPCF(t, dir, "silent.cf", "server_host = "+ln.Addr().String()+"\ntimeout = 1\nquery_filter = (mail=%s)\n")
		expectLookupError(t, silent, "lisa@example.com")
		noBind := openLDAPCF(t, dir, "silentnobind.cf", "server_host = "+ln.Addr().String()+"\ntimeout = 1\nbind = no\nquery_filter = (mail=%s)\n")
		expectLookupError(t, noBind, "lisa@example.com")
	})

	t.Run("lookups at once share the connections", func(t *testing.T) {
		tb := openLDAPCF(t, dir, "parallel.cf", common+"query_filter = (mail=%s)\nresult_attribute = uid\n")
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key, want := "lisa@example.com", "lisa"
				if i%2 == 1 {
					key, want = "john@example.com", "john"
				}
				v, ok, err := tb.Lookup(context.Background(), key)
				if err != nil || !ok || v != want {
					errs <- fmt.Errorf("Lookup(%q) = %q, %v, %v", key, v, ok, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := len(tb.(*ldapTable).idle); n < 1 || n > 8 {
			t.Errorf("%d connections kept; want 1..8", n)
		}
	})

	t.Run("connections unused for 100 s are not reused", func(t *testing.T) {
		now := time.Now()
		if err := os.WriteFile(filepath.Join(dir, "idle.cf"), []byte(common+"query_filter = (mail=%s)\nresult_attribute = uid\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		tb, err := Open("ldap:"+filepath.Join(dir, "idle.cf"), Options{Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		defer tb.(io.Closer).Close()
		lt := tb.(*ldapTable)
		checkLookups(t, tb, []lookupCase{hit("lisa@example.com", "lisa")})
		first := lt.idle[0].Conn
		now = now.Add(99 * time.Second)
		checkLookups(t, tb, []lookupCase{hit("lisa@example.com", "lisa")})
		if lt.idle[0].Conn != first {
			t.Error("a connection unused for 99 s was not reused")
		}
		now = now.Add(100 * time.Second)
		checkLookups(t, tb, []lookupCase{hit("lisa@example.com", "lisa")})
		if len(lt.idle) != 1 || lt.idle[0].Conn == first {
			t.Errorf("a connection unused for 100 s was reused (%d kept)", len(lt.idle))
		}
		if !first.IsClosing() {
			t.Error("the connection unused for 100 s is still open")
		}
	})

	t.Run("mail site", func(t *testing.T) {
		domains := openLDAPCF(t, dir, "domains.cf", common+"query_filter = (associatedDomain=%s)\nresult_attribute = associatedDomain\n")
		mailboxes := openLDAPCF(t, dir, "mailboxes.cf", common+"query_filter = (&(objectClass=inetOrgPerson)(mail=%s))\nresult_attribute = mail\nresult_format = %d/%u/\n")
		aliases := openLDAPCF(t, dir, "aliases.cf", common+"query_filter = (&(objectClass=nisMailAlias)(cn=%s))\nresult_attribute = rfc822MailMember\n")
		logins := openLDAPCF(t, dir, "logins.cf", common+"query_filter = mail=%s\nresult_attribute = mailRoutingAddress\n")
		checkLookups(t, domains, []lookupCase{
			hit("example.com", "example.com"),
			hit("EXAMPLE.COM", "example.com"), // keys are case-folded
			miss("example.org"),
		})
		checkLookups(t, mailboxes, []lookupCase{
			hit("lisa@example.com", "example.com/lisa/"),
			hit("Lisa@Example.COM", "example.com/lisa/"),
			miss("nobody@example.com"),
			miss("team@example.com"),
		})
		checkLookups(t, aliases, []lookupCase{
			hit("team@example.com", "lisa@example.com,john@example.com"), // values joined
			miss("lisa@example.com"),
		})
		checkLookups(t, logins, []lookupCase{
			hit("john@example.com", "john@example.org"),
			hit("lisa@example.com", "lisa@example.com"),
			miss("nobody@example.com"),
		})
	})

	t.Run("ldapi, several servers, search base from the key", func(t *testing.T) {
		// The first server is down: the next one answers.
		byBase := openLDAPCF(t, dir, "bybase.cf", "server_host = 127.0.0.1:1, "+srv.LDAPIURL()+"\nversion = 3\n"+
			"search_base = uid=%u, ou=people, dc=example, dc=com\nscope = base\nquery_filter = (mail=%s)\n"+
			"result_attribute = uid\ndomain = example.com\n")
		checkLookups(t, byBase, []lookupCase{
			hit("lisa@example.com", "lisa"),
			miss("nobody@example.com"),      // the base made from the key does not exist: not found
			miss("lisa@example.org"),        // not in domain: not asked
			miss("lisa,ou=x@example.com"),   // the ',' is escaped in the DN
			miss("lisa@example.com@x.test"), // the domain is the last '@'
		})
	})

	t.Run("special, terminal and leaf attributes", func(t *testing.T) {
		groups := openLDAPCF(t, dir, "groups.cf", common+"query_filter = (&(objectClass=groupOfNames)(cn=%u))\n"+
			"result_attribute = mail\nspecial_result_attribute = member\n")
		// uid=gone does not exist: skipped, as Postfix does.
		checkLookups(t, groups, []lookupCase{hit("staff@example.com", "lisa@example.com,john@example.com")})
		terminal := openLDAPCF(t, dir, "terminal.cf", common+"query_filter = (|(cn=%u)(uid=%u))\n"+
			"result_attribute = mail\nspecial_result_attribute = member\nterminal_result_attribute = mailRoutingAddress\n")
		// john has a terminal attribute: only it is returned; the group
		// has none, and its members' terminal attributes are.
		checkLookups(t, terminal, []lookupCase{
			hit("john@x", "john@example.org"),
			hit("staff@x", "lisa@example.com,john@example.org"),
		})
		leaf := openLDAPCF(t, dir, "leaf.cf", common+"query_filter = (cn=%u)\n"+
			"result_attribute = mail\nspecial_result_attribute = member\nleaf_result_attribute = cn\n")
		// The group has members (not a leaf): its cn is not returned,
		// its members' are.
		checkLookups(t, leaf, []lookupCase{hit("staff@x", "Lisa,lisa@example.com,John,john@example.com")})
		// An LDAP URL value is searched with the URL's base, scope
		// and filter, for the URL's attributes that are result
		// attributes.
		url := openLDAPCF(t, dir, "url.cf", common+"query_filter = (uid=%u)\nresult_attribute = mail\nspecial_result_attribute = labeledURI\n")
		checkLookups(t, url, []lookupCase{hit("sales@x", "lisa@example.com"), hit("lisa@x", "lisa@example.com")})
	})

	t.Run("limits", func(t *testing.T) {
		one := openLDAPCF(t, dir, "one.cf", common+"query_filter = (cn=%s)\nresult_attribute = rfc822MailMember\nexpansion_limit = 1\n")
		checkLookups(t, one, []lookupCase{miss("nobody@example.com")})
		expectLookupError(t, one, "team@example.com") // two results
		size := openLDAPCF(t, dir, "size.cf", common+"query_filter = (&(objectClass=inetOrgPerson)(mail=*%d))\nresult_attribute = uid\nsize_limit = 1\n")
		expectLookupError(t, size, "x@example.com") // two entries
		checkLookups(t, size, []lookupCase{miss("x@example.net")})
	})

	t.Run("filter injection finds nothing", func(t *testing.T) {
		mailboxes := openLDAPCF(t, dir, "inject.cf", common+"query_filter = (&(objectClass=inetOrgPerson)(mail=%s))\nresult_attribute = uid\n")
		byUser := openLDAPCF(t, dir, "injectuser.cf", common+"query_filter = (uid=%u)\nresult_attribute = uid\n")
		for _, key := range []string{
			"*", "*@example.com", "lisa*", "*)(uid=*",
			"*)(|(uid=*", "lisa)(uid=*@example.com", `\2a@example.com`, `\`, `lisa\@example.com`, "lisa\x00@example.com",
			"(lisa@example.com)", "lisa@example.com\x00)(uid=*", "lisa\xff@example.com",
		} {
			for _, tb := range []Table{mailboxes, byUser} {
				if v, ok, err := tb.Lookup(context.Background(), key); ok || err != nil {
					t.Errorf("%s: Lookup(%q) = %q, %v, %v; want not found", tb.Name(), key, v, ok, err)
				}
			}
		}
		// After the last '@' is the domain: (uid=%u) sees "lisa" here,
		// and (mail=%s) the whole key, escaped.
		for _, key := range []string{"lisa@example.com)(uid=*"} {
			checkLookups(t, byUser, []lookupCase{hit(key, "lisa")})
			for _, tb := range []Table{mailboxes} {
				if v, ok, err := tb.Lookup(context.Background(), key); ok || err != nil {
					t.Errorf("%s: Lookup(%q) = %q, %v, %v; want not found", tb.Name(), key, v, ok, err)
				}
			}
		}
		checkLookups(t, byUser, []lookupCase{hit("lisa@example.com", "lisa")})
	})

	t.Run("binds", func(t *testing.T) {
		good := openLDAPCF(t, dir, "bind.cf", common+"bind_dn = "+ldaptest.ServiceDN+"\nbind_pw = "+ldaptest.ServicePW+"\nquery_filter = (mail=%s)\nresult_attribute = uid\n")
		checkLookups(t, good, []lookupCase{hit("lisa@example.com", "lisa")})
		wrong := openLDAPCF(t, dir, "wrongpw.cf", common+"bind_dn = "+ldaptest.ServiceDN+"\nbind_pw = not-the-password\nquery_filter = (mail=%s)\nresult_attribute = uid\n")
		expectLookupError(t, wrong, "lisa@example.com")
		expectLookupError(t, wrong, "nobody@example.com")
		// bind = no: no bind at all, anonymous searches.
		none := openLDAPCF(t, dir, "nobind.cf", common+"bind = no\nbind_dn = "+ldaptest.ServiceDN+"\nbind_pw = wrong\nquery_filter = (mail=%s)\nresult_attribute = uid\n")
		checkLookups(t, none, []lookupCase{hit("lisa@example.com", "lisa")})
		static := openLDAPCF(t, dir, "nobase.cf", "server_host = "+srv.URL()+"\nsearch_base = ou=none, dc=example, dc=com\nquery_filter = (mail=%s)\n")
		expectLookupError(t, static, "lisa@example.com") // a static base that does not exist
	})

	t.Run("server stopped and back", func(t *testing.T) {
		tb := openLDAPCF(t, dir, "restart.cf", common+"query_filter = (mail=%s)\nresult_attribute = uid\n")
		checkLookups(t, tb, []lookupCase{hit("lisa@example.com", "lisa")})
		srv.Stop()
		expectLookupError(t, tb, "lisa@example.com")
		expectLookupError(t, tb, "nobody@example.com")
		if err := tb.(Prober).Probe(context.Background()); err == nil {
			t.Error("Probe of a stopped server: no error")
		}
		srv.Restart(t)
		checkLookups(t, tb, []lookupCase{hit("lisa@example.com", "lisa"), miss("nobody@example.com")})
		// Kept connections that the restart killed are replaced: with
		// a full pool, no lookup after the restart fails.
		lt := tb.(*ldapTable)
		var conns []*ldap.Conn
		for range 8 {
			c, _, err := lt.conn(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			lt.put(c)
		}
		kept := len(conns)
		srv.Stop()
		srv.Restart(t)
		for range kept + 2 {
			checkLookups(t, tb, []lookupCase{hit("lisa@example.com", "lisa")})
		}
	})
}

// Bad .cf files are refused with the file:line of the setting.
func TestLDAPConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ text, want string }{
		{"server_host = ldap://x\nquery = (mail=%s)\n", `x.cf:2: unknown ldap parameter "query"`},
		{"bind = sasl\n", "x.cf:1: bind: sasl: SASL binds are not supported"},
		{"bind = maybe\n", `x.cf:1: bind: "maybe": want yes, no, simple or none`},
		{"scope = tree\n", `x.cf:1: scope: "tree": want sub, one or base`},
		{"version = 4\n", "x.cf:1: version: 4: want 2 or 3"},
		{"dereference = 4\n", "x.cf:1: dereference: 4: want 0"},
		{"query_filter = (mail=lisa)\n", `x.cf:1: query_filter: "(mail=lisa)" does not use the lookup key`},
		{"query_filter = (mail=%s\n", `x.cf:1: query_filter: "(mail=%s" is not an LDAP filter`},
		{"query_filter = (mail=%x)\n", "x.cf:1: query_filter: invalid query template"},
		{"\nserver_host = http://x\n", `x.cf:2: server_host: "http://x": want an ldap://`},
		{"chase_referrals = yes\n", "x.cf:1: chase_referrals: yes: referrals are not followed"},
		{"start_tls = sometimes\n", `x.cf:1: start_tls: "sometimes": want yes or no`},
		{"tls_ca_cert_file = /nonexistent.pem\n", "x.cf:1: tls_ca_cert_file: open /nonexistent.pem"},
		{"timeout = -1\n", "x.cf:1: timeout = \"-1\""},
	} {
		if err := os.WriteFile(filepath.Join(dir, "x.cf"), []byte(c.text), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Open("ldap:"+filepath.Join(dir, "x.cf"), Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v; want %q", c.text, err, c.want)
		}
	}
}

// The key is escaped as Postfix escapes it: RFC 4515 in the filter, RFC
// 4514 in the search base.
func TestLDAPQuoting(t *testing.T) {
	tb := &ldapTable{}
	var err error
	if tb.base, err = parseTemplates("uid=%u, ou=%d", "%s"); err != nil {
		t.Fatal(err)
	}
	if tb.filter, err = parseTemplates("(mail=%s)", "%s"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ key, base, filter string }{
		{"lisa@example.com", "uid=lisa, ou=example.com", "(mail=lisa@example.com)"},
		{"*)(uid=*@x", `uid=*)(uid=*, ou=x`, `(mail=\2A\29\28uid=\2A@x)`},
		{`a\b@x`, `uid=a\5Cb, ou=x`, `(mail=a\5Cb@x)`},
		{` #"+,;<>a@x`, `uid=\20\23\22\2B\2C\3B\3C\3Ea, ou=x`, `(mail= #"+,;<>a@x)`},
	} {
		base, filter, ok := tb.expand(c.key)
		if !ok || base != c.base || filter != c.filter {
			t.Errorf("expand(%q) = %q, %q, %v; want %q, %q", c.key, base, filter, ok, c.base, c.filter)
		}
	}
}

func TestLDAPURLParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want ldapURL
	}{
		{"ldap:///ou=people,dc=example,dc=com?mail?one?(uid=lisa)", ldapURL{dn: "ou=people,dc=example,dc=com", attrs: []string{"mail"}, scope: 1, filter: "(uid=lisa)"}},
		{"ldap://host/cn=x%20y,dc=example", ldapURL{dn: "cn=x y,dc=example", scope: 0, filter: "(objectClass=*)"}},
		{"<URL:ldap:///dc=x??sub?uid=a>", ldapURL{dn: "dc=x", scope: 2, filter: "(uid=a)"}},
	} {
		got, err := parseLDAPURL(c.in)
		if err != nil || got.dn != c.want.dn || got.scope != c.want.scope || got.filter != c.want.filter || strings.Join(got.attrs, ",") != strings.Join(c.want.attrs, ",") {
			t.Errorf("parseLDAPURL(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"ldap:///dc=x??tree", "ldap:///dc=x????!crit", "ldap:///%zz"} {
		if _, err := parseLDAPURL(bad); err == nil {
			t.Errorf("parseLDAPURL(%q): no error", bad)
		}
	}
}
