package resolver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisKey is where k's entry lives in Redis.
func redisKey(k key) string { return RedisKeyPrefix + typeString(k.qtype) + ":" + k.name }

// redisHealth remembers Redis failures: whether Redis is being left alone,
// and when the last warning was logged.
type redisHealth struct {
	mu         sync.Mutex
	down       bool      // the last call failed
	retryAt    time.Time // Redis is left alone until then
	loggedAt   time.Time // last warning
	suppressed int       // failures since the last warning
}

// usable reports whether Redis may be asked at now.
func (h *redisHealth) usable(now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.down || !now.Before(h.retryAt)
}

// redisFailed records a failed Redis call and logs it, at most once per
// redisLogInterval.
func (r *Resolver) redisFailed(ctx context.Context, op string, err error) {
	r.stats.redisErrors.Add(1)
	now := r.now()
	h := &r.health
	h.mu.Lock()
	h.down = true
	h.retryAt = now.Add(r.redisRetry)
	h.suppressed++
	n := h.suppressed
	logIt := h.loggedAt.IsZero() || now.Sub(h.loggedAt) >= redisLogInterval
	if logIt {
		h.loggedAt, h.suppressed = now, 0
	}
	h.mu.Unlock()
	if logIt {
		r.log.WarnContext(ctx, "redis cache unavailable, asking DNS directly",
			"op", op, "error", err, "failures", n, "retry_after", r.redisRetry)
	}
}

// redisOK records a Redis call that worked, and says so once after failures.
func (r *Resolver) redisOK(ctx context.Context) {
	h := &r.health
	h.mu.Lock()
	was := h.down
	h.down = false
	h.mu.Unlock()
	if was {
		r.log.InfoContext(ctx, "redis cache available again")
	}
}

// redisCall runs fn with a context bounded by RedisTimeout and stops
// waiting when it ends, even if the client ignores contexts: a slow Redis
// never holds a lookup longer than that.
func redisCall[T any](ctx context.Context, timeout time.Duration, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := fn(ctx)
		ch <- result{v, err}
	}()
	select {
	case res := <-ch:
		return res.v, res.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("no reply within %v: %w", timeout, ctx.Err())
	}
}

// redisGet reads k's entry from Redis. It returns false on a miss, an
// expired or undecodable entry, a failure, or while Redis is left alone.
func (r *Resolver) redisGet(ctx context.Context, k key) (*entry, bool) {
	if !r.health.usable(r.now()) {
		r.stats.redisFallbacks.Add(1)
		return nil, false
	}
	b, err := redisCall(ctx, r.redisTO, func(ctx context.Context) ([]byte, error) {
		return r.redis.Get(ctx, redisKey(k)).Bytes()
	})
	if errors.Is(err, redis.Nil) {
		r.redisOK(ctx)
		return nil, false
	}
	if err != nil {
		r.redisFailed(ctx, "get", err)
		r.stats.redisFallbacks.Add(1)
		return nil, false
	}
	r.redisOK(ctx)
	e, err := decodeEntry(b)
	if err != nil {
		r.stats.redisErrors.Add(1)
		r.log.WarnContext(ctx, "redis cache entry undecodable, asking DNS", "key", redisKey(k), "error", err)
		return nil, false
	}
	if !r.now().Before(e.expires) {
		return nil, false
	}
	return e, true
}

// redisSet writes e under k, to expire when e does.
func (r *Resolver) redisSet(ctx context.Context, k key, e *entry) {
	ttl := e.expires.Sub(r.now()).Truncate(time.Millisecond)
	if ttl < time.Millisecond || !r.health.usable(r.now()) {
		return
	}
	_, err := redisCall(ctx, r.redisTO, func(ctx context.Context) (string, error) {
		return r.redis.Do(ctx, "SET", redisKey(k), encodeEntry(e), "PX", ttl.Milliseconds()).Text()
	})
	if err != nil {
		r.redisFailed(ctx, "set", err)
		return
	}
	r.redisOK(ctx)
}
