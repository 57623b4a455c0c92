package throttle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"go.opentelemetry.io/otel/trace"
)

// DefaultTimeout bounds each Redis call when Options.Timeout is zero.
const DefaultTimeout = 200 * time.Millisecond

// Options configure a Limiter.
type Options struct {
	Params
	// RedisURL is smtpgate_auth_redis; empty counts in process memory only.
	RedisURL string
	// Timeout bounds each Redis call (DefaultTimeout when zero).
	Timeout time.Duration
	Logger  *slog.Logger
	// TracerProvider traces the Redis calls; nil or no-op: not traced.
	TracerProvider trace.TracerProvider
}

// Limiter is the Store smtpgate-auth uses: Redis when configured, with the
// in-process counts kept alongside and answering whenever Redis cannot (see
// the package documentation). Lockouts are logged once, by the replica
// whose failure started them. It is safe for concurrent use.
type Limiter struct {
	// Backoff is how long Redis is left alone after it failed.
	Backoff time.Duration
	// WarnEvery is how often a Redis outage is logged.
	WarnEvery time.Duration

	shared  Store // nil: memory only
	mem     *Memory
	close   func() error
	timeout time.Duration
	log     *slog.Logger

	redisErrors atomic.Uint64

	mu        sync.Mutex
	downUntil time.Time
	warned    time.Time
	degraded  bool
}

// New builds a Limiter from o.
func New(o Options) (*Limiter, error) {
	mem := NewMemory(o.Params)
	if o.RedisURL == "" {
		return NewLimiter(nil, mem, o.Logger), nil
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	c, err := NewRedisClient(o.RedisURL, o.Timeout)
	if err != nil {
		return nil, err
	}
	if o.TracerProvider != nil {
		// Commands carry client addresses and user names: not recorded.
		if err := redisotel.InstrumentTracing(c, redisotel.WithTracerProvider(o.TracerProvider), redisotel.WithDBStatement(false)); err != nil {
			c.Close()
			return nil, fmt.Errorf("tracing redis: %w", err)
		}
	}
	l := NewLimiter(NewRedis(c, o.Params), mem, o.Logger)
	l.timeout, l.close = o.Timeout, c.Close
	return l, nil
}

// NewLimiter puts shared (nil for none) in front of mem.
func NewLimiter(shared Store, mem *Memory, log *slog.Logger) *Limiter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Limiter{Backoff: 5 * time.Second, WarnEvery: time.Minute, shared: shared, mem: mem, timeout: DefaultTimeout, log: log}
}

// Close releases the Redis connections.
func (l *Limiter) Close() error {
	if l.close == nil {
		return nil
	}
	return l.close()
}

// RedisErrors is how many Redis calls failed (or timed out) so far.
func (l *Limiter) RedisErrors() uint64 { return l.redisErrors.Load() }

// Shared reports whether the counts are shared through Redis.
func (l *Limiter) Shared() bool { return l.shared != nil }

// useShared reports whether Redis should be asked now.
func (l *Limiter) useShared() bool {
	if l.shared == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.mem.now().Before(l.downUntil)
}

// result notes how a Redis call went; err == nil clears a degradation.
func (l *Limiter) result(ctx context.Context, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.mem.now()
	if err == nil {
		if l.degraded {
			l.degraded = false
			l.log.InfoContext(ctx, "authentication throttling: redis answers again; failures are shared again")
		}
		return
	}
	l.redisErrors.Add(1)
	l.downUntil = now.Add(l.Backoff)
	l.degraded = true
	if l.warned.IsZero() || now.Sub(l.warned) >= l.WarnEvery {
		l.warned = now
		l.log.WarnContext(ctx, "authentication throttling: redis failed; counting failures in this process only", "err", err, "retry_in", l.Backoff)
	}
}

// ask runs f against Redis within the timeout. ok is false when Redis was
// not asked or failed; err is set only when ctx itself ended.
func (l *Limiter) ask(ctx context.Context, f func(context.Context) error) (ok bool, err error) {
	if !l.useShared() {
		return false, nil
	}
	rctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	ferr := f(rctx)
	if ferr != nil && ctx.Err() != nil {
		return false, ctx.Err()
	}
	if ferr != nil && errors.Is(ferr, context.DeadlineExceeded) {
		ferr = fmt.Errorf("no answer within %v: %w", l.timeout, ferr)
	}
	l.result(ctx, ferr)
	return ferr == nil, nil
}

// Check implements Store. A lockout known to Redis or to this process
// holds.
func (l *Limiter) Check(ctx context.Context, k Keys) (Decision, error) {
	d, _ := l.mem.Check(ctx, k)
	if d.Locked {
		return d, nil
	}
	var rd Decision
	ok, err := l.ask(ctx, func(ctx context.Context) (err error) {
		rd, err = l.shared.Check(ctx, k)
		return err
	})
	if err != nil {
		return Decision{}, err
	}
	if ok {
		return rd, nil
	}
	return d, nil
}

// Fail implements Store.
func (l *Limiter) Fail(ctx context.Context, k Keys) (Decision, error) {
	d, _ := l.mem.Fail(ctx, k)
	var rd Decision
	ok, err := l.ask(ctx, func(ctx context.Context) (err error) {
		rd, err = l.shared.Fail(ctx, k)
		return err
	})
	if err != nil {
		return d, err
	}
	if ok {
		d = rd
	}
	if d.Tripped {
		l.log.WarnContext(ctx, "authentication lockout", "kind", d.Kind, "key", d.Key, "for", d.RetryAfter, "shared", ok)
	}
	return d, nil
}

// Succeed implements Store.
func (l *Limiter) Succeed(ctx context.Context, k Keys) error {
	_ = l.mem.Succeed(ctx, k)
	_, err := l.ask(ctx, func(ctx context.Context) error { return l.shared.Succeed(ctx, k) })
	return err
}
