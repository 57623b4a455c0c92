package dovecottest

import (
	"os"
	"strings"
	"testing"
)

// TestStartKillRestart: the server starts with its users, Kill takes it
// down for good (nothing answers), Restart brings it back on the same
// socket, and Stop ends it.
func TestStartKillRestart(t *testing.T) {
	s, err := Start(t.TempDir(), Options{
		PasswdUsers: []User{{Name: "a@example.org", Password: "pw", Scheme: "SSHA512"}},
		SQLUsers:    []User{{Name: "o'b@example.org", Password: "pw", Scheme: "PBKDF2"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	passwd, err := os.ReadFile(s.Dir + "/passwd")
	if err != nil || !strings.HasPrefix(string(passwd), "a@example.org:{SSHA512}") {
		t.Fatalf("passwd-file %q, %v", passwd, err)
	}
	if err := handshake(s.ClientSocket); err != nil {
		t.Fatalf("started, no handshake: %v", err)
	}
	s.Kill()
	if err := handshake(s.ClientSocket); err == nil {
		t.Fatal("killed, still answering")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := handshake(s.ClientSocket); err != nil {
		t.Fatalf("restarted, no handshake: %v", err)
	}
}
