package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The addresses of the auth cache attack, each in a /24 of its own.
const (
	cacheJohn     = "127.0.6.5"
	cacheAttacker = "127.0.7.66"
)

// TestAuthCacheAttack plays a guesser against the authentication cache
// on the running stack (submission, STARTTLS, AUTH PLAIN). john logs in
// twice (the second answered from the cache: smtpgate-auth's metrics say
// so); then an attacker at another address sends wrong passwords for
// john: every one is checked and refused with 535 until the client
// maximum (10) locks the attacker out, and then even john's right, cached
// password from the attacker's address gets 454. Last, john's password
// is changed in the passwd-file with `smtpgate-auth hash-password`: the
// old one, cached for 5 minutes, stops working once the file is read
// again.
func TestAuthCacheAttack(t *testing.T) {
	s := newStack(t, lockoutMain)
	hits := func() int {
		v := metric(t, s.port["auth-metrics"], `smtpgate_auth_cache_lookups_total{result="hit"}`)
		n, _ := strconv.Atoi(v)
		return n
	}
	for i := range 2 {
		if got := replyClass(s.authOnce(t, cacheJohn, "john@example.org", JohnPassword)); got != "235" {
			t.Fatalf("john's AUTH %d: %s", i, got)
		}
	}
	if n := hits(); n != 1 {
		t.Fatalf("cache hits after john's second AUTH: %d, want 1", n)
	}

	results := map[string]int{}
	for i := range 15 {
		results[replyClass(s.authOnce(t, cacheAttacker, "john@example.org", fmt.Sprintf("guess-%d", i)))]++
	}
	if results["535"] != 10 || results["454"] != 5 || len(results) != 2 {
		t.Errorf("the attacker's 15 guesses: %v, want 10 refused after a check (535) and 5 locked out (454)", results)
	}
	if got := replyClass(s.authOnce(t, cacheAttacker, "john@example.org", JohnPassword)); got != "454" {
		t.Errorf("john's cached password from the locked attacker: %s, want 454", got)
	}
	if n := hits(); n != 1 {
		t.Errorf("cache hits after the attack: %d, want still 1 (no guess answered from the cache)", n)
	}
	if got := replyClass(s.authOnce(t, cacheJohn, "john@example.org", JohnPassword)); got != "235" {
		t.Errorf("john after the attack: %s", got)
	}

	// john's password changes.
	cmd := exec.Command(filepath.Join(binDir, "smtpgate-auth"), "hash-password", "-s", "SHA512-CRYPT")
	cmd.Stdin = strings.NewReader("johns-new-password\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hash-password: %v", err)
	}
	path := filepath.Join(s.conf, "passwd")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(old), "\n") {
		if strings.HasPrefix(l, "john@example.org:") {
			l = "john@example.org:" + strings.TrimSpace(string(out))
		}
		lines = append(lines, l)
	}
	write(t, path+".new", strings.Join(lines, "\n"))
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the passwd-file is looked at at most once a second
	if got := replyClass(s.authOnce(t, cacheJohn, "john@example.org", JohnPassword)); got != "535" {
		t.Errorf("john's old, cached password after the change: %s, want 535", got)
	}
	if got := replyClass(s.authOnce(t, cacheJohn, "john@example.org", "johns-new-password")); got != "235" {
		t.Errorf("john's new password: %s, want 235", got)
	}
}

// TestDoveadmUsersAuthenticate: users whose hashes the real `doveadm pw`
// made (Debian's dovecot-core) are added to the running stack's
// passwd-file, one per scheme an existing Dovecot site holds, one as a
// bare crypt string (Dovecot's CRYPT default); each gets 235 on
// submission with its password and 535 with a wrong one.
func TestDoveadmUsersAuthenticate(t *testing.T) {
	doveadm, err := exec.LookPath("doveadm")
	if err != nil {
		t.Fatalf("doveadm not found (install dovecot-core: scripts/deps --test): %v", err)
	}
	s := newStack(t, lockoutMain)
	schemes := []string{"MD5-CRYPT", "SSHA", "SSHA256", "SSHA512", "SHA256", "SHA256.HEX", "SHA512.b64", "PBKDF2", "BLF-CRYPT", "SHA512-CRYPT"}
	var add strings.Builder
	for i, sc := range schemes {
		out, err := exec.Command(doveadm, "-c", "/dev/null", "pw", "-s", sc, "-p", "pw-"+sc).Output()
		if err != nil {
			t.Fatalf("doveadm pw -s %s: %v", sc, err)
		}
		hash := strings.TrimSpace(string(out))
		if sc == "SHA512-CRYPT" {
			hash = hash[strings.IndexByte(hash, '}')+1:] // bare: $6$...
		}
		fmt.Fprintf(&add, "user%d@example.org:%s\n", i, hash)
	}
	path := filepath.Join(s.conf, "passwd")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	write(t, path+".new", string(old)+add.String())
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the passwd-file is looked at at most once a second
	for i, sc := range schemes {
		from := fmt.Sprintf("127.0.8.%d", 10+i)
		user := fmt.Sprintf("user%d@example.org", i)
		if got := replyClass(s.authOnce(t, from, user, "pw-"+sc)); got != "235" {
			t.Errorf("%s user with its password: %s, want 235", sc, got)
		}
		if got := replyClass(s.authOnce(t, from, user, "pw-"+sc+"x")); got != "535" {
			t.Errorf("%s user with a wrong password: %s, want 535", sc, got)
		}
	}
	if log := s.log("auth"); strings.Contains(log, "reload failed") {
		t.Errorf("the passwd-file did not reload:\n%s", log)
	}
}
