package throttle

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smtpgate/smtpgate/pkg/redisclient"
)

// KeyPrefix starts every Redis key the package writes.
const KeyPrefix = "smtpgate:auth:"

// Redis counts failures in Redis, shared by every replica that uses the same
// server and database. Each call is one round trip; Fail is atomic (a Lua
// script). Redis Cluster is not supported (the keys of one attempt do not
// share a slot).
type Redis struct {
	params Params
	c      redis.Cmdable
}

// NewRedis counts in c.
func NewRedis(c redis.Cmdable, p Params) *Redis { return &Redis{params: p, c: c} }

// NewRedisClient opens a client for a redis:// or rediss:// URL whose
// every command gives up after timeout (see pkg/redisclient).
func NewRedisClient(url string, timeout time.Duration) (*redis.Client, error) {
	return redisclient.Open(url, timeout)
}

// failScript counts one failure for each (count key, lock key) pair.
// ARGV: window ms, lockout ms, then one limit per pair (0: never lock).
// Returns, per pair, the count with this failure and 1 when this failure
// locked the key (its count then starts again).
var failScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS, 2 do
  local n = redis.call('INCR', KEYS[i])
  if n == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
  local limit = tonumber(ARGV[2 + (i + 1) / 2])
  local tripped = 0
  if limit > 0 and n >= limit then
    redis.call('SET', KEYS[i + 1], '1', 'PX', ARGV[2])
    redis.call('DEL', KEYS[i])
    tripped = 1
  end
  out[#out + 1] = n
  out[#out + 1] = tripped
end
return out
`)

// checkScript returns the remaining milliseconds of each lock key (-2 when
// absent).
var checkScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS do out[i] = redis.call('PTTL', KEYS[i]) end
return out
`)

func countKey(k key) string { return KeyPrefix + "fail:" + k.kind + ":" + k.id }
func lockKey(k key) string  { return KeyPrefix + "lock:" + k.kind + ":" + k.id }

// Check implements Store.
func (r *Redis) Check(ctx context.Context, k Keys) (Decision, error) {
	keys := k.list(r.params)
	if len(keys) == 0 {
		return Decision{}, nil
	}
	names := make([]string, len(keys))
	for i, key := range keys {
		names[i] = lockKey(key)
	}
	ttls, err := checkScript.Run(ctx, r.c, names).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("redis check: %w", err)
	}
	for i, ms := range ttls {
		if ms > 0 || ms == -1 {
			return Decision{Locked: true, Kind: keys[i].kind, Key: keys[i].name, RetryAfter: max(0, time.Duration(ms)*time.Millisecond)}, nil
		}
	}
	return Decision{}, nil
}

// Fail implements Store.
func (r *Redis) Fail(ctx context.Context, k Keys) (Decision, error) {
	keys := k.list(r.params)
	if len(keys) == 0 {
		return Decision{}, nil
	}
	names := make([]string, 0, 2*len(keys))
	args := []any{ms(r.params.Window), ms(r.params.Lockout)}
	for _, key := range keys {
		names = append(names, countKey(key), lockKey(key))
		args = append(args, strconv.FormatInt(key.limit, 10))
	}
	res, err := failScript.Run(ctx, r.c, names, args...).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("redis fail: %w", err)
	}
	if len(res) != 2*len(keys) {
		return Decision{}, fmt.Errorf("redis fail: script returned %d values, want %d", len(res), 2*len(keys))
	}
	var d Decision
	var worst int64
	for i, key := range keys {
		n, tripped := res[2*i], res[2*i+1] == 1
		if key.kind != "network" {
			worst = max(worst, n)
		}
		if tripped && !d.Tripped {
			d = Decision{Locked: true, Tripped: true, Kind: key.kind, Key: key.name, RetryAfter: r.params.Lockout}
		}
	}
	d.Delay = r.params.delay(worst)
	return d, nil
}

// Succeed implements Store.
func (r *Redis) Succeed(ctx context.Context, k Keys) error {
	var names []string
	for _, key := range k.list(r.params) {
		if key.kind != "network" {
			names = append(names, countKey(key))
		}
	}
	if len(names) == 0 {
		return nil
	}
	if err := r.c.Del(ctx, names...).Err(); err != nil {
		return fmt.Errorf("redis succeed: %w", err)
	}
	return nil
}

// ms renders d in milliseconds, at least 1 (PEXPIRE and PX refuse 0).
func ms(d time.Duration) string { return strconv.FormatInt(max(1, d.Milliseconds()), 10) }
