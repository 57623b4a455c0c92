package ldaptest

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/certtest"
)

// The sample directory answers ldapsearch on both listeners, stops, and
// answers again after a restart on the same port.
func TestStartStopRestart(t *testing.T) {
	s := Start(t, Entries)
	search := func(uri string) (string, error) {
		out, err := exec.Command("ldapsearch", "-x", "-LLL", "-H", uri, "-b", Suffix, "(mail=lisa@example.com)", "uid").CombinedOutput()
		return string(out), err
	}
	for _, uri := range []string{s.URL(), s.LDAPIURL()} {
		out, err := search(uri)
		if err != nil || !strings.Contains(out, "uid: lisa") {
			t.Fatalf("ldapsearch -H %s: %v\n%s", uri, err, out)
		}
	}
	s.Stop()
	if answers(s.Port) {
		t.Fatal("slapd answers after Stop")
	}
	s.Restart(t)
	if out, err := search(s.URL()); err != nil || !strings.Contains(out, "uid: lisa") {
		t.Fatalf("after restart: %v\n%s", err, out)
	}
}

// With a certificate, slapd answers ldaps:// and StartTLS, verified
// against the test's CA.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, dir, "ca")
	cert, key := ca.Server(t, "slapd")
	s := StartWith(t, Options{LDIF: Entries, CertFile: cert, KeyFile: key})
	for _, args := range [][]string{{"-H", s.LDAPSURL()}, {"-ZZ", "-H", s.URL()}} {
		cmd := exec.Command("ldapsearch", append(args, "-x", "-LLL", "-b", Suffix, "(uid=john)", "mail")...)
		cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+ca.CertFile, "LDAPTLS_REQCERT=demand")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "mail: john@example.com") {
			t.Errorf("ldapsearch %v: %v\n%s", args, err, out)
		}
	}
}
