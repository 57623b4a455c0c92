package scheme

import (
	"crypto/sha1"
	"os/exec"
	"strings"
	"testing"
)

// doveadm runs the real `doveadm` (Debian's dovecot-core, installed by
// scripts/deps --test); it needs no running Dovecot, nor any
// configuration, for `pw`.
func doveadm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("doveadm")
	if err != nil {
		t.Fatalf("doveadm not found (install dovecot-core: scripts/deps --test): %v", err)
	}
	// -c /dev/null: no system configuration is read.
	out, err := exec.Command(path, append([]string{"-c", "/dev/null"}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// doveadmSchemes are the schemes real passwd-files hold, as `doveadm pw -s`
// spells them, with the encoding suffixes it writes.
var doveadmSchemes = []string{
	"MD5-CRYPT", "MD5", "CRYPT",
	"SSHA", "SSHA.HEX", "SSHA256", "SSHA256.b64", "SSHA512", "SSHA512.HEX",
	"SHA", "SHA1", "SHA.HEX",
	"SHA256", "SHA256.HEX", "SHA256.b64", "SHA256.BASE64",
	"SHA512", "SHA512.HEX", "SHA512.b64", "SHA512.BASE64",
	"PBKDF2",
	"SMD5", "PLAIN-MD5", "PLAIN-MD5.b64", "LDAP-MD5", "LDAP-MD5.HEX",
	"SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT",
	"CRAM-MD5", "CRAM-MD5.b64", "HMAC-MD5",
	"SCRAM-SHA-256", "SCRAM-SHA-1", "ARGON2ID", "ARGON2I",
	"PLAIN", "PLAIN.b64", "PLAIN.HEX", "CLEAR", "CLEARTEXT",
}

var doveadmPasswords = []string{"test", "pässword with spaces", "colon:and{brace}$dollar", strings.Repeat("long", 40)}

// TestDoveadmHashesVerify: every hash `doveadm pw -s SCHEME` makes parses
// and verifies its password, and no other.
func TestDoveadmHashesVerify(t *testing.T) {
	for _, s := range doveadmSchemes {
		for i, pw := range doveadmPasswords {
			if strings.HasPrefix(s, "ARGON2") && i > 0 {
				continue // 32 or 64 MiB per hash: one is enough
			}
			hash, err := doveadm(t, "pw", "-s", s, "-p", pw)
			if err != nil {
				t.Fatalf("doveadm pw -s %s: %v: %s", s, err, hash)
			}
			st, err := Parse(hash)
			if err != nil {
				t.Errorf("Parse(%s) of doveadm's %q: %v", s, hash, err)
				continue
			}
			if !st.Verify([]byte(pw)) {
				t.Errorf("%s: %q does not verify its password %q", s, hash, pw)
			}
			if st.Verify(nil) {
				t.Errorf("%s: %q verifies the empty password", s, hash)
			}
			// A wrong password fails here exactly when it fails in Dovecot
			// (bcrypt, there as here, reads only the first 72 bytes).
			for _, wrong := range []string{pw + "x", strings.ToUpper(pw), pw[:len(pw)-1]} {
				_, dovecotErr := doveadm(t, "pw", "-t", hash, "-p", wrong)
				if got, want := st.Verify([]byte(wrong)), dovecotErr == nil; got != want {
					t.Errorf("%s: %q with %q: verified %v, Dovecot %v", s, hash, wrong, got, want)
				}
			}
		}
	}
}

// TestBareCryptLines: a passwd-file password without {SCHEME} is
// Dovecot's default CRYPT; doveadm's output with the prefix cut off
// verifies too.
func TestBareCryptLines(t *testing.T) {
	for _, s := range []string{"MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT"} {
		hash, err := doveadm(t, "pw", "-s", s, "-p", "bare")
		if err != nil {
			t.Fatalf("doveadm pw -s %s: %v: %s", s, err, hash)
		}
		bare := hash[strings.IndexByte(hash, '}')+1:]
		st, err := Parse(bare)
		if err != nil {
			t.Fatalf("Parse(%q): %v", bare, err)
		}
		if st.Scheme != s || !st.Verify([]byte("bare")) || st.Verify([]byte("Bare")) {
			t.Errorf("bare %q: scheme %s, verification wrong", bare, st.Scheme)
		}
	}
}

// TestHashVerifiedByDoveadm: what `smtpgate-auth hash-password -s` makes
// (Hash), the real Dovecot verifies (`doveadm pw -t`), and refuses with
// another password.
func TestHashVerifiedByDoveadm(t *testing.T) {
	for _, name := range Names() {
		if name == ARGON2ID {
			continue // Debian's dovecot-core is built with libsodium; checked below when it is
		}
		st, err := Hash(name, []byte("pässword"))
		if err != nil {
			t.Fatal(err)
		}
		if out, err := doveadm(t, "pw", "-t", st.String(), "-p", "pässword"); err != nil || !strings.Contains(out, "(verified)") {
			t.Errorf("doveadm pw -t %s: %v: %s", st, err, out)
		}
		if out, err := doveadm(t, "pw", "-t", st.String(), "-p", "password"); err == nil {
			t.Errorf("doveadm pw -t %s with a wrong password: %s", st, out)
		}
	}
	st, err := Hash(ARGON2ID, []byte("pässword"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := doveadm(t, "pw", "-t", st.String(), "-p", "pässword"); err != nil || !strings.Contains(out, "(verified)") {
		t.Errorf("doveadm pw -t %s: %v: %s", st, err, out)
	}
}

// TestVerifyOnlyNotMade: Hash refuses what Dovecot 2.4 calls weak, and
// the schemes superseded by those it makes, and says why.
func TestVerifyOnlyNotMade(t *testing.T) {
	for _, name := range VerifyOnly() {
		_, err := Hash(name, []byte("x"))
		if err == nil || !strings.Contains(err.Error(), "weak") && !strings.Contains(err.Error(), "does not make it; use") {
			t.Errorf("Hash(%s) = %v, want a refusal naming why", name, err)
		}
	}
}

// TestSCRAMSHA1Stored: a {SCRAM-SHA-1} user made by doveadm serves the
// SCRAM-SHA-1 mechanism with its stored keys, and not SCRAM-SHA-256.
func TestSCRAMSHA1Stored(t *testing.T) {
	hash, err := doveadm(t, "pw", "-s", "SCRAM-SHA-1", "-p", "pencil")
	if err != nil {
		t.Fatal(err)
	}
	st, err := Parse(hash)
	if err != nil {
		t.Fatal(err)
	}
	salt, iters, stored, server, ok := st.SCRAMSHA1Credentials([]byte("ignored"))
	want, _ := scramKeysHash(sha1.New, []byte("pencil"), salt, iters)
	if !ok || iters != 4096 || string(stored) != string(want) || len(server) != sha1.Size {
		t.Errorf("SCRAM-SHA-1 credentials: ok %v, %d iterations, StoredKey matches %v", ok, iters, string(stored) == string(want))
	}
	if _, _, _, _, ok := st.SCRAMCredentials([]byte("x")); ok {
		t.Error("a {SCRAM-SHA-1} user served SCRAM-SHA-256")
	}
}

// TestEncodingGuessed: without a suffix, Dovecot reads a fixed-size digest
// as hex when it is exactly twice the size long, else as base64.
func TestEncodingGuessed(t *testing.T) {
	for _, s := range []string{"SHA256.HEX", "SHA512.HEX", "SHA.HEX", "PLAIN-MD5.b64", "LDAP-MD5.HEX"} {
		hash, err := doveadm(t, "pw", "-s", s, "-p", "guess")
		if err != nil {
			t.Fatalf("doveadm pw -s %s: %v: %s", s, err, hash)
		}
		base, _, _ := strings.Cut(s, ".")
		unsuffixed := "{" + base + "}" + hash[strings.IndexByte(hash, '}')+1:]
		if _, err := doveadm(t, "pw", "-t", unsuffixed, "-p", "guess"); err != nil {
			t.Fatalf("Dovecot does not verify %s either", unsuffixed)
		}
		st, err := Parse(unsuffixed)
		if err != nil || !st.Verify([]byte("guess")) || st.Verify([]byte("guesS")) {
			t.Errorf("%s: %+v, %v", unsuffixed, st, err)
		}
	}
}

// TestSHACryptWholeString: like Dovecot, which compares the whole string
// crypt(3) returns, a SHA-crypt hash written with rounds below the
// minimum, or with a salt longer than 16 characters, never verifies,
// although its hash part is what the specification's vectors give.
func TestSHACryptWholeString(t *testing.T) {
	for _, tc := range []struct{ stored, password string }{
		{"{SHA512-CRYPT}$6$rounds=10$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.", "the minimum number is still observed"},
		{"{SHA512-CRYPT}$6$toolongsaltstringx$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0", "This is just a test"},
		{"{SHA256-CRYPT}$5$rounds=05000$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", "Hello world!"},
	} {
		st, err := Parse(tc.stored)
		if err != nil {
			t.Fatalf("Parse(%s): %v", tc.stored, err)
		}
		_, dovecotErr := doveadm(t, "pw", "-t", tc.stored, "-p", tc.password)
		if st.Verify([]byte(tc.password)) || dovecotErr == nil {
			t.Errorf("%s: verified here %v, by Dovecot %v; want neither", tc.stored, st.Verify([]byte(tc.password)), dovecotErr == nil)
		}
	}
}
