package importcf_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/smtpgate/smtpgate/services/policy/internal/importcf"
)

// services builds smtpgate-edge, smtpgate-policy and smtpgate-auth once
// for the package's tests and returns the directory holding them.
var services = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "importcf-bin")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", dir+"/",
		"github.com/smtpgate/smtpgate/services/edge/cmd/smtpgate-edge",
		"github.com/smtpgate/smtpgate/services/policy/cmd/smtpgate-policy",
		"github.com/smtpgate/smtpgate/services/auth/cmd/smtpgate-auth")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", &buildError{err: err, out: out}
	}
	return dir, nil
})

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string {
	return "building the services: " + e.err.Error() + "\n" + string(e.out)
}

// checkAll runs every service's own `check` on a written configuration.
func checkAll(t *testing.T, dir string) {
	t.Helper()
	bin, err := services()
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"smtpgate-edge", "smtpgate-policy", "smtpgate-auth"} {
		var out bytes.Buffer
		cmd := exec.Command(filepath.Join(bin, svc), "-c", dir, "check")
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			main, _ := os.ReadFile(filepath.Join(dir, "main.cf"))
			master, _ := os.ReadFile(filepath.Join(dir, "master.cf"))
			t.Errorf("%s check of the written configuration: %v\n%s\nmain.cf:\n%s\nmaster.cf:\n%s", svc, err, out.String(), main, master)
		}
	}
}

// TestWrittenPassesCheck: what import -o writes is accepted by the check
// of each of the three services, for Debian's stock configuration, the
// Dovecot and Cyrus SASL setups and the other test configurations.
func TestWrittenPassesCheck(t *testing.T) {
	if _, err := os.Stat("/etc/ssl/certs/ssl-cert-snakeoil.pem"); err != nil {
		t.Fatalf("Debian's stock main.cf names the snakeoil certificate of the ssl-cert package (scripts/deps --test installs it): %v", err)
	}
	for _, name := range []string{"debian", "dovecot", "cyrus", "postfix", "clean"} {
		t.Run(name, func(t *testing.T) {
			r, err := importcf.Import(importcf.Options{Main: filepath.Join("testdata", name, "main.cf")})
			if err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			if err := r.WriteConfig(out); err != nil {
				t.Fatal(err)
			}
			checkAll(t, out)
		})
	}
}

// TestWriteCopiesTables: import -o copies every lookup table the written
// configuration names, so that the directory passes check once the
// Postfix directory is gone; certificates stay where they are.
func TestWriteCopiesTables(t *testing.T) {
	src := t.TempDir()
	other := t.TempDir()
	files := map[string]string{
		filepath.Join(src, "clients.cidr"):    "192.0.2.0/24 REJECT\n",
		filepath.Join(src, "sender_access"):   "spam.example REJECT\n",
		filepath.Join(src, "helo.pcre"):       "/^localhost$/ REJECT\n",
		filepath.Join(src, "rcpt.regexp"):     "/^postmaster@/ OK\n",
		filepath.Join(src, "local_users"):     "alice x\n",
		filepath.Join(other, "sender_access"): "ham.example OK\n",
		filepath.Join(src, "submission.cidr"): "198.51.100.0/24 OK\n",
		filepath.Join(src, "main.cf"): "myhostname = mx.example.org\nrelayhost = [192.0.2.25]\nmynetworks = 127.0.0.0/8\n" +
			"strict_smtputf8 = no\ndisable_vrfy_command = no\nsmtpd_forbid_bare_newline = no\ncompatibility_level = 3.6\n" +
			"smtpd_tls_cert_file = /etc/ssl/certs/ssl-cert-snakeoil.pem\nsmtpd_tls_key_file = /etc/ssl/private/ssl-cert-snakeoil.key\n" +
			"local_recipient_maps = texthash:local_users\n" +
			"smtpd_restriction_classes = strict\nstrict = check_sender_access hash:" + filepath.Join(other, "sender_access") + ", reject\n" +
			"smtpd_client_restrictions = check_client_access cidr:" + filepath.Join(src, "clients.cidr") + "\n" +
			"smtpd_helo_restrictions = check_helo_access pcre:helo.pcre\n" +
			"smtpd_sender_restrictions =\n    check_sender_access proxy:hash:sender_access,\n    check_sender_access hash:sender_access\n" +
			"smtpd_recipient_restrictions = check_recipient_access regexp:rcpt.regexp, check_client_access cidr:clients.cidr\n" +
			"local_transport = smtp:[192.0.2.25]:25\n",
		filepath.Join(src, "master.cf"): "smtp inet n - y - - smtpd\n" +
			"submission inet n - y - - smtpd\n  -o smtpd_client_restrictions=check_client_access,cidr:submission.cidr,reject\n",
	}
	for name, text := range files {
		if err := os.WriteFile(name, []byte(text), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	r, err := importcf.Import(importcf.Options{Main: filepath.Join(src, "main.cf")})
	if err != nil {
		t.Fatal(err)
	}
	var report bytes.Buffer
	_ = r.WriteText(&report)
	if !r.OK() {
		t.Fatalf("not OK:\n%s", report.String())
	}
	out := filepath.Join(t.TempDir(), "smtpgate")
	if err := r.WriteConfig(out); err != nil {
		t.Fatal(err)
	}
	// The Postfix directories are gone: only the copies are left.
	for _, d := range []string{src, other} {
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}
	checkAll(t, out)
	main, err := os.ReadFile(filepath.Join(out, "main.cf"))
	if err != nil {
		t.Fatal(err)
	}
	master, err := os.ReadFile(filepath.Join(out, "master.cf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"local_recipient_maps = texthash:local_users\n",
		// Two tables of one name: the second copy gets a suffix.
		"strict = check_sender_access hash:sender_access, reject\n",
		"smtpd_client_restrictions = check_client_access cidr:clients.cidr\n",
		"smtpd_sender_restrictions = check_sender_access proxy:hash:sender_access.2, check_sender_access hash:sender_access.2\n",
		"smtpd_recipient_restrictions = check_recipient_access regexp:rcpt.regexp, check_client_access cidr:clients.cidr\n",
		// Keys and certificates are named where they are.
		"smtpd_tls_key_file = /etc/ssl/private/ssl-cert-snakeoil.key\n",
	} {
		if !strings.Contains(string(main), want) {
			t.Errorf("written main.cf lacks %q:\n%s", want, main)
		}
	}
	if !strings.Contains(string(master), "-o smtpd_client_restrictions=check_client_access,cidr:submission.cidr,reject\n") {
		t.Errorf("written master.cf:\n%s", master)
	}
	for name, want := range map[string]string{"clients.cidr": "192.0.2.0/24 REJECT\n", "sender_access": "ham.example OK\n",
		"sender_access.2": "spam.example REJECT\n", "helo.pcre": "/^localhost$/ REJECT\n", "rcpt.regexp": "/^postmaster@/ OK\n",
		"local_users": "alice x\n", "submission.cidr": "198.51.100.0/24 OK\n"} {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
	for _, name := range []string{"ssl-cert-snakeoil.key", "ssl-cert-snakeoil.pem"} {
		if _, err := os.Stat(filepath.Join(out, name)); err == nil {
			t.Errorf("%s copied", name)
		}
	}
}
