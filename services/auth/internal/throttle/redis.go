package throttle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smtpgate/smtpgate/pkg/redisclient"
)

// KeyPrefix starts every Redis key the package writes. Its hash tag puts
// them all in one Redis Cluster slot: one attempt's decision reads and
// writes the counters of its client, its network and its user at once
// (atomically, in one script), and a user's counters are shared by every
// client, so no finer tag keeps each decision's keys together.
const KeyPrefix = "smtpgate:{auth}:"

// Redis counts failures in Redis, shared by every replica that uses the same
// server and database. Each call is one round trip; Fail is atomic (a Lua
// script). On a Redis Cluster, every key lives in KeyPrefix's slot.
type Redis struct {
	params Params
	c      redis.Cmdable
}

// NewRedis counts in c.
func NewRedis(c redis.Cmdable, p Params) *Redis { return &Redis{params: p, c: c} }

// NewRedisClient opens a client for a Redis URL (one server, a Sentinel
// set or a Cluster) whose every command gives up after timeout (see
// pkg/redisclient).
func NewRedisClient(url string, timeout time.Duration) (redis.UniversalClient, error) {
	return redisclient.Open(url, timeout)
}

// reserveScript admits one attempt or refuses it, atomically. The
// attempts in flight of a key are a sorted set of reservation ids scored
// by their expiry (Redis's clock), so that each reservation never given
// back expires on its own.
// KEYS[1]: the known-source key (any key when there is none); then, per
// counted key, its count, in-flight and lock keys.
// ARGV: the reservation's life in ms, 1 when the caller already knows the
// source, how many leading keys count for a known source (0: the source
// cannot be known), the reservation id, then one limit per key (0: never
// full).
// Returns {admitted, known, index of the refusing key, its lock's ms (-3
// when full)}.
var reserveScript = redis.NewScript(`
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = (#KEYS - 1) / 3
local known = 0
local forKnown = tonumber(ARGV[3])
if forKnown > 0 and (ARGV[2] == '1' or redis.call('EXISTS', KEYS[1]) == 1) then
  known = 1
  n = forKnown
end
for i = 1, n do
  local ttl = redis.call('PTTL', KEYS[3 * i + 1])
  if ttl > 0 or ttl == -1 then return {0, known, i, ttl} end
end
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[3 * i], '-inf', now)
  local limit = tonumber(ARGV[4 + i])
  if limit > 0 then
    local f = tonumber(redis.call('GET', KEYS[3 * i - 1]) or '0')
    if f + redis.call('ZCARD', KEYS[3 * i]) >= limit then return {0, known, i, -3} end
  end
end
for i = 1, n do
  redis.call('ZADD', KEYS[3 * i], now + tonumber(ARGV[1]), ARGV[4])
  redis.call('PEXPIRE', KEYS[3 * i], ARGV[1])
end
return {1, known, 0, 0}
`)

// failScript turns a reservation into one failure for each (count,
// in-flight, lock) triple.
// ARGV: window ms, lockout ms, the reservation id, then one limit per
// triple (0: never lock).
// Returns, per triple, the count with this failure and 1 when this failure
// locked the key (its count then starts again).
var failScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS, 3 do
  redis.call('ZREM', KEYS[i + 1], ARGV[3])
  local n = redis.call('INCR', KEYS[i])
  if n == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
  local limit = tonumber(ARGV[3 + (i + 2) / 3])
  local tripped = 0
  if limit > 0 and n >= limit then
    redis.call('SET', KEYS[i + 2], '1', 'PX', ARGV[2])
    redis.call('DEL', KEYS[i])
    tripped = 1
  end
  out[#out + 1] = n
  out[#out + 1] = tripped
end
return out
`)

// releaseScript gives back the places of a reservation.
// KEYS: the in-flight keys; then, with ARGV[1] = 1, the count of the
// client to reset and the known-source key to set for ARGV[2] ms.
// ARGV[3]: the reservation id.
var releaseScript = redis.NewScript(`
local n = #KEYS
if ARGV[1] == '1' then n = n - 2 end
for i = 1, n do
  redis.call('ZREM', KEYS[i], ARGV[3])
end
if ARGV[1] == '1' then
  redis.call('DEL', KEYS[n + 1])
  if KEYS[n + 2] ~= '' and tonumber(ARGV[2]) > 0 then
    redis.call('SET', KEYS[n + 2], '1', 'PX', ARGV[2])
  end
end
return 0
`)

func countKey(k key) string    { return KeyPrefix + "fail:" + k.kind + ":" + k.id }
func inflightKey(k key) string { return KeyPrefix + "inflight:" + k.kind + ":" + k.id }
func lockKey(k key) string     { return KeyPrefix + "lock:" + k.kind + ":" + k.id }
func knownKey(k Keys) string   { return KeyPrefix + "known:" + k.knownID() }

// Reserve implements Store.
func (r *Redis) Reserve(ctx context.Context, k Keys, known bool) (Reservation, Decision, error) {
	res := Reservation{Keys: k}
	keys := k.list(r.params, false)
	if len(keys) == 0 {
		return res, Decision{}, nil
	}
	names := []string{knownKey(k)}
	forKnown := 0
	if k.knownID() != "" && r.params.KnownSource > 0 {
		forKnown = 1 // the client key comes first
	}
	hint := "0"
	if known {
		hint = "1"
	}
	var id [12]byte
	_, _ = rand.Read(id[:])
	res.id = hex.EncodeToString(id[:])
	args := []any{ms(r.params.maxHold()), hint, forKnown, res.id}
	for _, key := range keys {
		names = append(names, countKey(key), inflightKey(key), lockKey(key))
		args = append(args, strconv.FormatInt(key.limit, 10))
	}
	out, err := reserveScript.Run(ctx, r.c, names, args...).Int64Slice()
	if err != nil {
		return res, Decision{}, fmt.Errorf("redis reserve: %w", err)
	}
	if len(out) != 4 || out[2] < 0 || out[2] > int64(len(keys)) {
		return res, Decision{}, fmt.Errorf("redis reserve: unexpected answer %v", out)
	}
	res.Known = out[1] == 1
	if out[0] == 1 {
		return res, Decision{}, nil
	}
	key := keys[out[2]-1]
	if out[3] == -3 {
		return res, Decision{Locked: true, Full: true, Kind: key.kind, Key: key.name}, nil
	}
	return res, Decision{Locked: true, Kind: key.kind, Key: key.name, RetryAfter: max(0, time.Duration(out[3])*time.Millisecond)}, nil
}

// Fail implements Store.
func (r *Redis) Fail(ctx context.Context, res Reservation) (Decision, error) {
	keys := res.list(r.params, res.Known)
	if len(keys) == 0 {
		return Decision{}, nil
	}
	names := make([]string, 0, 3*len(keys))
	args := []any{ms(r.params.Window), ms(r.params.Lockout), res.id}
	for _, key := range keys {
		names = append(names, countKey(key), inflightKey(key), lockKey(key))
		args = append(args, strconv.FormatInt(key.limit, 10))
	}
	out, err := failScript.Run(ctx, r.c, names, args...).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("redis fail: %w", err)
	}
	if len(out) != 2*len(keys) {
		return Decision{}, fmt.Errorf("redis fail: script returned %d values, want %d", len(out), 2*len(keys))
	}
	var d Decision
	var worst int64
	for i, key := range keys {
		n, tripped := out[2*i], out[2*i+1] == 1
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

// end runs releaseScript for res; succeeded also resets the client's
// count and makes the source known.
func (r *Redis) end(ctx context.Context, res Reservation, succeeded bool) error {
	keys := res.list(r.params, res.Known)
	if len(keys) == 0 {
		return nil
	}
	var names []string
	for _, key := range keys {
		names = append(names, inflightKey(key))
	}
	flag := "0"
	if succeeded && keys[0].kind == "client" {
		flag = "1"
		known := ""
		if res.knownID() != "" && r.params.KnownSource > 0 {
			known = knownKey(res.Keys)
		}
		names = append(names, countKey(keys[0]), known)
	}
	return releaseScript.Run(ctx, r.c, names, flag, ms(r.params.KnownSource), res.id).Err()
}

// Succeed implements Store.
func (r *Redis) Succeed(ctx context.Context, res Reservation) error {
	if err := r.end(ctx, res, true); err != nil {
		return fmt.Errorf("redis succeed: %w", err)
	}
	return nil
}

// Release implements Store.
func (r *Redis) Release(ctx context.Context, res Reservation) error {
	if err := r.end(ctx, res, false); err != nil {
		return fmt.Errorf("redis release: %w", err)
	}
	return nil
}

// ms renders d in milliseconds, at least 1 (PEXPIRE and PX refuse 0).
func ms(d time.Duration) string { return strconv.FormatInt(max(1, d.Milliseconds()), 10) }
