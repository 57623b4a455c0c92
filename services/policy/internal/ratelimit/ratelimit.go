// Package ratelimit counts events per key in a time window for
// smtpgate-policy's rate limits and quotas: messages, recipients or bytes
// per client address, network, SASL user, sender or sender domain. Counts
// live in Redis when one is configured, shared by every policy replica and
// exact under concurrency (one atomic Lua script per decision), or in
// process otherwise.
//
// The algorithm is GCRA (the generic cell rate algorithm): a limit of
// Count per Window lets a burst of Count through at once, then one unit
// every Window/Count, so there is no window edge where twice the limit
// can pass. Each key keeps one number, its theoretical arrival time; an
// event of cost c is allowed when that time, moved on by c units, is at
// most Window ahead of now. A refused event is not counted. Keys come from
// SMTP clients and are hashed before they reach Redis.
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
	"math"
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
	// Used is how much of the budget is taken (with this event when
	// allowed, without it when refused), rounded up.
	Used int64
	// Reset is how long until the budget is whole again.
	Reset time.Duration
}

// Counter decides events against limits.
type Counter interface {
	// Allow adds cost to key's window if that keeps it within l.
	Allow(ctx context.Context, name, key string, cost int64, l Limit) (Decision, error)
}

// redisKey hashes the untrusted key: KeyPrefix, name, ":" and 32 hex
// digits, written in one allocation.
func redisKey(name, key string) string {
	h := sha256.Sum256([]byte(key))
	var buf [128]byte
	b := append(buf[:0], KeyPrefix...)
	b = append(b, name...)
	b = append(b, ':')
	return string(hex.AppendEncode(b, h[:16]))
}

// Redis counts in Redis.
type Redis struct{ c redis.Cmdable }

// NewRedis counts in c.
func NewRedis(c redis.Cmdable) *Redis { return &Redis{c: c} }

// allowScript is GCRA on Redis's own clock, so that replicas with
// skewed clocks agree. KEYS[1] holds the theoretical arrival time in ms.
// ARGV: cost, count, window ms. Returns {allowed, used, reset ms}.
var allowScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cost, count, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local unit = window / count
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new = tat + cost * unit
if new - now > window then
  return {0, math.ceil((tat - now) / unit), math.ceil(tat - now)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new), 'PX', math.ceil(new - now) + 1)
return {1, math.ceil((new - now) / unit), math.ceil(new - now)}
`)

// Allow implements Counter.
func (r *Redis) Allow(ctx context.Context, name, key string, cost int64, l Limit) (Decision, error) {
	res, err := allowScript.Run(ctx, r.c, []string{redisKey(name, key)}, cost, l.Count, float64(l.Window)/float64(time.Millisecond)).Slice()
	if err != nil {
		return Decision{Allowed: true}, fmt.Errorf("%w: %s: %w", ErrStore, name, err)
	}
	var v [3]int64
	if len(res) != len(v) {
		return Decision{Allowed: true}, fmt.Errorf("%w: %s: script returned %d values, want 3", ErrStore, name, len(res))
	}
	for i, x := range res {
		n, ok := x.(int64)
		if !ok {
			return Decision{Allowed: true}, fmt.Errorf("%w: %s: script returned %T, want integers", ErrStore, name, x)
		}
		v[i] = n
	}
	return Decision{Allowed: v[0] == 1, Used: v[1], Reset: time.Duration(v[2]) * time.Millisecond}, nil
}

// Memory counts in process: each replica alone.
type Memory struct {
	mu  sync.Mutex
	now func() time.Time
	m   map[string]time.Time // theoretical arrival times
	max int
}

// NewMemory counts in process, at most max keys (the ones whose budget is
// whole again dropped first when full); now is the clock (nil: time.Now).
func NewMemory(max int, now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, m: map[string]time.Time{}, max: max}
}

// Allow implements Counter.
func (m *Memory) Allow(_ context.Context, name, key string, cost int64, l Limit) (Decision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	k := name + "\x00" + key
	unit := float64(l.Window) / float64(l.Count)
	tat, ok := m.m[k]
	if !ok || tat.Before(now) {
		tat = now
	}
	used := func(t time.Time) int64 { return int64(math.Ceil(float64(t.Sub(now)) / unit)) }
	next := tat.Add(time.Duration(float64(cost) * unit))
	if next.Sub(now) > l.Window {
		return Decision{Allowed: false, Used: used(tat), Reset: tat.Sub(now)}, nil
	}
	if !ok && len(m.m) >= m.max {
		m.evict(now)
	}
	m.m[k] = next
	return Decision{Allowed: true, Used: used(next), Reset: next.Sub(now)}, nil
}

// evict drops keys whose budget is whole again, or any one.
func (m *Memory) evict(now time.Time) {
	for k, t := range m.m {
		if !t.After(now) {
			delete(m.m, k)
		}
	}
	for k := range m.m {
		if len(m.m) < m.max {
			break
		}
		delete(m.m, k)
	}
}
