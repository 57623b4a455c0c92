package maincftest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/maincf"
)

// recorder is a testing.TB that keeps what would fail the test.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) { r.errors = append(r.errors, format) }

func TestNamedIn(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"settings.go": "package x\nvar a = \"mynetworks\"\nvar b = \"not a parameter\"\n",
		"other.go":    "package x\nvar c = `myhostname`\n",
		"x_test.go":   "package x\nvar d = \"relay_domains\"\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cat := maincf.NewCatalogue(maincf.Def{Name: "mynetworks"}, maincf.Def{Name: "myhostname"}, maincf.Def{Name: "relay_domains"})
	got := NamedIn(t, cat, dir, nil)
	if len(got) != 2 || !got["settings.go"]["mynetworks"] || !got["other.go"]["myhostname"] || len(got["settings.go"]) != 1 {
		t.Errorf("NamedIn = %v", got)
	}
	r := &recorder{TB: t}
	if in := OnlyIn(r, cat, dir, "settings.go", nil); !in["mynetworks"] || len(r.errors) != 1 {
		t.Errorf("OnlyIn = %v, errors %v; want mynetworks and one error for other.go", in, r.errors)
	}
}
