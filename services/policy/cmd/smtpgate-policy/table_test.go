package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// "smtpgate-policy table" loads a text table into a redis: table on a
// real redis-server, queries it and deletes from it, as postmap does.
func TestTableCommand(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("access-redis.cf", "url = "+srv.URL()+"\nkey_prefix = access:\n")
	write("access", "spammer@example.net REJECT go away\nexample.org OK\n")
	write("bad", "key-without-value\n")
	write("local", "lisa@example.com OK\n")
	ctx := context.Background()
	cmd := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(ctx, append([]string{"table", "-c", dir}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	for _, c := range []struct {
		args          []string
		code          int
		stdout, inErr string
	}{
		{[]string{"redis:./access-redis.cf", "access"}, 0, "redis:./access-redis.cf: 2 entries loaded\n", ""},
		{[]string{"-q", "Spammer@Example.NET", "redis:./access-redis.cf"}, 0, "REJECT go away\n", ""},
		{[]string{"-q", "example.com", "redis:./access-redis.cf"}, 1, "", ""},
		{[]string{"-d", "example.org", "redis:./access-redis.cf"}, 0, "", ""},
		{[]string{"-d", "example.org", "redis:./access-redis.cf"}, 1, "", ""},
		{[]string{"-q", "example.org", "redis:./access-redis.cf"}, 1, "", ""},
		{[]string{"-q", "lisa@example.com", "hash:local"}, 0, "OK\n", ""}, // any table type can be queried
		{[]string{"redis:./access-redis.cf", "bad"}, 2, "", "bad:1: expected format: key whitespace value"},
		{[]string{"hash:local", "access"}, 2, "", "not a redis: table"},
		{[]string{"redis:./access-redis.cf"}, 2, "", "usage: smtpgate-policy table"},
		{[]string{"-q", "x", "-d", "y", "redis:./access-redis.cf"}, 2, "", "usage: smtpgate-policy table"},
	} {
		code, out, errOut := cmd(c.args...)
		if code != c.code || out != c.stdout || !strings.Contains(errOut, c.inErr) {
			t.Errorf("table %q: exit %d, stdout %q, stderr %q; want %d, %q, %q", c.args, code, out, errOut, c.code, c.stdout, c.inErr)
		}
	}
	srv.Stop()
	if code, _, errOut := cmd("-q", "spammer@example.net", "redis:./access-redis.cf"); code != 2 || !strings.Contains(errOut, "temporary lookup failure") {
		t.Errorf("Redis down: exit %d, %q; want 2 and a temporary lookup failure", code, errOut)
	}
}
