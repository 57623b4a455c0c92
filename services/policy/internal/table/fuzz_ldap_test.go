package table

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
)

// FuzzLDAPExpansion expands arbitrary ldap: search bases, filters and
// result formats with arbitrary keys; nothing may panic. With the usual
// "(mail=%s)" filter and "uid=%u,..." base, whatever the key holds, the
// filter stays one equality match whose value is the key, and the base
// one DN whose first value is the key's local part: the key is data,
// never filter or DN syntax.
func FuzzLDAPExpansion(f *testing.F) {
	f.Add("uid=%u,ou=people,dc=example,dc=com", "(&(objectClass=inetOrgPerson)(mail=%s))", "%d/%u/", "*)(uid=*@example.com", "v@example.org")
	f.Add("dc=%2,dc=%1", "mail=%s", "%s", "lisa@mail.example.com", "x")
	f.Add("", "(|(mail=%s)(mailLocalAddress=%u@%D))", "%S %U %D", `\2a@example.com`, "@")
	f.Add("ou=%d", "(cn=%s)", "%u", " #lisa, \"x\"+<y>;z\\@e", "")
	f.Fuzz(func(t *testing.T, base, filter, result, key, value string) {
		tb := &ldapTable{}
		var err error
		if tb.base, err = parseTemplates(base, "%s"); err != nil {
			return
		}
		if tb.filter, err = parseTemplates(filter, result); err != nil {
			return
		}
		tb.expand(key)
		var b strings.Builder
		tb.filter.appendResult(&b, value, key)

		if !utf8.ValidString(key) || strings.IndexByte(key, 0) >= 0 {
			return // Lookup never expands such keys
		}
		usual := &ldapTable{}
		usual.base, _ = parseTemplates("uid=%u,ou=people,dc=example,dc=com", "%s")
		usual.filter, _ = parseTemplates("(mail=%s)", "%s")
		gotBase, gotFilter, ok := usual.expand(key)
		if !ok {
			return // no local part: not looked up
		}
		p, err := ldap.CompileFilter(gotFilter)
		if err != nil {
			t.Fatalf("key %q: filter %q does not compile: %v", key, gotFilter, err)
		}
		if p.Tag != ldap.FilterEqualityMatch || len(p.Children) != 2 {
			t.Fatalf("key %q: filter %q is %s, not one equality match", key, gotFilter, ldap.FilterMap[uint64(p.Tag)])
		}
		if v := p.Children[1].Data.String(); v != key {
			t.Fatalf("key %q: filter %q matches value %q", key, gotFilter, v)
		}
		dn, err := ldap.ParseDN(gotBase)
		if err != nil {
			t.Fatalf("key %q: base %q is not a DN: %v", key, gotBase, err)
		}
		user, _, _ := splitAt(key)
		if len(dn.RDNs) != 4 || len(dn.RDNs[0].Attributes) != 1 || dn.RDNs[0].Attributes[0].Value != user {
			t.Fatalf("key %q: base %q parses as %v", key, gotBase, dn)
		}
	})
}

// FuzzLDAPConfig reads arbitrary .cf text as an ldap_table(5) file:
// nothing may panic, errors name the file, and a table that opens has a
// server, a filter that uses the key, and expands a plain address into
// a filter go-ldap compiles. (The TLS file settings are dropped: the
// fuzzer must not make the test read arbitrary files.)
func FuzzLDAPConfig(f *testing.F) {
	f.Add("server_host = ldap://a ldaps://b:636, c:389 d ldapi://%2Frun%2Fldapi\nsearch_base = dc=%2, dc=%1\nquery_filter = mail=%s\n")
	f.Add("bind = sasl\nscope = one\nversion = 4\ndereference = 9\nresult_attribute =\nspecial_result_attribute = member\n")
	f.Add("query_filter = (&(objectClass=*)(|(mail=%s)(uid=%u)))\nresult_format = %d/%u/\nexpansion_limit = 2\nsize_limit = 1\ndomain = example.com, !b.example\n")
	f.Add("timeout = 0\nstart_tls = yes\ntls_require_cert = no\nchase_referrals = no\ncache = yes\nserver_port = 99999\n")
	f.Fuzz(func(t *testing.T, text string) {
		cf, err := parseCF("ldap", "fuzz.cf", []byte(text), LDAPParams)
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.cf") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, n := range []string{"tls_ca_cert_file", "tls_ca_cert_dir", "tls_cert", "tls_key"} {
			delete(cf.params, n)
		}
		tb, err := newLDAPTable("ldap:fuzz.cf", cf, Options{}.withDefaults())
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.cf") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if len(tb.urls) == 0 || !tb.filter.dynamic {
			t.Fatalf("opened without a server or a key in the filter: %+v", tb)
		}
		if _, filter, ok := tb.expand("lisa@example.com"); ok {
			if _, err := ldap.CompileFilter(filter); err != nil {
				t.Fatalf("filter %q: %v", filter, err)
			}
		}
	})
}
