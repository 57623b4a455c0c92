package sqltest

import (
	"os"
	"strings"
	"testing"
)

func check(t *testing.T, s *Server, db string) {
	t.Helper()
	out, err := s.Exec(db, "SELECT 40 + 2;")
	if err != nil || strings.TrimSpace(out) != "42" {
		t.Fatalf("SELECT: %q, %v", out, err)
	}
	port := s.Port
	s.Stop()
	if _, err := s.Exec(db, "SELECT 1;"); err == nil {
		t.Fatal("the server answers after Stop")
	}
	if err := s.Start(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if out, err := s.Exec(db, "SELECT 40 + 2;"); err != nil || strings.TrimSpace(out) != "42" || s.Port != port {
		t.Fatalf("after restart on %d: %q, %v", s.Port, out, err)
	}
}

func TestMariaDB(t *testing.T) {
	dir := t.TempDir()
	s, err := StartMariaDB(dir, "pw")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	check(t, s, "mail")
}

func TestPostgres(t *testing.T) {
	dir, err := os.MkdirTemp("", "sqltest-pg-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := StartPostgres(dir, "pw")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	check(t, s, "mail")
}
