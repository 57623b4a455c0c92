package edge

import (
	"fmt"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"

	"github.com/smtpgate/smtpgate/pkg/redisclient"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
	"github.com/smtpgate/smtpgate/services/edge/internal/anvil"
	"github.com/smtpgate/smtpgate/services/edge/internal/smtpd"
)

// connLimits builds the connection limits: smtpgate_max_connections, its
// stress threshold, and the per-client and per-network limits counted
// across edges through smtpgate_connection_limit_redis when it is set.
// stop releases the Redis client.
func connLimits(set Settings, cfg Config) (limits *smtpd.ConnLimits, stop func(), err error) {
	limits = &smtpd.ConnLimits{Max: set.maxConnections}
	limits.Stress = smtpd.NewStress(stressAt(limits.Max, set.stressThreshold), set.stressHoldTime, limits.Max, cfg.Logger, cfg.Metrics)
	stop = func() {}
	rc, err := connLimitRedis(set.connLimitRedis)
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

// stressAt is the count of open connections at which the edge is under
// stress: percent (smtpgate_stress_threshold) of max
// (smtpgate_max_connections), at least 1; 0 (never) when either is 0.
func stressAt(limit, percent int) int {
	if limit <= 0 || percent <= 0 {
		return 0
	}
	return max(1, limit*percent/100)
}

// connLimitRedis opens (without connecting) the client of
// smtpgate_connection_limit_redis (url); nil when it is not set.
func connLimitRedis(url string) (redis.UniversalClient, error) {
	if url == "" {
		return nil, nil
	}
	return redisclient.Open(url, anvil.DefaultTimeout)
}
