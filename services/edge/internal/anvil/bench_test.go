package anvil

import (
	"context"
	"strconv"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// BenchmarkAdmit is one connection's admission and release against a
// real redis-server on loopback (both limits on), from parallel clients
// of many addresses.
func BenchmarkAdmit(b *testing.B) {
	srv := redistest.Start(b)
	c := edgeB(b, srv)
	l := Limits{Count: 50, Rate: 1 << 30}
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		i := 0
		for pb.Next() {
			i++
			d, release, err := c.Admit(ctx, Key{Client: "25|192.0.2." + strconv.Itoa(i%250)}, l)
			if err != nil || !d.Admitted {
				b.Errorf("%+v %v", d, err)
				return
			}
			release()
		}
	})
}
