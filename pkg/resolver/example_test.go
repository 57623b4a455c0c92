package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/smtpgate/smtpgate/pkg/resolver"
)

// A check in the style of Postfix's reject_unknown_helo_hostname: a name
// without A or MX records is unknown, a lookup failure defers the client
// (never "unknown").
func Example() {
	r, err := resolver.New(resolver.Config{
		Servers: []string{"127.0.0.1:53"}, // empty: /etc/resolv.conf
		Timeout: 2 * time.Second,
		// Redis: redis.NewClient(...) to share the cache between replicas.
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	helo := "mail.example.org"
	_, err = r.LookupA(ctx, helo)
	if errors.Is(err, resolver.ErrNotFound) || errors.Is(err, resolver.ErrNoData) {
		_, err = r.LookupMX(ctx, helo)
	}
	switch {
	case err == nil:
		fmt.Println("known")
	case errors.Is(err, resolver.ErrTemporary):
		fmt.Println("defer: temporary lookup failure")
	default: // ErrNotFound, ErrNoData, ErrInvalidName
		fmt.Println("reject: host not found (unknown_hostname_reject_code)")
	}
}
