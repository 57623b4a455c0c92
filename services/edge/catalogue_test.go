package edge

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/maincf"
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
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	inSettings := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, err := parser.ParseFile(token.NewFileSet(), f, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			v, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			if _, known := cat.Def(v); !known {
				return true
			}
			if f == "settings.go" {
				inSettings[v] = true
			} else {
				t.Errorf("%s names the parameter %s; only settings.go reads parameters", f, v)
			}
			return true
		})
	}
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
