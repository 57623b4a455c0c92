package auth

import (
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/daemon"
	"github.com/smtpgate/smtpgate/pkg/grpcserver"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/maincf/maincftest"
)

// TestParametersReadOnlyInSettings: every parameter that only the auth
// service owns is read in settings.go, and no other source file of the
// package names a parameter of the catalogue: the rest of the service
// sees only Settings.
func TestParametersReadOnlyInSettings(t *testing.T) {
	cat := Catalogue()
	// Read for the auth service by pkg: the side servers by pkg/daemon,
	// and the LookupUser limit by settings.go through grpcserver's name.
	elsewhere := map[string]bool{daemon.MetricsParam("auth"): true, daemon.PprofParam("auth"): true, grpcserver.LookupRateLimit: true}
	inSettings := maincftest.OnlyIn(t, cat, ".", "settings.go", nil)
	for _, name := range cat.Names() {
		if d, _ := cat.Def(name); d.Owner == maincf.Auth && !inSettings[name] && !elsewhere[name] {
			t.Errorf("%s is the auth service's parameter but settings.go does not read it", name)
		}
	}
}

// TestCatalogue checks the catalogue every service's command reads main.cf
// through (Shared and the three services' params): no name defined twice
// (NewCatalogue panics on one), and every default expands and passes its
// own check.
func TestCatalogue(t *testing.T) {
	f, err := maincf.Parse("main.cf", strings.NewReader(""))
	must(t, err)
	if err := maincf.New(Catalogue(), f, "/etc/smtpgate").Validate(maincf.All); err != nil {
		t.Fatalf("defaults do not validate:\n%v", err)
	}
}
