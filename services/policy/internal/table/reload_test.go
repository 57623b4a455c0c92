package table

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/logtest"
)

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}

// fakeClock is a clock that tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

// settle waits for a reload of tb that a lookup started.
func settle(tb Table) {
	if f, ok := tb.(*fileTable); ok {
		f.mu.Lock()
		//lint:ignore SA2001 an empty critical section: waiting for the reload is the point
		f.mu.Unlock()
	}
}

// rewrite replaces the file atomically, with an mtime a second later, so
// that the change shows even on file systems with coarse timestamps.
func rewrite(t *testing.T, path, text string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	mt := fi.ModTime().Add(time.Second)
	if err := os.Chtimes(tmp, mt, mt); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestReload(t *testing.T) {
	for _, tt := range []struct {
		typ, good1, good2, bad, key string
	}{
		{"hash", "k v1\n", "k v2\n", "k\n", "k"},
		{"cidr", "192.0.2.0/24 v1\n", "192.0.2.0/24 v2\n", "192.0.2.1/24 v3\n", "192.0.2.1"},
		{"regexp", "/^k$/ v1\n", "/^k$/ v2\n", "/^k(/ v3\n", "k"},
		{"pcre", "/^k$/ v1\n", "/^k$/ v2\n", "/^k(?=x)/ v3\n", "k"},
	} {
		t.Run(tt.typ, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "t")
			if err := os.WriteFile(path, []byte(tt.good1), 0o644); err != nil {
				t.Fatal(err)
			}
			clock := newFakeClock()
			var log logtest.Buffer
			tb, err := Open(tt.typ+":"+path, Options{Logger: newTextLogger(&log), ReloadCheck: time.Second, Now: clock.now})
			if err != nil {
				t.Fatal(err)
			}
			// want looks the key up once (which may start a reload),
			// waits for a reload under way, and checks the answer.
			want := func(v string) {
				t.Helper()
				if _, _, err := tb.Lookup(context.Background(), tt.key); err != nil {
					t.Fatal(err)
				}
				settle(tb)
				checkLookups(t, tb, []lookupCase{hit(tt.key, v)})
			}
			want("v1")
			rewrite(t, path, tt.good2)
			clock.add(500 * time.Millisecond)
			want("v1") // not checked yet
			clock.add(600 * time.Millisecond)
			want("v2")
			if !strings.Contains(log.String(), "table reloaded") {
				t.Errorf("no reload logged:\n%s", log.String())
			}

			rewrite(t, path, tt.bad)
			for range 3 {
				clock.add(2 * time.Second)
				want("v2")
			}
			if n := strings.Count(log.String(), "table reload failed"); n != 1 {
				t.Errorf("reload failure logged %d times, want once:\n%s", n, log.String())
			}
			if !strings.Contains(log.String(), tt.typ+":"+path+":1:") {
				t.Errorf("reload failure does not name file:line:\n%s", log.String())
			}

			rewrite(t, path, tt.good1)
			clock.add(2 * time.Second)
			want("v1")

			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				clock.add(2 * time.Second)
				want("v1")
			}
			if n := strings.Count(log.String(), "no such file"); n != 1 {
				t.Errorf("missing file logged %d times, want once:\n%s", n, log.String())
			}
		})
	}
}

func TestReloadRealClock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access")
	if err := os.WriteFile(path, []byte("k v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tb, err := Open("hash:access", Options{Dir: dir, ReloadCheck: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	checkLookups(t, tb, []lookupCase{hit("k", "v1")})
	rewrite(t, path, "k value2\n")
	time.Sleep(20 * time.Millisecond)
	tb.Lookup(context.Background(), "k") // starts the reload
	settle(tb)
	checkLookups(t, tb, []lookupCase{hit("k", "value2")})
	checkEntries(t, tb, []Entry{{Pos: "1", Key: "k", Value: "value2"}})
}

// TestConcurrentLookups is meant for -race: lookups from many goroutines
// while the file changes under them.
func TestConcurrentLookups(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"cidr":   "192.0.2.0/24 a\n",
		"regexp": "/^(k)$/ a$1\n",
		"pcre":   "/^(k)$/ a$1\n",
		"hash":   "k a\n",
	}
	keys := map[string]string{"cidr": "192.0.2.1", "regexp": "k", "pcre": "k", "hash": "k"}
	var tables []Table
	for typ, text := range files {
		path := filepath.Join(dir, typ)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		tb, err := Open(typ+":"+path, Options{ReloadCheck: time.Microsecond})
		if err != nil {
			t.Fatal(err)
		}
		tables = append(tables, tb)
	}
	inline, err := Open("inline:{k=a}", Options{})
	if err != nil {
		t.Fatal(err)
	}
	tables = append(tables, inline)
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, tb := range tables {
					typ, _, _ := strings.Cut(tb.Name(), ":")
					key := keys[typ]
					if key == "" {
						key = "k"
					}
					v, ok, err := tb.Lookup(ctx, key)
					if err != nil || !ok || !strings.HasPrefix(v, "a") && !strings.HasPrefix(v, "b") {
						t.Errorf("%s: Lookup(%q) = %q, %v, %v", tb.Name(), key, v, ok, err)
						return
					}
					_ = tb.Entries()
				}
			}
		})
	}
	for i := range 20 {
		for typ, text := range files {
			next := strings.ReplaceAll(text, " a", " b")
			if i%2 == 1 {
				next = text
			}
			rewrite(t, filepath.Join(dir, typ), next)
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
}

func writeFile(path, text string) error { return os.WriteFile(path, []byte(text), 0o644) }

// TestReloadDoesNotStallLookups: while a changed table is being parsed
// (here, held in its parser until the test lets it go), lookups go on
// with the contents in use, the one that noticed the change included;
// then the new contents replace them whole.
func TestReloadDoesNotStallLookups(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access")
	if err := os.WriteFile(path, []byte("k v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	parsing, release := make(chan struct{}, 1), make(chan struct{})
	var held atomic.Bool
	parse := func(s *source) (matcher, error) {
		if held.Load() {
			parsing <- struct{}{}
			<-release
		}
		return parseHash(s)
	}
	clock := newFakeClock()
	opts := Options{ReloadCheck: time.Second, Now: clock.now, Logger: newTextLogger(io.Discard)}
	tb, err := openFile("hash:"+path, "hash", path, false, parse, opts)
	if err != nil {
		t.Fatal(err)
	}
	held.Store(true)
	rewrite(t, path, "k v2\n")
	clock.add(2 * time.Second)
	// This lookup notices the change and starts the reload: it answers
	// without waiting for the parse, from the contents in use.
	answered := make(chan string, 1)
	go func() {
		v, _, _ := tb.Lookup(context.Background(), "k")
		answered <- v
	}()
	select {
	case v := <-answered:
		if v != "v1" {
			t.Fatalf("the lookup that noticed the change got %q, want v1", v)
		}
	case <-time.After(30 * time.Second):
		close(release)
		t.Fatal("the lookup that noticed the change waited for the reload's parse")
	}
	<-parsing
	for range 100 {
		checkLookups(t, tb, []lookupCase{hit("k", "v1")})
	}
	close(release)
	settle(tb)
	checkLookups(t, tb, []lookupCase{hit("k", "v2")})
}
