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
