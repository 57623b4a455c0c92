package ldaptest

import (
	"os/exec"
	"strings"
	"testing"
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
