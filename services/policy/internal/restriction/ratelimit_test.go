package restriction

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpgate/smtpgate/services/policy/internal/ratelimit"
)

// TestRateLimitExplain: check_rate_limit counts each RCPT TO of a client,
// refuses the one over the limit with Postfix's class text, and Explain
// shows the budget taken as "used/count".
func TestRateLimitExplain(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e, err := CompileWith(config(t, `
smtpgate_rate_limits = { name = rcpts, key = client_address, count = 2, window = 1h }
smtpd_recipient_restrictions = check_rate_limit rcpts
`), Options{RateLimits: ratelimit.NewMemory(100, func() time.Time { return now })})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		Action      Action
		Reply       Reply
		Restriction string
		Lookups     []Lookup
	}
	var got []result
	for range 3 {
		v, steps, err := e.Explain(context.Background(), rcpt("203.0.113.5", "john@example.org"))
		if err != nil {
			t.Fatal(err)
		}
		r := result{Action: v.Action, Reply: v.Reply, Restriction: v.Restriction}
		for _, s := range steps {
			if s.Restriction == "check_rate_limit rcpts" {
				r.Lookups = append(r.Lookups, s.Lookups...)
			}
		}
		got = append(got, r)
	}
	lookup := func(found bool, value string) []Lookup {
		return []Lookup{{Table: "rate rcpts", Key: "203.0.113.5", Found: found, Value: value}}
	}
	want := []result{
		{Action: ActionPermit, Lookups: lookup(false, "1/2")},
		{Action: ActionPermit, Lookups: lookup(false, "2/2")},
		{Action: ActionDefer, Reply: Reply{450, "4.7.1", "<john@example.org>: Recipient address rejected: Rate limit exceeded (2 per 1h0m0s)"},
			Restriction: "check_rate_limit rcpts", Lookups: lookup(true, "2/2")},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("three RCPT TO (-want +got):\n%s", diff)
	}
}
