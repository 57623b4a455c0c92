package importcf_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/services/policy"
	"github.com/smtpgate/smtpgate/services/policy/internal/importcf"
)

// A site whose tables live in databases and servers is taken as it is:
// the tables keep their types, their .cf files are copied with -o (with
// their mode: they hold passwords) and named so that the written
// directory passes check; socketmap: and tcp: name servers and stay.
func TestImportDatabaseTables(t *testing.T) {
	cf := "hosts = 192.0.2.10\nuser = postfix\npassword = secret\ndbname = mail\nquery = SELECT 1 FROM t WHERE k='%s'\n"
	dir := write(t, map[string]string{
		"mysql-domains.cf":   cf,
		"pgsql-mailboxes.cf": cf,
		"sqlite-aliases.cf":  "dbpath = /var/lib/postfixadmin.db\nquery = SELECT goto FROM alias WHERE address='%s'\n",
	})
	main := "myhostname = mx.example.org\n" + cleanTail + strings.NewReplacer("DIR", dir).Replace(`
virtual_mailbox_domains = proxy:mysql:DIR/mysql-domains.cf
virtual_mailbox_maps = proxy:pgsql:DIR/pgsql-mailboxes.cf
virtual_alias_maps = sqlite:DIR/sqlite-aliases.cf
smtpd_sender_login_maps = socketmap:inet:127.0.0.1:9:logins
smtpd_recipient_restrictions = check_recipient_access tcp:127.0.0.1:9, permit
`)
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := importcf.Import(importcf.Options{Main: filepath.Join(dir, "main.cf")})
	if err != nil {
		t.Fatal(err)
	}
	var report bytes.Buffer
	_ = r.WriteText(&report)
	// virtual_mailbox_domains and virtual_alias_maps behave differently
	// for delivery, whatever their table type; none is refused.
	for _, s := range r.Settings {
		switch {
		case s.Verdict == importcf.CannotHonour:
			t.Errorf("%s: cannot honour:\n%s", s.Name, report.String())
		case s.Verdict != importcf.Taken && (s.Name == "virtual_mailbox_maps" || s.Name == "smtpd_sender_login_maps" || s.Name == "smtpd_recipient_restrictions"):
			t.Errorf("%s: %v, want taken:\n%s", s.Name, s.Verdict, report.String())
		}
	}
	out := t.TempDir()
	if err := r.WriteConfig(out); err != nil {
		t.Fatal(err)
	}
	cfg, services, err := maincf.Load(policy.Catalogue(), out)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"virtual_mailbox_domains": "proxy:mysql:./mysql-domains.cf",
		"virtual_mailbox_maps":    "proxy:pgsql:./pgsql-mailboxes.cf",
		"virtual_alias_maps":      "sqlite:./sqlite-aliases.cf",
		"smtpd_sender_login_maps": "socketmap:inet:127.0.0.1:9:logins",
	} {
		if got := cfg.Get(name); got != want {
			t.Errorf("written %s = %q, want %q", name, got, want)
		}
	}
	for _, f := range []string{"mysql-domains.cf", "pgsql-mailboxes.cf", "sqlite-aliases.cf"} {
		info, err := os.Stat(filepath.Join(out, f))
		if err != nil {
			t.Errorf("%s not copied: %v", f, err)
			continue
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s copied with mode %v, want 0600 as the original", f, info.Mode().Perm())
		}
	}
	// The written directory opens its tables (connecting to nothing).
	if _, err := policy.Load(cfg, services); err != nil {
		t.Fatalf("policy check of the written configuration:\n%v", err)
	}
}
