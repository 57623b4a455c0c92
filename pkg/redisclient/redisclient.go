// Package redisclient opens the Redis clients smtpgate services share
// state through (auth's brute-force counters, policy's DNS cache and rate
// limits): every command gives up after a short timeout, without retries,
// so that a slow or dead Redis costs a caller at most that timeout and the
// caller can fall back. The URL may hold a password and is never quoted in
// errors.
//
// Trust: the URL comes from main.cf and is trusted (and secret); the Redis
// server it names is trusted to keep what smtpgate wrote, but not to be
// there: every caller decodes what comes back defensively and has a fail
// mode for a Redis that fails or is slow.
package redisclient

import (
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// ErrURL is returned for a URL that does not parse; it does not quote the
// URL.
var ErrURL = errors.New("redis URL: want redis:// or rediss:// with [user:password@]host:port/db")

// Open returns a client for a redis:// or rediss:// URL whose every
// command gives up after timeout (no retries, one dial attempt).
func Open(url string, timeout time.Duration) (*redis.Client, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, ErrURL
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = timeout, timeout, timeout, timeout
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1
	o.DialerRetries = 1
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return redis.NewClient(o), nil
}
