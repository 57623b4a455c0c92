package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/services/auth/internal/scheme"
)

func TestHashPassword(t *testing.T) {
	for _, s := range []string{"", "SHA512-CRYPT", "sha256-crypt", "BLF-CRYPT", "PLAIN"} {
		args := []string{"hash-password"}
		if s != "" {
			args = append(args, "-s", s)
		}
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, strings.NewReader("s3cret pass\n"), &out, &errOut); code != 0 {
			t.Fatalf("hash-password %v: exit %d: %s", args, code, errOut.String())
		}
		st, err := scheme.Parse(strings.TrimSpace(out.String()))
		if err != nil || !st.Verify([]byte("s3cret pass")) {
			t.Errorf("hash-password %v printed %q, which does not verify: %v", args, out.String(), err)
		}
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"hash-password", "-s", "NOSUCH"}, strings.NewReader("x\n"), &out, &errOut); code != 2 {
		t.Errorf("unknown scheme: exit %d", code)
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"hash-password", "-s", "MD5-CRYPT"}, strings.NewReader("x\n"), &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "weak") {
		t.Errorf("weak scheme: exit %d: %s", code, errOut.String())
	}
	if code := run(context.Background(), []string{"hash-password"}, strings.NewReader(""), &out, &errOut); code != 1 {
		t.Errorf("empty password: exit %d", code)
	}
}

// TestHashPasswordDovecotVerifies: every scheme hash-password makes, the
// real Dovecot (`doveadm pw -t`, Debian's dovecot-core) verifies.
func TestHashPasswordDovecotVerifies(t *testing.T) {
	doveadm, err := exec.LookPath("doveadm")
	if err != nil {
		t.Fatalf("doveadm not found (install dovecot-core: scripts/deps --test): %v", err)
	}
	for _, s := range scheme.Names() {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{"hash-password", "-s", s}, strings.NewReader("pässword:1\n"), &out, &errOut); code != 0 {
			t.Fatalf("hash-password -s %s: exit %d: %s", s, code, errOut.String())
		}
		hash := strings.TrimSpace(out.String())
		if got, err := exec.Command(doveadm, "-c", "/dev/null", "pw", "-t", hash, "-p", "pässword:1").CombinedOutput(); err != nil {
			t.Errorf("doveadm pw -t %s: %v: %s", hash, err, got)
		}
		if got, err := exec.Command(doveadm, "-c", "/dev/null", "pw", "-t", hash, "-p", "pässword:2").CombinedOutput(); err == nil {
			t.Errorf("doveadm pw -t %s verified a wrong password: %s", hash, got)
		}
	}
}
