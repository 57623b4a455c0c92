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

// connLimits builds the connection limits: smtpgate_max_connections, its
// stress threshold, and the per-client and per-network limits counted
// across edges through smtpgate_connection_limit_redis when it is set.
// stop releases the Redis client.
func connLimits(cfg Config) (limits *smtpd.ConnLimits, stop func(), err error) {
	limits = &smtpd.ConnLimits{Max: int(cfg.Main.Int("smtpgate_max_connections"))}
	limits.Stress = smtpd.NewStress(stressAt(limits.Max, int(cfg.Main.Int("smtpgate_stress_threshold"))),
		cfg.Main.Duration("smtpgate_stress_hold_time"), limits.Max, cfg.Logger, cfg.Metrics)
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

// stressAt is the count of open connections at which the edge is under
// stress: percent (smtpgate_stress_threshold) of max
// (smtpgate_max_connections), at least 1; 0 (never) when either is 0.
func stressAt(limit, percent int) int {
	if limit <= 0 || percent <= 0 {
		return 0
	}
	return max(1, limit*percent/100)
}

// checkReserves checks that the listeners' smtpgate_connection_reserve
// leave room within smtpgate_max_connections.
func checkReserves(main *maincf.Config, services []maincf.Service) error {
	limit := main.Int("smtpgate_max_connections")
	if limit <= 0 {
		return nil
	}
	var sum int64
	for _, svc := range services {
		c := main.WithOverrides(svc.Overrides)
		sum += c.Int("smtpgate_connection_reserve")
		if sum > limit {
			return fmt.Errorf("%s: service %s: smtpgate_connection_reserve: the listeners' reserves add up to %d (so far), more than smtpgate_max_connections = %d", svc.Pos, svc.Name, sum, limit)
		}
	}
	return nil
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
