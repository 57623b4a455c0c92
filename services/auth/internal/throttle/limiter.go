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

// Limiter is what smtpgate-auth throttles with: Redis when configured,
// with the in-process counts kept alongside and answering whenever Redis
// cannot (see the package documentation). Lockouts are logged once, by the
// replica whose failure started them. It is safe for concurrent use.
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

// Hold is an attempt Reserve admitted: its places in the counts, in
// process memory and, when Redis answered, in Redis. Exactly one of Fail,
// Succeed and Release ends it; later calls do nothing. It is not safe for
// concurrent use.
type Hold struct {
	l      *Limiter
	mem    Reservation
	shared *Reservation // nil: Redis did not take part
	ended  bool
}

// Known reports whether the attempt came from a known source of its user.
func (h *Hold) Known() bool { return h.mem.Known }

// Reserve admits one attempt for k, or refuses it (Decision.Locked, nil
// Hold) because a key is locked or full, in Redis or in this process.
// Redis decides whether the source is known when it answers (a source
// known to this process only is known too).
func (l *Limiter) Reserve(ctx context.Context, k Keys) (*Hold, Decision, error) {
	h := &Hold{l: l}
	known := l.mem.Known(k)
	var rr Reservation
	var rd Decision
	ok, err := l.ask(ctx, func(ctx context.Context) (err error) {
		rr, rd, err = l.shared.Reserve(ctx, k, known)
		return err
	})
	if err != nil {
		return nil, Decision{}, err
	}
	if ok {
		if rd.Locked {
			return nil, rd, nil
		}
		h.shared, known = &rr, rr.Known
	}
	mr, md, _ := l.mem.Reserve(ctx, k, known)
	if md.Locked {
		if h.shared != nil {
			_, _ = l.ask(ctx, func(ctx context.Context) error { return l.shared.Release(ctx, *h.shared) })
		}
		return nil, md, nil
	}
	h.mem = mr
	return h, Decision{}, nil
}

// end marks h ended and reports whether it already was.
func (h *Hold) end() bool {
	if h == nil || h.ended {
		return true
	}
	h.ended = true
	return false
}

// Fail records the attempt as a failure: how long to wait before
// answering it, and whether it started a lockout.
func (h *Hold) Fail(ctx context.Context) Decision {
	if h.end() {
		return Decision{}
	}
	l := h.l
	// A password was checked: it counts even if the caller went away.
	ctx = context.WithoutCancel(ctx)
	d, _ := l.mem.Fail(ctx, h.mem)
	ok := false
	if h.shared != nil {
		var rd Decision
		ok, _ = l.ask(ctx, func(ctx context.Context) (err error) {
			rd, err = l.shared.Fail(ctx, *h.shared)
			return err
		})
		if ok {
			d = rd
		}
	}
	if d.Tripped {
		l.log.WarnContext(ctx, "authentication lockout", "kind", d.Kind, "key", d.Key, "for", d.RetryAfter, "shared", ok)
	}
	return d
}

// Succeed records the attempt as a success: the client's failures are
// forgotten and the address becomes a known source of the user.
func (h *Hold) Succeed(ctx context.Context) { h.finish(ctx, Store.Succeed) }

// Release gives the attempt's places back: the exchange ended without a
// verdict on the credentials. Fail, Succeed and Release run even when ctx
// has ended (the caller went away), within the Redis timeout; a Redis
// failure is logged and counted, and leaves the in-process counts.
func (h *Hold) Release(ctx context.Context) { h.finish(ctx, Store.Release) }

// finish ends the attempt with end (Store.Succeed or Store.Release) in
// process memory and, when Redis took part, in Redis; only the first
// Fail, Succeed or Release of a Hold counts.
func (h *Hold) finish(ctx context.Context, end func(Store, context.Context, Reservation) error) {
	if h.end() {
		return
	}
	l := h.l
	ctx = context.WithoutCancel(ctx)
	_ = end(l.mem, ctx, h.mem)
	if h.shared != nil {
		_, _ = l.ask(ctx, func(ctx context.Context) error { return end(l.shared, ctx, *h.shared) })
	}
}
