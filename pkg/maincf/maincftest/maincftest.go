// Package maincftest holds a service's code to its parameter catalogue in
// tests: which catalogued parameter names each source file of a package
// names. It reads Go source files of this repository, which it trusts to
// parse; a file that does not parse fails the test.
package maincftest

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

// NamedIn returns, by file name, the catalogued parameter names that the
// non-test Go files of dir name in string literals. visit, when not nil,
// also sees every node of each file, for checks of a service's own.
func NamedIn(t testing.TB, cat *maincf.Catalogue, dir string, visit func(file string, n ast.Node)) map[string]map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]bool{}
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
		base := filepath.Base(f)
		ast.Inspect(file, func(n ast.Node) bool {
			if visit != nil && n != nil {
				visit(base, n)
			}
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			v, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			if _, known := cat.Def(v); known {
				if out[base] == nil {
					out[base] = map[string]bool{}
				}
				out[base][v] = true
			}
			return true
		})
	}
	return out
}

// OnlyIn fails the test for every catalogued name that a non-test Go file
// of dir other than file names, and returns the names file names.
func OnlyIn(t testing.TB, cat *maincf.Catalogue, dir, file string, visit func(file string, n ast.Node)) map[string]bool {
	t.Helper()
	var in map[string]bool
	for f, names := range NamedIn(t, cat, dir, visit) {
		if f == file {
			in = names
			continue
		}
		for name := range names {
			t.Errorf("%s names the parameter %s; only %s reads parameters", f, name, file)
		}
	}
	if len(in) == 0 {
		t.Fatalf("found no parameter names in %s", file)
	}
	return in
}
