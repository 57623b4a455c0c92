package policy

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgate/smtpgate/pkg/telemetry"
	"github.com/smtpgate/smtpgate/services/policy/internal/greylist"
	"github.com/smtpgate/smtpgate/services/policy/internal/ratelimit"
)

// sharedFailures counts the decisions check_rate_limit and check_greylist
// took without their Redis: rate limits failed open, greylisting skipped.
type sharedFailures struct{ rateLimit, greylist atomic.Uint64 }

// register exports the counts as
// smtpgate_policy_shared_state_failures_total{state}.
func (f *sharedFailures) register(r prometheus.Registerer) {
	for state, n := range map[string]*atomic.Uint64{"rate_limit": &f.rateLimit, "greylist": &f.greylist} {
		telemetry.Register(r, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "smtpgate_policy_shared_state_failures_total",
			Help:        "Decisions taken without Redis because it failed: rate_limit (check_rate_limit failed open), greylist (check_greylist skipped).",
			ConstLabels: prometheus.Labels{"state": state},
		}, func() float64 { return float64(n.Load()) }))
	}
}

// countedLimits counts the store failures of a rate-limit counter.
type countedLimits struct {
	ratelimit.Counter
	failures *atomic.Uint64
}

func (c countedLimits) Allow(ctx context.Context, name, key string, cost int64, l ratelimit.Limit) (ratelimit.Decision, error) {
	d, err := c.Counter.Allow(ctx, name, key, cost, l)
	if errors.Is(err, ratelimit.ErrStore) {
		c.failures.Add(1)
	}
	return d, err
}

// countedGreylist counts the store failures of a greylist store.
type countedGreylist struct {
	greylist.Store
	failures *atomic.Uint64
}

func (c countedGreylist) Check(ctx context.Context, client, sender, recipient string, now time.Time) (greylist.Result, error) {
	r, err := c.Store.Check(ctx, client, sender, recipient, now)
	if errors.Is(err, greylist.ErrStore) {
		c.failures.Add(1)
	}
	return r, err
}
