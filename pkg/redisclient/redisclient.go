// Package redisclient opens the Redis clients smtpgate services share
// state through (auth's brute-force counters, policy's DNS cache and rate
// limits, edge's connection limits): every command gives up after a short
// timeout, without retries, so that a slow or dead Redis costs a caller at
// most that timeout and the caller can fall back. A URL names one server,
// a Sentinel-managed primary or a Redis Cluster (see Parse); it may hold
// passwords and is never quoted in errors.
//
// Trust: the URL comes from main.cf and is trusted (and secret); the Redis
// servers it names are trusted to keep what smtpgate wrote, but not to be
// there: every caller decodes what comes back defensively and has a fail
// mode for a Redis that fails or is slow.
package redisclient

import (
	"crypto/tls"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// ErrURL is returned for a URL that does not parse; it does not quote the
// URL.
var ErrURL = errors.New("redis URL: want redis:// or rediss:// with [user:password@]host:port/db, " +
	"redis+sentinel:// or rediss+sentinel:// with [user:password@]host:port,.../mastername[/db], " +
	"or redis+cluster:// or rediss+cluster:// with [user:password@]host:port,host:port")

// Check reports whether url parses (see Parse), without opening anything.
func Check(url string) error {
	_, err := Parse(url)
	return err
}

// Open returns a client for url (see Parse) whose every command gives up
// after timeout (no retries, one dial attempt). On a Cluster, a command
// whose slot moved follows the MOVED or ASK redirection (at most 3).
func Open(url string, timeout time.Duration) (redis.UniversalClient, error) {
	t, err := Parse(url)
	if err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	if t.TLS {
		// No ServerName: each connection verifies the name it dialled.
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	noNotify := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	switch t.Kind {
	case Sentinel:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: t.MasterName, SentinelAddrs: t.Addrs,
			SentinelUsername: t.SentinelUsername, SentinelPassword: t.SentinelPassword,
			Username: t.Username, Password: t.Password, DB: t.DB, TLSConfig: tlsConfig,
			DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, PoolTimeout: timeout,
			ContextTimeoutEnabled: true, MaxRetries: -1, DialerRetries: 1, DisableIdentity: true,
		}), nil
	case Cluster:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: t.Addrs, Username: t.Username, Password: t.Password, TLSConfig: tlsConfig,
			DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, PoolTimeout: timeout,
			ContextTimeoutEnabled: true, MaxRetries: -1, DialerRetries: 1, DisableIdentity: true,
			MaxRedirects: 3, MaintNotificationsConfig: noNotify,
		}), nil
	}
	o := t.single
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = timeout, timeout, timeout, timeout
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1
	o.DialerRetries = 1
	o.DisableIdentity = true
	o.MaintNotificationsConfig = noNotify
	return redis.NewClient(o), nil
}
