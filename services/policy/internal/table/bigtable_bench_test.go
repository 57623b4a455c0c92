package table

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkBigTables loads access tables of 10,000 to 1,000,000 entries
// (hash:) and 100,000 rules (cidr:) and reports, beside the lookup's
// ns/op: the load time, the heap the table holds, the single lookup's
// p50 and p99, the same during a reload of the table, and the reload's
// time. With Postfix's postmap installed it also reports postmap's build
// time for the same file, its time per key for "postmap -q - hash:FILE"
// (every key of the run's sample, one process) and that process's peak
// RSS.
//
//	go test -run '^$' -bench BigTables -benchtime 2000000x ./internal/table/
func BenchmarkBigTables(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("hash-%d", n), func(b *testing.B) {
			var text strings.Builder
			keys := make([]string, 0, 2000)
			for i := range n {
				fmt.Fprintf(&text, "user%d@example%d.com REJECT no mail for user %d\n", i, i%1000, i)
				if i%(n/1000) == 0 {
					keys = append(keys, fmt.Sprintf("User%d@Example%d.com", i, i%1000), fmt.Sprintf("user%d@example%d.com", i+n, i%1000))
				}
			}
			benchBig(b, "hash", text.String(), keys)
		})
	}
	b.Run("cidr-100000", func(b *testing.B) {
		var text strings.Builder
		keys := make([]string, 0, 2000)
		for i := range 100_000 {
			fmt.Fprintf(&text, "10.%d.%d.0/24 REJECT net %d\n", i/256%256, i%256, i)
			if i%100 == 0 {
				keys = append(keys, fmt.Sprintf("10.%d.%d.7", i/256%256, i%256), fmt.Sprintf("192.0.%d.1", i%256))
			}
		}
		benchBig(b, "cidr", text.String(), keys)
	})
}

func benchBig(b *testing.B, typ, text string, keys []string) {
	dir := b.TempDir()
	path := filepath.Join(dir, typ)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	tb, err := Open(typ+":"+path, Options{ReloadCheck: time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	load := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		tb.Lookup(ctx, keys[i%len(keys)])
		i++
	}
	b.StopTimer()
	b.ReportMetric(float64(load.Milliseconds()), "load-ms")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MiB")

	sample := func(stop func() bool) []time.Duration {
		var d []time.Duration
		for j := 0; !stop(); j++ {
			t0 := time.Now()
			tb.Lookup(ctx, keys[j%len(keys)])
			d = append(d, time.Since(t0))
		}
		slices.Sort(d)
		return d
	}
	pct := func(d []time.Duration, p int) float64 { return float64(d[(len(d)-1)*p/100].Nanoseconds()) }
	n := 0
	quiet := sample(func() bool { n++; return n > 200_000 })
	b.ReportMetric(pct(quiet, 50), "p50-ns")
	b.ReportMetric(pct(quiet, 99), "p99-ns")

	// A reload: the file changes, a lookup notices, the lookups go on.
	f := tb.(*fileTable)
	old := f.cur.Load()
	time.Sleep(2 * time.Millisecond)
	later := time.Now().Add(time.Second)
	if err := os.Chtimes(path, later, later); err != nil {
		b.Fatal(err)
	}
	reloadStart := time.Now()
	during := sample(func() bool { return f.cur.Load() != old })
	b.ReportMetric(float64(time.Since(reloadStart).Milliseconds()), "reload-ms")
	b.ReportMetric(pct(during, 99), "p99-reload-ns")

	if typ != "hash" {
		return
	}
	postmap, err := exec.LookPath("postmap")
	if err != nil {
		if _, statErr := os.Stat("/usr/sbin/postmap"); statErr != nil {
			return
		}
		postmap = "/usr/sbin/postmap"
	}
	// postmap reads main.cf from -c DIR; an empty one will do.
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	if out, err := exec.Command(postmap, "-c", dir, "hash:"+path).CombinedOutput(); err != nil {
		b.Fatalf("postmap: %v\n%s", err, out)
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "postmap-build-ms")
	q := exec.Command(postmap, "-c", dir, "-q", "-", "hash:"+path)
	q.Stdin = strings.NewReader(strings.Join(keys, "\n") + "\n")
	var out bytes.Buffer
	q.Stdout = &out
	start = time.Now()
	if err := q.Run(); err != nil {
		b.Fatalf("postmap -q: %v", err)
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(len(keys)), "postmap-q-ns/key")
	if ru, ok := q.ProcessState.SysUsage().(*syscall.Rusage); ok {
		b.ReportMetric(float64(ru.Maxrss)/1024, "postmap-q-RSS-MiB")
	}
	if got := strings.Count(out.String(), "\n"); got != len(keys)/2 {
		b.Fatalf("postmap -q found %d keys, want %d", got, len(keys)/2)
	}
}
