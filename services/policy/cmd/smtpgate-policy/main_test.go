package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/logtest"
)

const goodMain = `myhostname = mail.example.org
mydestination = example.org
smtpgate_policy_listen = 127.0.0.1:0
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
`

func configDir(t *testing.T, mainCF, masterCF string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCF), 0o600); err != nil {
		t.Fatal(err)
	}
	if masterCF != "" {
		if err := os.WriteFile(filepath.Join(dir, "master.cf"), []byte(masterCF), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name       string
		main       string
		master     string
		args       []string
		wantCode   int
		wantStderr []string
	}{
		{name: "good", main: goodMain, master: "127.0.0.1:2587 inet n - n - - smtpd\n  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n", args: []string{"check"}},
		{name: "unknown restriction", main: goodMain + "smtpd_recipient_restrictions = permit_mynetwork\n", args: []string{"check"}, wantCode: 1,
			wantStderr: []string{`main.cf:5: smtpd_recipient_restrictions: unknown restriction "permit_mynetwork"`}},
		{name: "unknown parameter", main: goodMain + "smtpd_relay_restriction = reject\n", args: []string{"check"}, wantCode: 1,
			wantStderr: []string{`main.cf:5: unknown parameter "smtpd_relay_restriction"`}},
		{name: "open relay refused", main: goodMain + "smtpd_relay_restrictions = permit_mynetworks\n", args: []string{"check"}, wantCode: 1,
			wantStderr: []string{"main.cf:5: in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of"}},
		{name: "bad listener override", main: goodMain, master: "127.0.0.1:2587 inet n - n - - smtpd\n  -o soft_bounce=maybe\n", args: []string{"check"}, wantCode: 1,
			wantStderr: []string{"master.cf:1: service 127.0.0.1:2587: -o soft_bounce=maybe"}},
		{name: "usage", main: goodMain, args: []string{"serve"}, wantCode: 2, wantStderr: []string{"usage: smtpgate-policy [-c CONFIG_DIR] [check]\n       smtpgate-policy import [-o DIR] MAIN_CF [MASTER_CF]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := configDir(t, tc.main, tc.master)
			var stderr bytes.Buffer
			code := run(context.Background(), append([]string{"-c", dir}, tc.args...), io.Discard, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr.String())
			}
			for _, want := range tc.wantStderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if len(tc.wantStderr) == 0 && stderr.Len() != 0 {
				t.Errorf("unexpected stderr:\n%s", stderr.String())
			}
		})
	}
}

func TestMissingConfig(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"-c", t.TempDir(), "check"}, io.Discard, &stderr); code != 1 {
		t.Errorf("exit %d, want 1; stderr:\n%s", code, stderr.String())
	}
}

func TestServeUntilCancelled(t *testing.T) {
	dir := configDir(t, goodMain, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr logtest.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-c", dir}, io.Discard, &stderr) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), `msg=listening`) {
		if time.Now().After(deadline) {
			t.Fatalf("no listening line:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d, want 0:\n%s", code, stderr.String())
	}
	for _, want := range []string{"msg=configuration", "addr=127.0.0.1:", "msg=stopped"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, stderr.String())
		}
	}
}

// importData is the Postfix configuration the import tests read.
const importData = "../../internal/importcf/testdata/"

func TestImport(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"import", importData + "postfix/main.cf"}, &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit %d, want 1; stderr:\n%s", code, stderr.String())
	}
	out := stdout.String()
	// Each wanted line must sit in its verdict's group.
	groups := map[string]string{}
	group := ""
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasSuffix(l, "):") && !strings.HasPrefix(l, " "):
			group, _, _ = strings.Cut(l, " (")
		case strings.HasPrefix(l, "  ") && !strings.HasPrefix(l, "      "):
			groups[strings.TrimSpace(l)] = group
		}
	}
	for _, tc := range []struct{ group, line string }{
		{"taken", "main.cf:16: myhostname = mail.example.org — read by smtpgate-edge+policy+auth"},
		{"taken", "main.cf:17: mydomain = example.org — read by smtpgate-edge+policy+auth"},

		{"taken", "main.cf:20: mynetworks = 127.0.0.0/8 [::1]/128 192.0.2.0/24 — read by smtpgate-policy"},

		{"taken", "main.cf:31: smtpd_helo_required = yes — read by smtpgate-edge"},
		{"taken", "main.cf:32: smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination — read by smtpgate-policy"},
		{"taken", "master.cf:8: submission inet n - y - - smtpd — smtpd listener"},
		{"cannot honour", "master.cf:11: smtpd_sasl_auth_enable = yes (service submission) — not written: only Cyrus SASL checks these passwords"},
		{"ignored", "main.cf:27: alias_maps = hash:/etc/aliases — local delivery: done by the next hop, not by an SMTP front door"},
		{"ignored", "main.cf:14: smtp_tls_security_level = may — SMTP/LMTP client: smtpgate's hand-off is set with smtpgate_next_hop"},
		{"ignored", "master.cf:16: pickup unix n - y 60 1 pickup — not an SMTP listener (unix pickup)"},
		{"cannot honour", "main.cf:34: smtpd_recipient_restrictions = check_sender_access hash:sender_access, reject_unverified_sender — smtpgate refuses it:"},
		{"cannot honour", "main.cf:39: smtpd_milters = inet:localhost:8891 — milters are not supported"},
		{"cannot honour", "main.cf:41: header_checks = regexp:/etc/postfix/header_checks — no content inspection in the edge: the message goes to the next hop as received; check it there"},
		{"cannot honour", "master.cf:15: milter_macro_daemon_name = ORIGINATING (service submission) — milters are not supported"},
		{"unknown", "main.cf:37: smtpd_helo_restriction = reject_invalid_helo_hostname — not a Postfix 3.7 parameter (did you mean smtpd_helo_restrictions?)"},
		// Where the mail goes and who may log in (the start of each line).
		{"behaves differently", "main.cf:19: mydestination = $myhostname, localhost.$mydomain, $mydomain — smtpgate-policy takes these as its local domains, but where Postfix hands their mail to local(8)"},
		{"behaves differently", "main.cf:22: relay_domains = example.net — smtpgate-policy relays for these domains, but where Postfix sends their mail to the MX hosts"},
		{"behaves differently", "main.cf: relayhost not set (Postfix's default: empty) — Postfix delivers mail for other domains"},
		{"behaves differently", "main.cf: local_recipient_maps not set (Postfix's default: proxy:unix:passwd.byname $alias_maps) — Postfix refuses RCPT TO"},
		{"cannot honour", "main.cf: smtpd_sasl_type not set (Postfix's default: cyrus) — AUTH on service submission (master.cf:8): Postfix checks passwords with Cyrus SASL"},
	} {
		got, ok := groups[tc.line]
		for l, g := range groups {
			if !ok && strings.HasPrefix(l, tc.line) {
				got, ok = g, true
			}
		}
		if !ok {
			t.Errorf("no line %q", tc.line)
		} else if got != tc.group {
			t.Errorf("%q under %q, want %q", tc.line, got, tc.group)
		}
	}
	// restriction.Compile's exact complaint, under its setting.
	if want := "\n      main.cf:34: smtpd_recipient_restrictions: restriction \"reject_unverified_sender\" is not implemented yet\n"; !strings.Contains(out, want) {
		t.Errorf("no compile error %q in:\n%s", want, out)
	}
	if !strings.Contains(out, "7 behave differently, 7 cannot honour, 1 unknown") {
		t.Errorf("no summary in:\n%s", out)
	}
}

func TestImportWritesConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "smtpgate")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"import", "-o", dir, importData + "clean/main.cf", importData + "clean/master.cf"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, want 0; stdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "smtpgate can take this configuration.") {
		t.Errorf("stdout:\n%s", stdout.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"-c", dir, "check"}, io.Discard, &stderr); code != 0 {
		t.Errorf("check of the written configuration: exit %d:\n%s", code, stderr.String())
	}
}

// TestImportBehavesDifferently: a configuration that smtpgate takes, but
// whose mail would go elsewhere, exits 1.
func TestImportBehavesDifferently(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = mx.example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"import", filepath.Join(dir, "main.cf")}, &stdout, &stderr); code != 1 {
		t.Errorf("exit %d, want 1; stdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	// Where the mail goes (relayhost, mydestination, local_recipient_maps),
	// four defaults (mynetworks, strict_smtputf8, disable_vrfy_command,
	// smtpd_forbid_bare_newline) and three of compatibility_level 0
	// (smtputf8_enable, smtpd_relay_restrictions, relay_domains).
	for _, want := range []string{"\nbehaves differently (10):\n", "10 behave differently, 0 cannot honour, 0 unknown",
		"main.cf: mynetworks not set (Postfix's default: the subnets of the machine's interfaces (mynetworks_style = subnet))"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestImportUsage(t *testing.T) {
	for _, args := range [][]string{{"import"}, {"import", "a", "b", "c"}, {"import", "-x", "main.cf"}} {
		var stderr bytes.Buffer
		if code := run(context.Background(), args, io.Discard, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
		if !strings.Contains(stderr.String(), "usage: smtpgate-policy import [-o DIR] MAIN_CF [MASTER_CF]") ||
			!strings.Contains(stderr.String(), "1 anything behaves differently, cannot be honoured or is unknown") {
			t.Errorf("%q: stderr:\n%s", args, stderr.String())
		}
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"import", filepath.Join(t.TempDir(), "main.cf")}, io.Discard, &stderr); code != 1 {
		t.Errorf("missing main.cf: exit %d, want 1:\n%s", code, stderr.String())
	}
}
