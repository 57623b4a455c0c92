package edge

import (
	"fmt"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/redisclient"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
	"github.com/smtpgate/smtpgate/services/edge/internal/anvil"
	"github.com/smtpgate/smtpgate/services/edge/internal/smtpd"
)

// connLimits builds the connection limits: smtpgate_max_connections, and
// the per-client limits counted across edges through
// smtpgate_connection_limit_redis when it is set. close releases the
// Redis client.
func connLimits(cfg Config) (limits *smtpd.ConnLimits, stop func(), err error) {
	limits = &smtpd.ConnLimits{Max: int(cfg.Main.Int("smtpgate_max_connections"))}
	stop = func() {}
	rc, err := connLimitRedis(cfg.Main)
	if err != nil || rc == nil {
		return limits, stop, err
	}
	if telemetry.Recording(cfg.TracerProvider) {
		// Commands carry hashed client addresses only; not recorded.
		if err := redisotel.InstrumentTracing(rc, redisotel.WithTracerProvider(cfg.TracerProvider), redisotel.WithDBStatement(false)); err != nil {
			rc.Close()
			return nil, nil, fmt.Errorf("tracing redis: %w", err)
		}
	}
	limits.Cluster = anvil.New(rc, cfg.Logger, cfg.Metrics)
	return limits, func() { limits.Cluster.Close(); rc.Close() }, nil
}

// checkConnLimitRedis checks that smtpgate_connection_limit_redis parses.
func checkConnLimitRedis(main *maincf.Config) error {
	rc, err := connLimitRedis(main)
	if rc != nil {
		return rc.Close()
	}
	return err
}

// connLimitRedis opens (without connecting) the client of
// smtpgate_connection_limit_redis; nil when it is not set.
func connLimitRedis(main *maincf.Config) (*redis.Client, error) {
	url := main.Get("smtpgate_connection_limit_redis")
	if url == "" {
		return nil, nil
	}
	rc, err := redisclient.Open(url, anvil.DefaultTimeout)
	if err != nil {
		return nil, main.Errorf("smtpgate_connection_limit_redis", "not a valid redis:// or rediss:// URL (value not shown: it may hold a password)")
	}
	return rc, nil
}
