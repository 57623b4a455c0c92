package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/ldaptest"
)

// "smtpgate-policy table -q KEY ldap:x.cf" asks a real slapd as
// "postmap -q KEY ldap:x.cf" does: the value and exit 0, exit 1 when
// not found, exit 2 with a temporary lookup failure when slapd is down.
func TestTableQueryLDAP(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.Entries)
	dir := t.TempDir()
	cf := "server_host = " + srv.URL() + "\nversion = 3\nsearch_base = dc=example, dc=com\n" +
		"query_filter = (&(objectClass=nisMailAlias)(cn=%s))\nresult_attribute = rfc822MailMember\n"
	if err := os.WriteFile(filepath.Join(dir, "aliases.cf"), []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	q := func(key string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"table", "-c", dir, "-q", key, "proxy:ldap:./aliases.cf"}, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, out, errOut := q("Team@Example.com"); code != 0 || out != "lisa@example.com,john@example.com\n" {
		t.Errorf("-q team: exit %d, %q, %q", code, out, errOut)
	}
	if code, out, errOut := q("*@example.com"); code != 1 || out != "" {
		t.Errorf("-q *: exit %d, %q, %q; want 1 (not found)", code, out, errOut)
	}
	srv.Stop()
	if code, _, errOut := q("team@example.com"); code != 2 || !strings.Contains(errOut, "temporary lookup failure") {
		t.Errorf("slapd down: exit %d, %q; want 2 and a temporary lookup failure", code, errOut)
	}
}
