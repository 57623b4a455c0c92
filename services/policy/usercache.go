package policy

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgate/smtpgate/pkg/telemetry"
)

// userCacheSize bounds the users an auth:users cache remembers. When it is
// full, a new user replaces one picked at random (Go's map order), which
// needs no bookkeeping per hit and is fair enough for a cache this short.
const userCacheSize = 10000

// userCache remembers, for smtpgate_auth_users_cache_time, that
// smtpgate-auth said a user exists, so that the RCPT TO of every message
// to a known local user does not cost a LookupUser call
// (local_recipient_maps = auth:users). Only "exists" answers are kept:
// "no such user" (a permanent 550) and failed calls (451) are asked again
// every time, so a new user is accepted at once and an outage never turns
// into an answer. The price: a deleted user is still accepted for up to
// the cache time. It is per process, in memory, and safe for concurrent
// use; a nil *userCache remembers nothing (it is what
// smtpgate_auth_users_cache_time = 0 gives).
type userCache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[string]userEntry
}

type userEntry struct {
	username string
	expires  time.Time
}

// userLookups counts the lookups of the auth:users tables: hits were
// answered from the cache, misses asked smtpgate-auth (every lookup while
// the cache is off).
type userLookups struct{ hits, misses atomic.Uint64 }

// newUserCache returns a cache of at most max users kept for ttl each;
// now is the clock (nil: time.Now). ttl <= 0 returns nil: no cache.
func newUserCache(ttl time.Duration, max int, now func() time.Time) *userCache {
	if ttl <= 0 || max <= 0 {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	return &userCache{ttl: ttl, max: max, now: now, entries: make(map[string]userEntry, min(max, 1024))}
}

// get returns the stored user name of key if the cache holds an unexpired
// "exists" answer for it.
func (c *userCache) get(key string) (string, bool) {
	if c == nil {
		return "", false
	}
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok && !now.Before(e.expires) {
		delete(c.entries, key)
		ok = false
	}
	c.mu.Unlock()
	return e.username, ok
}

// put remembers that key is the existing user username.
func (c *userCache) put(key, username string) {
	if c == nil {
		return
	}
	e := userEntry{username: username, expires: c.now().Add(c.ttl)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.max {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = e
}

// len is the number of users held, expired ones included.
func (c *userCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// register exports the counts as
// smtpgate_policy_auth_user_lookups_total{result="hit"|"miss"}.
func (l *userLookups) register(r prometheus.Registerer) {
	for result, n := range map[string]*atomic.Uint64{"hit": &l.hits, "miss": &l.misses} {
		telemetry.Register(r, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "smtpgate_policy_auth_user_lookups_total",
			Help:        "Lookups in auth:users tables, by result: hit (an existing user remembered for smtpgate_auth_users_cache_time), miss (asked smtpgate-auth).",
			ConstLabels: prometheus.Labels{"result": result},
		}, func() float64 { return float64(n.Load()) }))
	}
}
