package importcf

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDefaultsAgree: every Postfix parameter smtpgate reads has Postfix's
// default (postconf -d of the Postfix that scripts/deps --test installs),
// or is listed in changedDefaults, so that the import reports it when
// main.cf leaves it to the default.
func TestDefaultsAgree(t *testing.T) {
	if _, err := exec.LookPath("postconf"); err != nil {
		t.Fatalf("postconf (Debian's postfix, scripts/deps --test) is needed: %v", err)
	}
	listed := map[string]bool{}
	for _, d := range changedDefaults {
		listed[d.name] = true
	}
	cat := catalogue()
	checked := 0
	for _, name := range cat.Names() {
		if !IsPostfixParam(name) {
			continue
		}
		out, err := exec.Command("postconf", "-dh", name).Output()
		if err != nil {
			t.Errorf("postconf -dh %s: %v", name, err)
			continue
		}
		checked++
		postfix := strings.TrimSuffix(string(out), "\n")
		d, _ := cat.Def(name)
		switch {
		case d.Default == postfix && listed[name]:
			t.Errorf("%s: listed in changedDefaults but both defaults are %q", name, postfix)
		case d.Default != postfix && !listed[name]:
			t.Errorf("%s: smtpgate's default %q, Postfix's %q: list it in changedDefaults with what changes", name, d.Default, postfix)
		}
	}
	if checked < 50 {
		t.Errorf("only %d parameters compared", checked)
	}
}
