package edge

import (
	"testing"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/maincf/maincftest"
)

// TestParametersReadOnlyInSettings: every parameter the edge owns is read
// in settings.go (or by pkg on its behalf, listed below), and no other
// source file of the package names a parameter of the catalogue: the rest
// of the edge sees only Settings.
func TestParametersReadOnlyInSettings(t *testing.T) {
	cat := Catalogue()
	// Read for the edge by pkg: process_name is set by pkg/daemon,
	// mydomain and mail_name are read only through the $name expansions
	// of pkg/maincf (smtpd_banner's default), and stress, set by the edge
	// itself or by -o stress in master.cf, through
	// maincf.Config.UnderStress and StressForced. (The parameters pkg
	// reads by name on the edge's behalf, pkg/daemon's logger and side
	// servers and pkg/grpctls's files, settings.go names for the restart
	// warnings: restartOnly.)
	elsewhere := map[string]bool{"process_name": true, "mydomain": true, "mail_name": true, maincf.StressParam: true}
	inSettings := maincftest.OnlyIn(t, cat, ".", "settings.go", nil)
	for _, name := range cat.Names() {
		d, _ := cat.Def(name)
		switch edge := d.Owner&maincf.Edge != 0; {
		case edge && !inSettings[name] && !elsewhere[name]:
			t.Errorf("%s is the edge's parameter but settings.go does not read it", name)
		case !edge && inSettings[name]:
			t.Errorf("settings.go reads %s, which the catalogue does not give the edge", name)
		}
	}
	for name := range elsewhere {
		if d, _ := cat.Def(name); d.Owner&maincf.Edge == 0 || inSettings[name] {
			t.Errorf("%s is listed as read elsewhere, but it is not the edge's or settings.go reads it", name)
		}
	}
	if len(inSettings) == 0 {
		t.Fatal("found no parameter names in settings.go")
	}
}
