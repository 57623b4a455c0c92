package restriction

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/redisclient"
	"github.com/smtpgate/smtpgate/pkg/redistest"
	"github.com/smtpgate/smtpgate/pkg/resolver"
)

// BenchmarkDNSBLCheck: a Check with reject_rbl_client, listed (a
// refusal) and not listed, answered from the in-process cache, from Redis
// (a fresh resolver each time, so its own cache is empty), and from the
// DNS server (a fresh resolver, no Redis). It reports p50 and p99.
func BenchmarkDNSBLCheck(b *testing.B) {
	stub := startDNSStub(b)
	srv := redistest.Start(b)
	rc, err := redisclient.Open(srv.URL(), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	compileWith := func(r *resolver.Resolver) *Engine {
		f, err := maincf.Parse("main.cf", strings.NewReader(base+"smtpd_client_restrictions = reject_rbl_client bl.test\n"))
		if err != nil {
			b.Fatal(err)
		}
		e, err := CompileWith(maincf.New(testCatalogue(), f, b.TempDir()), Options{DNS: r})
		if err != nil {
			b.Fatal(err)
		}
		return e
	}
	newResolver := func(redis bool) *resolver.Resolver {
		c := resolver.Config{Servers: []string{stub.Addr}}
		if redis {
			c.Redis = rc
		}
		r, err := resolver.New(c)
		if err != nil {
			b.Fatal(err)
		}
		return r
	}
	ctx := context.Background()
	for _, client := range []struct{ name, addr string }{{"listed", "127.0.0.2"}, {"not-listed", "198.51.100.7"}} {
		fs := facts(from(client.addr))
		cached := compileWith(newResolver(true))
		if _, err := cached.Check(ctx, fs); err != nil { // fills both caches
			b.Fatal(err)
		}
		for _, mode := range []string{"in-process", "redis", "dns"} {
			b.Run(fmt.Sprintf("%s/%s", client.name, mode), func(b *testing.B) {
				var ds []time.Duration
				for b.Loop() {
					e := cached
					if mode != "in-process" {
						b.StopTimer()
						e = compileWith(newResolver(mode == "redis"))
						b.StartTimer()
					}
					t0 := time.Now()
					if _, err := e.Check(ctx, fs); err != nil {
						b.Fatal(err)
					}
					ds = append(ds, time.Since(t0))
				}
				slices.Sort(ds)
				b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
}
