package table

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// A redis: table on a real redis-server: two processes' tables (two
// policy replicas) see a change at once, keys are folded, the prefix
// keeps tables apart, and Redis down is a temporary failure.
func TestRedisTable(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	cf := filepath.Join(dir, "access-redis.cf")
	if err := os.WriteFile(cf, []byte("url = "+srv.URL()+"\nkey_prefix = access:\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.cf")
	if err := os.WriteFile(other, []byte("url = "+srv.URL()+"\nkey_prefix = other:\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "access")
	if err := os.WriteFile(text, []byte("# blocked\nSpammer@Example.NET REJECT go away\nexample.org OK\n192.0.2 DUNNO\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := OpenRedis("redis:"+cf, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open("proxy:redis:"+cf, Options{}) // another replica
	if err != nil {
		t.Fatal(err)
	}
	defer b.(io.Closer).Close()
	o, err := Open("redis:"+other, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.(io.Closer).Close()

	entries, err := ReadText(text)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Set(ctx, entries); err != nil {
		t.Fatal(err)
	}
	checkLookups(t, b, []lookupCase{
		hit("spammer@example.net", "REJECT go away"),
		hit("SPAMMER@example.net", "REJECT go away"),
		hit("example.org", "OK"),
		hit("192.0.2", "DUNNO"),
		miss("example.com"),
		miss("access:example.org"),
	})
	checkLookups(t, o, []lookupCase{miss("example.org")})
	if b.Pattern() {
		t.Error("redis: is a fixed-string table: it must get partial keys")
	}
	if ok, err := a.Delete(ctx, "Example.ORG"); !ok || err != nil {
		t.Fatalf("delete: %v, %v", ok, err)
	}
	checkLookups(t, b, []lookupCase{miss("example.org")})
	if ok, err := a.Delete(ctx, "example.org"); ok || err != nil {
		t.Errorf("second delete: %v, %v; want false, nil", ok, err)
	}
	if err := b.(Prober).Probe(ctx); err != nil {
		t.Errorf("probe: %v", err)
	}

	srv.Stop()
	if v, ok, err := b.Lookup(ctx, "spammer@example.net"); !errors.Is(err, ErrLookup) || ok {
		t.Errorf("Redis down: %q, %v, %v; want an ErrLookup", v, ok, err)
	}
	if err := b.(Prober).Probe(ctx); err == nil {
		t.Error("probe with Redis down: no error")
	}
	again := redistest.StartOn(t, srv.Port) // empty: a new server
	_ = again
	checkLookups(t, b, []lookupCase{miss("spammer@example.net")})
}

func TestRedisTableOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for text, want := range map[string]string{
		"key_prefix = x\n":                       "r.cf: url: missing",
		"url = http://secret@host/\n":            "r.cf:1: url: not a valid redis:// or rediss:// URL (value not shown",
		"url = redis://127.0.0.1/0\nhosts = x\n": "r.cf:2: unknown redis parameter \"hosts\"",
	} {
		p := filepath.Join(dir, "r.cf")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open("redis:"+p, Options{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want %q", text, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the error shows the URL: %v", err)
		}
	}
	if _, err := OpenRedis("hash:/x", Options{}); err == nil {
		t.Error("OpenRedis opened a hash: table")
	}
}
