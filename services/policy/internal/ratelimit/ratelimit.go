// Package ratelimit counts events per key in a time window for
// smtpgate-policy's rate limits and quotas: messages, recipients or bytes
// per client address, network, SASL user, sender or sender domain. Counts
// live in Redis when one is configured, shared by every policy replica and
// exact under concurrency (one atomic Lua script per decision), or in
// process otherwise.
//
// The algorithm is a fixed window per key: the first event of a window
// starts it and sets its expiry, and every event adds its cost; a
// decision is "allowed" when the total stays within the limit. A refused
// event is not counted, so a client that is refused does not use up the
// next window. Keys come from SMTP clients and are hashed before they
// reach Redis.
//
// Fail mode: when Redis fails, Allow answers allowed (fail open, as the
// limits protect capacity, not security) and the caller counts and logs
// it; the error says so.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeyPrefix starts every Redis key the package writes.
const KeyPrefix = "smtpgate:rate:"

// ErrStore wraps a failure of the shared store; the decision that comes
// with it is "allowed".
var ErrStore = errors.New("rate limit store unavailable")

// Limit is a budget: Count units per Window.
type Limit struct {
	Count  int64
	Window time.Duration
}

// Decision is the answer for one event.
type Decision struct {
	Allowed bool
	// Used is the window's total with this event when allowed, without
	// it when refused.
	Used int64
	// Reset is how long until the window ends.
	Reset time.Duration
}

// Counter decides events against limits.
type Counter interface {
	// Allow adds cost to key's window if that keeps it within l.
	Allow(ctx context.Context, name, key string, cost int64, l Limit) (Decision, error)
}

// redisKey hashes the untrusted key.
func redisKey(name, key string) string {
	h := sha256.Sum256([]byte(key))
	return KeyPrefix + name + ":" + hex.EncodeToString(h[:16])
}

// Redis counts in Redis.
type Redis struct{ c redis.Cmdable }

// NewRedis counts in c.
func NewRedis(c redis.Cmdable) *Redis { return &Redis{c: c} }

// allowScript adds ARGV[1] to KEYS[1] if the total stays within ARGV[2];
// the window (ARGV[3] ms) starts with the key's first event. Returns
// {allowed, used, ttl ms}.
var allowScript = redis.NewScript(`
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local cost, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if used + cost > limit then
  local ttl = redis.call('PTTL', KEYS[1])
  return {0, used, ttl}
end
used = redis.call('INCRBY', KEYS[1], cost)
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], window)
  ttl = window
end
return {1, used, ttl}
`)

// Allow implements Counter.
func (r *Redis) Allow(ctx context.Context, name, key string, cost int64, l Limit) (Decision, error) {
	res, err := allowScript.Run(ctx, r.c, []string{redisKey(name, key)}, cost, l.Count, l.Window.Milliseconds()).Int64Slice()
	if err != nil || len(res) != 3 {
		return Decision{Allowed: true}, fmt.Errorf("%w: %s: %v", ErrStore, name, err)
	}
	return Decision{Allowed: res[0] == 1, Used: res[1], Reset: time.Duration(res[2]) * time.Millisecond}, nil
}

// Memory counts in process: each replica alone.
type Memory struct {
	mu  sync.Mutex
	now func() time.Time
	m   map[string]*window
	max int
}

type window struct {
	used int64
	end  time.Time
}

// NewMemory counts in process, at most max keys (oldest windows dropped
// first when full); now is the clock (nil: time.Now).
func NewMemory(max int, now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, m: map[string]*window{}, max: max}
}

// Allow implements Counter.
func (m *Memory) Allow(_ context.Context, name, key string, cost int64, l Limit) (Decision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	k := name + "\x00" + key
	w, ok := m.m[k]
	if !ok || !now.Before(w.end) {
		if len(m.m) >= m.max {
			m.evict(now)
		}
		w = &window{end: now.Add(l.Window)}
		m.m[k] = w
	}
	if w.used+cost > l.Count {
		return Decision{Allowed: false, Used: w.used, Reset: w.end.Sub(now)}, nil
	}
	w.used += cost
	return Decision{Allowed: true, Used: w.used, Reset: w.end.Sub(now)}, nil
}

// evict drops ended windows, or the one ending first.
func (m *Memory) evict(now time.Time) {
	var first string
	var firstEnd time.Time
	for k, w := range m.m {
		if !now.Before(w.end) {
			delete(m.m, k)
			continue
		}
		if first == "" || w.end.Before(firstEnd) {
			first, firstEnd = k, w.end
		}
	}
	if len(m.m) >= m.max && first != "" {
		delete(m.m, first)
	}
}
