package auth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/services/auth/internal/sasl"
	"github.com/smtpgate/smtpgate/services/auth/internal/scheme"
)

// cacheLookups reads smtpgate_auth_cache_lookups_total{result}.
func cacheLookups(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	must(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "smtpgate_auth_cache_lookups_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestAuthCacheHit: the second AUTH of the same user and password is
// answered from the cache (deploy/local's john is SHA512-CRYPT); a wrong
// password after it is still checked, and fails.
func TestAuthCacheHit(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := startReplicaWith(t, "smtpgate_auth_failure_delay = 0\n", reg)
	for i := range 3 {
		if got := plainAuth(t, r, "198.51.100.1", "john@example.org", password); got != success {
			t.Fatalf("AUTH %d: %v", i, got)
		}
	}
	if hit, miss := cacheLookups(t, reg, "hit"), cacheLookups(t, reg, "miss"); hit != 2 || miss != 1 {
		t.Errorf("cache hits %v misses %v, want 2 and 1", hit, miss)
	}
	for _, wrong := range []string{password + "x", strings.ToUpper(password), ""} {
		if got := plainAuth(t, r, "198.51.100.1", "john@example.org", wrong); got != failure {
			t.Errorf("wrong password %q after cached successes: %v", wrong, got)
		}
	}
	if got := plainAuth(t, r, "198.51.100.1", "john@example.org", password); got != success {
		t.Errorf("right password after the failures: %v", got)
	}
}

// TestAuthCacheHonoursPasswdFileChanges: with an hour's TTL, a changed
// password and a removed user are honoured as soon as the passwd-file is
// read again (it is checked at most once a second), not an hour later:
// a cache entry names the stored hash it was verified against.
func TestAuthCacheHonoursPasswdFileChanges(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := startReplicaWith(t, "smtpgate_auth_failure_delay = 0\nsmtpgate_auth_cache_ttl = 1h\n", reg)
	path := r.srv.set.main.Path("smtpgate_passwd_file")
	old, err := os.ReadFile(path)
	must(t, err)
	for range 2 {
		if got := plainAuth(t, r, "198.51.100.2", "john@example.org", password); got != success {
			t.Fatalf("john before the change: %v", got)
		}
	}
	if cacheLookups(t, reg, "hit") != 1 {
		t.Fatal("the second AUTH was not a cache hit")
	}

	// john's password changes.
	st, err := scheme.Hash(scheme.SHA512Crypt, []byte("new-password"))
	must(t, err)
	var lines []string
	for _, l := range strings.Split(string(old), "\n") {
		if strings.HasPrefix(l, "john@example.org:") {
			l = "john@example.org:" + st.String()
		}
		lines = append(lines, l)
	}
	rewrite(t, path, strings.Join(lines, "\n"))
	if got := plainAuth(t, r, "198.51.100.2", "john@example.org", password); got != failure {
		t.Errorf("john's old password after the change: %v, want FAILURE", got)
	}
	if got := plainAuth(t, r, "198.51.100.2", "john@example.org", "new-password"); got != success {
		t.Errorf("john's new password: %v", got)
	}

	// john is removed.
	var kept []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "john@example.org:") {
			kept = append(kept, l)
		}
	}
	rewrite(t, path, strings.Join(kept, "\n"))
	if got := plainAuth(t, r, "198.51.100.2", "john@example.org", "new-password"); got != failure {
		t.Errorf("removed john's password: %v, want FAILURE", got)
	}
	if got := plainAuth(t, r, "198.51.100.2", "carol@example.org", CarolPassword); got != success {
		t.Errorf("carol after john's removal: %v", got)
	}
}

// rewrite replaces the passwd-file and waits out the second for which
// the service trusts its last look at it.
func rewrite(t *testing.T, path, text string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "passwd.new")
	must(t, os.WriteFile(tmp, []byte(text), 0o600))
	must(t, os.Rename(tmp, path))
	time.Sleep(1100 * time.Millisecond)
}

// TestAuthCacheDoesNotBypassThrottle: a cached success does not open a
// locked client: wrong passwords are counted and checked as always, and
// once the client is locked, even the cached right password gets 454.
func TestAuthCacheDoesNotBypassThrottle(t *testing.T) {
	r := startReplica(t, "smtpgate_auth_failure_delay = 0\nsmtpgate_auth_max_failures_per_client = 3\n")
	const client = "203.0.113.9"
	for range 2 {
		if got := plainAuth(t, r, client, "john@example.org", password); got != success {
			t.Fatalf("warming the cache: %v", got)
		}
	}
	for i := range 3 {
		if got := plainAuth(t, r, client, "john@example.org", "guess"); got != failure {
			t.Fatalf("wrong password %d: %v, want FAILURE", i, got)
		}
	}
	if got := plainAuth(t, r, client, "john@example.org", password); got != tempfail {
		t.Errorf("cached right password from the locked client: %v, want TEMPORARY_FAILURE", got)
	}
}

// TestAuthCacheOff: smtpgate_auth_cache_size = 0 verifies every time.
func TestAuthCacheOff(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := startReplicaWith(t, "smtpgate_auth_cache_size = 0\n", reg)
	for range 2 {
		if got := plainAuth(t, r, "198.51.100.3", "john@example.org", password); got != success {
			t.Fatalf("AUTH: %v", got)
		}
	}
	if r.srv.auth.cache != nil || cacheLookups(t, reg, "hit")+cacheLookups(t, reg, "miss") != 0 {
		t.Error("the cache is on")
	}
}

// TestAuthCacheParameters: check reports bad values with file:line.
func TestAuthCacheParameters(t *testing.T) {
	for _, line := range []string{"smtpgate_auth_cache_size = -1", "smtpgate_auth_cache_size = lots", "smtpgate_auth_cache_ttl = soon"} {
		dir := t.TempDir()
		must(t, os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = mail.example.org\n"+line+"\n"), 0o600))
		must(t, os.WriteFile(filepath.Join(dir, "master.cf"), nil, 0o600))
		cfg, services, err := maincf.Load(Catalogue(), dir)
		if err == nil {
			err = validate(cfg, services)
		}
		name, _, _ := strings.Cut(line, " ")
		if err == nil || !strings.Contains(err.Error(), "main.cf:2") || !strings.Contains(err.Error(), name) {
			t.Errorf("%q: error %v, want one naming main.cf:2 and %s", line, err, name)
		}
	}
}

// BenchmarkAuthPlainSHA512Crypt is one AUTH PLAIN of deploy/local's
// john (SHA512-CRYPT, 5000 rounds) through the throttle and the PLAIN
// mechanism, as the gRPC and Dovecot-protocol handlers run it, with the
// auth cache off (cold: every AUTH pays the hash) and warm.
func BenchmarkAuthPlainSHA512Crypt(b *testing.B) {
	for _, bc := range []struct{ name, extra string }{
		{"cold", "smtpgate_auth_cache_size = 0\n"},
		{"warm", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			passwd, err := os.ReadFile("../../deploy/local/passwd")
			if err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "passwd"), passwd, 0o600); err != nil {
				b.Fatal(err)
			}
			cf := "smtpgate_passwd_file = passwd\nmyhostname = mail.example.org\nsmtpgate_auth_failure_delay = 0\n" + bc.extra
			if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o600); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "master.cf"), nil, 0o600); err != nil {
				b.Fatal(err)
			}
			cfg, services, err := maincf.Load(Catalogue(), dir)
			if err != nil {
				b.Fatal(err)
			}
			set, err := Load(cfg, services)
			if err != nil {
				b.Fatal(err)
			}
			srv, err := New(set, Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			plain := sasl.Mechanisms()["PLAIN"]
			resp := []byte("\x00john@example.org\x00" + password)
			ctx := context.Background()
			auth := func() {
				ex := srv.auth.start(plain, "198.51.100.20")
				if _, done, err := ex.Next(ctx, resp); !done || err != nil {
					b.Fatalf("AUTH PLAIN: done %v, %v", done, err)
				}
			}
			auth() // warms the cache when it is on
			b.ResetTimer()
			for b.Loop() {
				auth()
			}
		})
	}
}
