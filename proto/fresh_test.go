package proto

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedCodeIsFresh regenerates the Go code into a temporary
// directory with scripts/gen and compares it, file by file, with the
// committed code.
func TestGeneratedCodeIsFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("regenerating needs the Go module proxy; run without -short")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(root, "scripts", "gen"), "-o", out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/gen: %v\n%s", err, b)
	}
	generated := map[string][]byte{}
	err = filepath.WalkDir(filepath.Join(out, "proto"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		b, err := os.ReadFile(p)
		generated[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(generated) == 0 {
		t.Fatal("scripts/gen produced no files")
	}
	committed := map[string]bool{}
	err = filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".pb.go") {
			return err
		}
		committed[filepath.Join("proto", p)] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range generated {
		got, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Errorf("%s is generated but not committed: run scripts/gen", rel)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run scripts/gen", rel)
		}
		delete(committed, rel)
	}
	for rel := range committed {
		t.Errorf("%s is committed but no longer generated: delete it", rel)
	}
}
