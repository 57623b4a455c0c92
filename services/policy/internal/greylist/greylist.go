// Package greylist keeps greylisting state with postgrey's semantics: a
// triplet (client network, sender, recipient) seen for the first time is
// deferred; a retry after Delay and within RetryWindow passes, and so does
// every later delivery of that triplet until it has not been seen for
// MaxAge; a client network whose mail passed AutoAllowlist times passes
// without greylisting. State lives in Redis, shared by every policy
// replica (one atomic Lua script per decision), or in process.
//
// The inputs come from SMTP clients and are hashed before they reach
// Redis. When Redis fails, Check returns an error wrapping ErrStore and the
// caller skips greylisting (the documented fail mode: mail is not held
// hostage to Redis).
package greylist

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
const KeyPrefix = "smtpgate:grey:"

// ErrStore wraps a failure of the shared store.
var ErrStore = errors.New("greylist store unavailable")

// Params are the greylisting settings (postgrey's --delay,
// --retry-window, --max-age, --auto-whitelist-clients).
type Params struct {
	Delay, RetryWindow, MaxAge time.Duration
	// AutoAllowlist is how many passed deliveries allowlist a client
	// network; 0 never.
	AutoAllowlist int
}

// Result is a decision.
type Result struct {
	Pass bool
	// Wait is how long until a retry passes, when not passing.
	Wait time.Duration
	// Allowlisted: the client network passed without a triplet check.
	Allowlisted bool
}

// Store decides.
type Store interface {
	Check(ctx context.Context, client, sender, recipient string, now time.Time) (Result, error)
}

func hash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Redis keeps the state in Redis.
type Redis struct {
	c redis.Cmdable
	p Params
}

// NewRedis keeps the state in c.
func NewRedis(c redis.Cmdable, p Params) *Redis { return &Redis{c: c, p: p} }

// checkScript: KEYS[1] the triplet, KEYS[2] the client's pass counter.
// ARGV: now ms, delay ms, retry window ms, max age ms, auto-allowlist.
// Returns {pass (0/1), wait ms, allowlisted (0/1)}.
var checkScript = redis.NewScript(`
local now, delay, retry, maxage, auto = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if auto > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= auto then
  return {1, 0, 1}
end
local first = tonumber(redis.call('HGET', KEYS[1], 'first') or '-1')
local passed = redis.call('HGET', KEYS[1], 'passed')
if passed then
  redis.call('PEXPIRE', KEYS[1], maxage)
  return {1, 0, 0}
end
if first < 0 or now - first > retry then
  redis.call('HSET', KEYS[1], 'first', now)
  redis.call('PEXPIRE', KEYS[1], retry + delay)
  return {0, delay, 0}
end
if now - first < delay then
  return {0, delay - (now - first), 0}
end
redis.call('HSET', KEYS[1], 'passed', '1')
redis.call('PEXPIRE', KEYS[1], maxage)
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], maxage)
return {1, 0, 0}
`)

// redisKeys are the triplet's key and its client's pass counter. The
// client's hash is their hash tag: both live in one Redis Cluster slot,
// and different clients spread over the slots.
func redisKeys(client, sender, recipient string) []string {
	tag := KeyPrefix + "{" + hash(client) + "}:"
	return []string{tag + "t:" + hash(client, sender, recipient), tag + "c"}
}

// Check implements Store.
func (r *Redis) Check(ctx context.Context, client, sender, recipient string, now time.Time) (Result, error) {
	keys := redisKeys(client, sender, recipient)
	res, err := checkScript.Run(ctx, r.c, keys, now.UnixMilli(), r.p.Delay.Milliseconds(), r.p.RetryWindow.Milliseconds(),
		r.p.MaxAge.Milliseconds(), r.p.AutoAllowlist).Int64Slice()
	if err != nil || len(res) != 3 {
		return Result{}, fmt.Errorf("%w: %v", ErrStore, err)
	}
	return Result{Pass: res[0] == 1, Wait: time.Duration(res[1]) * time.Millisecond, Allowlisted: res[2] == 1}, nil
}

// Memory keeps the state in process (each replica alone).
type Memory struct {
	p       Params
	mu      sync.Mutex
	triples map[string]*triplet
	clients map[string]*passes
	max     int
}

type triplet struct {
	first, last time.Time
	passed      bool
}

type passes struct {
	n    int
	last time.Time
}

// NewMemory keeps at most max triplets.
func NewMemory(p Params, max int) *Memory {
	return &Memory{p: p, triples: map[string]*triplet{}, clients: map[string]*passes{}, max: max}
}

// Check implements Store.
func (m *Memory) Check(_ context.Context, client, sender, recipient string, now time.Time) (Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.clients[client]; c != nil && now.Sub(c.last) < m.p.MaxAge && m.p.AutoAllowlist > 0 && c.n >= m.p.AutoAllowlist {
		return Result{Pass: true, Allowlisted: true}, nil
	}
	k := hash(client, sender, recipient)
	t := m.triples[k]
	switch {
	case t != nil && t.passed && now.Sub(t.last) < m.p.MaxAge:
		t.last = now
		return Result{Pass: true}, nil
	case t == nil || t.passed || now.Sub(t.first) > m.p.RetryWindow:
		if len(m.triples) >= m.max {
			m.evict(now)
		}
		m.triples[k] = &triplet{first: now, last: now}
		return Result{Wait: m.p.Delay}, nil
	case now.Sub(t.first) < m.p.Delay:
		return Result{Wait: m.p.Delay - now.Sub(t.first)}, nil
	}
	t.passed, t.last = true, now
	c := m.clients[client]
	if c == nil || now.Sub(c.last) >= m.p.MaxAge {
		c = &passes{}
		m.clients[client] = c
	}
	c.n++
	c.last = now
	return Result{Pass: true}, nil
}

// evict drops the oldest triplets' expired entries, or one at random.
func (m *Memory) evict(now time.Time) {
	for k, t := range m.triples {
		if (t.passed && now.Sub(t.last) >= m.p.MaxAge) || (!t.passed && now.Sub(t.first) > m.p.RetryWindow) {
			delete(m.triples, k)
		}
	}
	for k := range m.triples {
		if len(m.triples) < m.max {
			break
		}
		delete(m.triples, k)
	}
}
