package auth

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgate/smtpgate/pkg/telemetry"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	"github.com/smtpgate/smtpgate/services/auth/internal/sasl"
)

// metrics are smtpgate-auth's Prometheus metrics.
type metrics struct {
	authentications *prometheus.CounterVec
	lockouts        *prometheus.CounterVec
	lockedOut       prometheus.Counter
	cacheLookups    *prometheus.CounterVec
	// known are the mechanism names smtpgate implements.
	known map[string]sasl.Mechanism
}

func newMetrics(r prometheus.Registerer, redisErrors, dovecotErrors func() uint64) *metrics {
	m := &metrics{
		known: sasl.Mechanisms(),
		authentications: telemetry.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgate_auth_authentications_total",
			Help: "SASL exchanges ended over gRPC, by mechanism (\"other\" for one smtpgate does not know) and result.",
		}, []string{"mechanism", "result"})),
		lockouts: telemetry.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgate_auth_lockouts_total",
			Help: "Lockouts started by this replica's failures, by the kind of key locked (client, network, user).",
		}, []string{"kind"})),
		lockedOut: telemetry.Register(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smtpgate_auth_locked_out_total",
			Help: "Authentications refused without checking the credentials because of a lockout.",
		})),
		cacheLookups: telemetry.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgate_auth_cache_lookups_total",
			Help: "Password verifications looked up in the auth cache, by result (hit: no hash computed; miss).",
		}, []string{"result"})),
	}
	// Every series at zero from the start (what dashboards and alerts
	// look for exists before the first AUTH).
	for mech := range m.known {
		m.initResults(mech)
	}
	m.initResults("other")
	for _, kind := range []string{"client", "network", "user"} {
		m.lockouts.WithLabelValues(kind)
	}
	for _, result := range []string{"hit", "miss"} {
		m.cacheLookups.WithLabelValues(result)
	}
	telemetry.Register(r, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "smtpgate_auth_redis_errors_total",
		Help: "Failed or timed out calls to the Redis of smtpgate_auth_redis.",
	}, func() float64 { return float64(redisErrors()) }))
	telemetry.Register(r, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "smtpgate_auth_dovecot_errors_total",
		Help: "Requests to Dovecot (smtpd_sasl_type = dovecot, smtpgate_dovecot_userdb_path) that got no answer: unreachable, connection lost, timed out or garbled; each is answered as a temporary failure.",
	}, func() float64 { return float64(dovecotErrors()) }))
	return m
}

// initResults makes the series of mech for every result, at zero.
func (m *metrics) initResults(mech string) {
	for r := range authv1.Result_name {
		if authv1.Result(r) != authv1.Result_RESULT_UNSPECIFIED {
			m.authentications.WithLabelValues(mech, resultLabel(authv1.Result(r)))
		}
	}
}

// resultLabel is r's value of the result label ("temporary_failure").
func resultLabel(r authv1.Result) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "RESULT_"))
}

// authenticated counts one exchange. The mechanism comes from the client:
// only the names smtpgate knows become label values.
func (m *metrics) authenticated(mech string, r authv1.Result) {
	if _, ok := m.known[mech]; !ok {
		mech = "other"
	}
	m.authentications.WithLabelValues(mech, resultLabel(r)).Inc()
}

// cached counts one auth cache lookup; nothing when the cache is off.
func (m *metrics) cached(on, hit bool) {
	if m == nil || !on {
		return
	}
	result := "miss"
	if hit {
		result = "hit"
	}
	m.cacheLookups.WithLabelValues(result).Inc()
}
