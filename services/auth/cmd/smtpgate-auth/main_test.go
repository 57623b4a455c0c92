package main

import (
	"bytes"
	"context"
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
	if code := run(context.Background(), []string{"hash-password", "-s", "MD5"}, strings.NewReader("x\n"), &out, &errOut); code != 2 {
		t.Errorf("unknown scheme: exit %d", code)
	}
	if code := run(context.Background(), []string{"hash-password"}, strings.NewReader(""), &out, &errOut); code != 1 {
		t.Errorf("empty password: exit %d", code)
	}
}
