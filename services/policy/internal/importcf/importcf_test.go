package importcf_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	authparams "github.com/smtpgate/smtpgate/services/auth/params"
	"github.com/smtpgate/smtpgate/services/policy"
	"github.com/smtpgate/smtpgate/services/policy/internal/importcf"
)

// verdicts maps "file:line name" (name "" for a master.cf service line)
// to the verdict wanted.
type verdicts map[string]importcf.Verdict

func checkVerdicts(t *testing.T, r *importcf.Report, want verdicts) {
	t.Helper()
	got := verdicts{}
	for _, s := range r.Settings {
		got[s.Pos.String()+" "+s.Name] = s.Verdict
	}
	for k, v := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("%s: not reported", k)
		} else if g != v {
			t.Errorf("%s: %v, want %v", k, g, v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected %v", k, v)
		}
	}
}

func TestImportPostfix(t *testing.T) {
	r, err := importcf.Import(importcf.Options{Main: "testdata/postfix/main.cf"})
	if err != nil {
		t.Fatal(err)
	}
	if r.MasterPath != filepath.Join("testdata", "postfix", "master.cf") {
		t.Errorf("master.cf beside main.cf not read: %q", r.MasterPath)
	}
	T, I, C, U := importcf.Taken, importcf.Ignored, importcf.CannotHonour, importcf.Unknown
	B := importcf.BehavesDifferently
	// queue_directory is ignored unless smtpgate-auth reads it (for
	// relative smtpd_sasl_path sockets, as Postfix).
	queueDirectory := I
	if authCatalogue()["queue_directory"] {
		queueDirectory = T
	}
	checkVerdicts(t, r, verdicts{
		// Not set in main.cf: Postfix's defaults (no relayhost: MX
		// delivery; unknown local users refused; Cyrus SASL behind
		// the submission listener).
		"main.cf:0 relayhost":                      B,
		"main.cf:0 local_recipient_maps":           B,
		"main.cf:0 smtpd_sasl_type":                C,
		"main.cf:0 strict_smtputf8":                B,
		"main.cf:0 disable_vrfy_command":           B,
		"main.cf:0 smtpd_forbid_bare_newline":      B,
		"main.cf:3 smtpd_banner":                   T,
		"main.cf:4 biff":                           I,
		"main.cf:5 append_dot_mydomain":            I,
		"main.cf:6 readme_directory":               I,
		"main.cf:7 compatibility_level":            I,
		"main.cf:10 smtpd_tls_cert_file":           T,
		"main.cf:11 smtpd_tls_key_file":            T,
		"main.cf:12 smtpd_tls_security_level":      T,
		"main.cf:13 smtpd_tls_mandatory_protocols": C,
		"main.cf:14 smtp_tls_security_level":       I,
		"main.cf:16 myhostname":                    T,
		"main.cf:17 mydomain":                      T,
		"main.cf:18 myorigin":                      I,
		"main.cf:19 mydestination":                 B,
		"main.cf:20 mynetworks":                    T,
		"main.cf:22 relay_domains":                 B,
		"main.cf:23 inet_interfaces":               I,
		"main.cf:24 inet_protocols":                I,
		"main.cf:25 recipient_delimiter":           T,
		"main.cf:26 queue_directory":               queueDirectory,
		"main.cf:27 alias_maps":                    I,
		"main.cf:28 alias_database":                I,
		"main.cf:29 mailbox_size_limit":            I,
		"main.cf:31 smtpd_helo_required":           T,
		"main.cf:32 smtpd_relay_restrictions":      T,
		"main.cf:34 smtpd_recipient_restrictions":  C,
		"main.cf:37 smtpd_helo_restriction":        U,
		"main.cf:39 smtpd_milters":                 C,
		"main.cf:40 non_smtpd_milters":             I,
		"main.cf:41 header_checks":                 C,
		"master.cf:7 ":                             T,
		"master.cf:8 ":                             T,
		"master.cf:9 syslog_name":                  T,
		"master.cf:10 smtpd_tls_security_level":    T,
		"master.cf:11 smtpd_sasl_auth_enable":      C, // only Cyrus would check the passwords
		"master.cf:12 smtpd_tls_auth_only":         T,
		"master.cf:13 smtpd_client_restrictions":   T,
		"master.cf:14 smtpd_relay_restrictions":    T,
		"master.cf:15 milter_macro_daemon_name":    C,
		"master.cf:16 ":                            I,
		"master.cf:17 ":                            I,
		"master.cf:18 ":                            I,
		"master.cf:19 ":                            I,
		"master.cf:20 ":                            I,
	})
	if r.OK() || len(r.Problems) != 0 {
		t.Errorf("OK() = %v, problems %q", r.OK(), r.Problems)
	}
	for _, s := range r.Settings {
		if s.Name == "smtpd_recipient_restrictions" {
			want := []string{`main.cf:34: smtpd_recipient_restrictions: restriction "reject_unverified_sender" is not implemented yet`}
			if strings.Join(s.Errors, "\n") != strings.Join(want, "\n") {
				t.Errorf("smtpd_recipient_restrictions errors:\n%s\nwant:\n%s", strings.Join(s.Errors, "\n"), strings.Join(want, "\n"))
			}
		}
		if s.Name == "smtpd_helo_restriction" && !strings.Contains(s.Reason, "did you mean smtpd_helo_restrictions?") {
			t.Errorf("no suggestion: %s", s.Reason)
		}
	}
}

// write makes a directory holding the named files.
func write(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// cleanTail is a delivery that smtpgate takes as Postfix does it, and
// Postfix's defaults where smtpgate's differ.
const cleanTail = "mydestination =\nrelayhost = [192.0.2.25]:25\nmynetworks = 127.0.0.0/8\n" +
	"strict_smtputf8 = no\ndisable_vrfy_command = no\nsmtpd_forbid_bare_newline = no\ncompatibility_level = 3.6\n"

func TestImportCases(t *testing.T) {
	T, I, C, U := importcf.Taken, importcf.Ignored, importcf.CannotHonour, importcf.Unknown
	const base = "myhostname = mx.example.org\n"
	for _, tc := range []struct {
		name   string
		main   string
		master string
		want   verdicts
		// wantText are parts of the text report.
		wantText []string
	}{
		{
			name:     "last setting wins",
			main:     base + "mydomain = a.example\nmydomain = example.org\n",
			want:     verdicts{"main.cf:1 myhostname": T, "main.cf:2 mydomain": I, "main.cf:3 mydomain": T},
			wantText: []string{"main.cf:2: mydomain = a.example — set again at main.cf:3"},
		},
		{
			name: "restriction class taken",
			main: base + "smtpd_restriction_classes = strict\nstrict = reject_non_fqdn_sender\nsmtpd_sender_restrictions = strict\n",
			want: verdicts{"main.cf:1 myhostname": T, "main.cf:2 smtpd_restriction_classes": T, "main.cf:3 strict": T,
				"main.cf:4 smtpd_sender_restrictions": T},
			wantText: []string{"main.cf:3: strict = reject_non_fqdn_sender — restriction class"},
		},
		{
			name: "restriction class not implemented",
			main: base + "smtpd_restriction_classes = strict\nstrict = reject_non_fqdn_sender, reject_unverified_sender\n" +
				"smtpd_sender_restrictions = strict\n",
			// The class cannot be compiled, so neither the list of
			// classes naming it nor the list using it can be taken.
			want: verdicts{"main.cf:1 myhostname": T, "main.cf:2 smtpd_restriction_classes": C, "main.cf:3 strict": C,
				"main.cf:4 smtpd_sender_restrictions": C},
			wantText: []string{`main.cf:3: strict: restriction "reject_unverified_sender" is not implemented yet`},
		},
		{
			name:     "user-defined parameter",
			main:     base + "my_nets = 192.0.2.0/24\nmynetworks = $my_nets\n",
			want:     verdicts{"main.cf:1 myhostname": T, "main.cf:2 my_nets": C, "main.cf:3 mynetworks": C},
			wantText: []string{"used as $my_nets in mynetworks", "main.cf:3: mynetworks: "},
		},
		{
			name:     "table that cannot be read",
			main:     base + "smtpd_client_restrictions = check_client_access cidr:nosuch.cidr\n",
			want:     verdicts{"main.cf:1 myhostname": T, "main.cf:2 smtpd_client_restrictions": C},
			wantText: []string{"nosuch.cidr"},
		},
		{
			name:     "table entry needing a queue",
			main:     base + "smtpd_client_restrictions = check_client_access cidr:clients.cidr\n",
			want:     verdicts{"main.cf:1 myhostname": T, "main.cf:2 smtpd_client_restrictions": C},
			wantText: []string{"action HOLD needs a mail queue"},
		},
		{
			name: "mynetworks_style",
			main: base + "mynetworks_style = subnet\n",
			want: verdicts{"main.cf:1 myhostname": T, "main.cf:2 mynetworks_style": C},
		},
		{
			name: "mynetworks_style overridden",
			main: base + "mynetworks_style = subnet\nmynetworks = 127.0.0.0/8\n",
			want: verdicts{"main.cf:1 myhostname": T, "main.cf:2 mynetworks_style": I, "main.cf:3 mynetworks": T},
		},
		{
			name:     "typo",
			main:     base + "mydestinaton = example.org\n",
			want:     verdicts{"main.cf:1 myhostname": T, "main.cf:2 mydestinaton": U},
			wantText: []string{"did you mean mydestination?"},
		},
		{
			name: "postscreen in front of smtpd",
			main: base + "inet_interfaces = 127.0.0.1, [::1]\n",
			master: "smtp inet n - y - 1 postscreen\n  -o postscreen_greet_action=enforce\n  -o soft_bounce=yes\n" +
				"smtpd pass - - y - - smtpd\n  -o smtpd_helo_required=yes\n  -o mydomain=example.org\n  -v\n" +
				"dnsblog unix - - y - 0 dnsblog\n  -o smtpd_helo_required=no\n",
			want: verdicts{"main.cf:1 myhostname": T, "main.cf:2 inet_interfaces": I,
				"master.cf:1 ": C, "master.cf:2 postscreen_greet_action": C, "master.cf:3 soft_bounce": I,
				"master.cf:4 ": I, "master.cf:5 smtpd_helo_required": T, "master.cf:6 mydomain": C, "master.cf:7 ": I,
				"master.cf:8 ": I, "master.cf:9 smtpd_helo_required": I},
			wantText: []string{"per listener"},
		},
		{
			name:   "override naming an unknown restriction",
			main:   base,
			master: "2525 inet n - n - - smtpd\n  -o syslog_name=x -o smtpd_client_restrictions=permit_sasl_authenticated,rejct\n",
			want: verdicts{"main.cf:1 myhostname": T, "master.cf:1 ": T, "master.cf:2 syslog_name": T,
				"master.cf:2 smtpd_client_restrictions": C},
			wantText: []string{`service 2525: master.cf:2: smtpd_client_restrictions: unknown restriction "rejct"`},
		},
		{
			name:   "override referring to a Postfix parameter smtpgate lacks",
			main:   base + "mua_client_restrictions = permit_sasl_authenticated, reject\n",
			master: "submission inet n - n - - smtpd\n  -o smtpd_client_restrictions=$mua_client_restrictions\n",
			want: verdicts{"main.cf:1 myhostname": T, "main.cf:2 mua_client_restrictions": C, "master.cf:1 ": T,
				"master.cf:2 smtpd_client_restrictions": C},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every case ends with a destination smtpgate can take whole:
			// no local domains, the relayhost as the next hop.
			// (without the settings the case makes itself).
			n := strings.Count(tc.main, "\n")
			tail := ""
			for _, l := range strings.Split(strings.TrimSuffix(cleanTail, "\n"), "\n") {
				name, _, _ := strings.Cut(l, " ")
				if strings.HasPrefix(tc.main, name+" ") || strings.Contains(tc.main, "\n"+name+" ") ||
					name == "mynetworks" && strings.Contains(tc.main, "mynetworks_style") {
					continue
				}
				n++
				tail += l + "\n"
				tc.want[fmt.Sprintf("main.cf:%d %s", n, name)] = T
				if name == "compatibility_level" {
					tc.want[fmt.Sprintf("main.cf:%d %s", n, name)] = I
				}
			}
			files := map[string]string{"main.cf": tc.main + tail, "clients.cidr": "192.0.2.0/24 HOLD\n"}
			if tc.master != "" {
				files["master.cf"] = tc.master
			}
			dir := write(t, files)
			r, err := importcf.Import(importcf.Options{Main: filepath.Join(dir, "main.cf")})
			if err != nil {
				t.Fatal(err)
			}
			checkVerdicts(t, r, tc.want)
			var out bytes.Buffer
			if err := r.WriteText(&out); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.wantText {
				if !strings.Contains(out.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, out.String())
				}
			}
			// Whatever was taken is accepted by smtpgate.
			outDir := t.TempDir()
			if err := r.WriteConfig(outDir); err != nil {
				t.Fatal(err)
			}
			cfg, services, err := maincf.Load(policy.Catalogue(), outDir)
			if err == nil {
				_, err = policy.Load(cfg, services)
			}
			if err != nil && !strings.Contains(err.Error(), "clients.cidr") && !strings.Contains(err.Error(), "nosuch") {
				t.Errorf("the written configuration fails:\n%v", err)
			}
		})
	}
}

func TestWriteConfigClean(t *testing.T) {
	r, err := importcf.Import(importcf.Options{Main: "testdata/clean/main.cf", Master: "testdata/clean/master.cf"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		var out bytes.Buffer
		_ = r.WriteText(&out)
		t.Fatalf("clean configuration not OK:\n%s", out.String())
	}
	dir := t.TempDir()
	if err := r.WriteConfig(dir); err != nil {
		t.Fatal(err)
	}
	cfg, services, err := maincf.Load(policy.Catalogue(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Load(cfg, services); err != nil {
		t.Fatalf("policy check of the written configuration:\n%v", err)
	}
	var names []string
	for _, s := range services {
		var over []string
		for _, o := range s.Overrides {
			over = append(over, o.Name+"="+o.Value)
		}
		names = append(names, s.Name+" "+strings.Join(over, " "))
	}
	want := ":25 |127.0.0.1:587 syslog_name=postfix/submission smtpd_helo_required=no smtpd_relay_restrictions=permit_mynetworks, reject"
	if got := strings.Join(names, "|"); got != want {
		t.Errorf("listeners:\n%s\nwant:\n%s", got, want)
	}
	for _, name := range []string{"queue_directory", "alias_maps", "smtp_tls_security_level"} {
		if cfg.IsSet(name) {
			t.Errorf("%s written", name)
		}
	}
	if got := cfg.Get("smtpd_relay_restrictions"); got != "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination" {
		t.Errorf("smtpd_relay_restrictions = %q", got)
	}
}

func TestWriteConfigWithoutMaster(t *testing.T) {
	dir := write(t, map[string]string{"main.cf": "myhostname = mx.example.org\ninet_interfaces = loopback-only\n"})
	r, err := importcf.Import(importcf.Options{Main: filepath.Join(dir, "main.cf")})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := r.WriteConfig(out); err != nil {
		t.Fatal(err)
	}
	_, services, err := maincf.Load(policy.Catalogue(), out)
	if err != nil {
		t.Fatal(err)
	}
	if len(services) != 1 || services[0].Name != "127.0.0.1:25" {
		t.Errorf("services = %+v, want 127.0.0.1:25", services)
	}
}

// TestImportSetups: Debian's stock configuration and the two usual SASL
// setups on top of it. What matters is where the mail goes and who can
// log in; every other setting is as in TestWrittenPassesCheck.
func TestImportSetups(t *testing.T) {
	T, C, B := importcf.Taken, importcf.CannotHonour, importcf.BehavesDifferently
	// smtpd_sasl_type = dovecot is what smtpgate-auth's catalogue says:
	// cannot honour until it has the parameter.
	dovecotSASL := C
	if _, ok := authCatalogue()["smtpd_sasl_type"]; ok {
		dovecotSASL = T
	}
	type want struct {
		verdict importcf.Verdict
		reason  string // a part of it
	}
	debian := map[string]want{
		"main.cf:45 mydestination":            {B, "hands their mail to local(8)"},
		"main.cf:46 relayhost":                {B, "smtpgate looks up no MX records and hands that mail to smtpgate_next_hop, which the written main.cf leaves at its default maildir:var/maildir"},
		"main.cf:0 local_recipient_maps":      {B, "smtpgate cannot read proxy:unix:passwd.byname, $alias_maps, so the written main.cf leaves local_recipient_maps empty and smtpgate accepts every local part (every such message is written to the Maildir)"},
		"main.cf:36 smtp_tls_security_level":  {importcf.Ignored, ""},
		"main.cf:40 smtpd_relay_restrictions": {T, ""},
	}
	userdb := ""
	if authCatalogue()["smtpgate_dovecot_userdb_path"] {
		userdb = "with Dovecot, smtpgate_dovecot_userdb_path = private/auth-userdb asks Dovecot's userdb"
	}
	for _, tc := range []struct {
		dir  string
		want map[string]want
		// absent are settings not reported.
		absent []string
	}{
		// The pipe services' arguments are not listed one by one.
		{"debian", debian, []string{"master.cf:96 "}},
		{"dovecot", map[string]want{
			"main.cf:45 mydestination":              {B, "(no alias expansion, no .forward: the mailbox deliveries go where mailbox_transport sends them), to smtpgate_next_hop = lmtp+unix:///var/spool/postfix/private/dovecot-lmtp"},
			"main.cf:46 relayhost":                  {B, "hands that mail to smtpgate_next_hop = lmtp+unix:///var/spool/postfix/private/dovecot-lmtp (written from main.cf:58 mailbox_transport)"},
			"main.cf:58 mailbox_transport":          {T, "written as smtpgate_next_hop = lmtp+unix:///var/spool/postfix/private/dovecot-lmtp"},
			"main.cf:0 local_recipient_maps":        {B, "the next hop may still refuse it at RCPT TO"},
			"main.cf:54 smtpd_sasl_type":            {dovecotSASL, ""},
			"main.cf:0 smtpd_sasl_security_options": {B, "without TLS it offers no PLAIN or LOGIN"},
			"main.cf:56 smtpd_sasl_auth_enable":     {T, ""},
			"master.cf:24 smtpd_sasl_auth_enable":   {T, ""},
		}, nil},
		{"cyrus", map[string]want{
			"main.cf:45 mydestination":          {B, ""},
			"main.cf:54 smtpd_sasl_auth_enable": {C, "not written: only Cyrus SASL checks these passwords"},
			"main.cf:0 smtpd_sasl_type": {C, "AUTH on service smtp (master.cf:14): Postfix checks passwords with Cyrus SASL (saslauthd, sasldb2 or auxprop, " +
				"as smtpd.conf in cyrus_sasl_config_path says); smtpgate-auth cannot ask Cyrus or saslauthd"},
			"main.cf:58 cyrus_sasl_config_path": {C, ""},
		}, nil},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			r, err := importcf.Import(importcf.Options{Main: filepath.Join("testdata", tc.dir, "main.cf")})
			if err != nil {
				t.Fatal(err)
			}
			if r.OK() {
				t.Error("OK() = true")
			}
			got := map[string]*importcf.Setting{}
			for _, s := range r.Settings {
				got[s.Pos.String()+" "+s.Name] = s
			}
			for _, k := range tc.absent {
				if s, ok := got[k]; ok {
					t.Errorf("%s reported: %s = %s", k, s.Name, s.Value)
				}
			}
			if s := got["main.cf:0 local_recipient_maps"]; tc.dir == "dovecot" && s != nil && !strings.Contains(s.Reason, userdb) {
				t.Errorf("local_recipient_maps: reason lacks %q:\n%s", userdb, s.Reason)
			}
			for k, w := range tc.want {
				s, ok := got[k]
				switch {
				case !ok:
					t.Errorf("%s: not reported", k)
				case s.Verdict != w.verdict:
					t.Errorf("%s: %v, want %v (%s)", k, s.Verdict, w.verdict, s.Reason)
				case !strings.Contains(s.Reason, w.reason):
					t.Errorf("%s: reason lacks %q:\n%s", k, w.reason, s.Reason)
				}
			}
		})
	}
}

// authCatalogue is smtpgate-auth's parameters by name.
func authCatalogue() map[string]bool {
	m := map[string]bool{}
	for _, d := range authparams.Defs() {
		m[d.Name] = true
	}
	return m
}
