package policy

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgate/smtpgate/pkg/resolver"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
	"github.com/smtpgate/smtpgate/services/policy/internal/restriction"
)

// metrics are smtpgate-policy's Prometheus metrics.
type metrics struct {
	checks   *prometheus.CounterVec
	refusals *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// stages caches the children of checks and latency by stage (and
	// action), made on first use, so that a Check looks up no labels.
	stages [restriction.VRFY + 1]stageMetrics
}

// stageMetrics are one stage's children of checks (by action; index 0
// is "error") and latency.
type stageMetrics struct {
	checks  [restriction.ActionDiscard + 1]atomic.Pointer[prometheus.Counter]
	latency atomic.Pointer[prometheus.Observer]
}

// stage returns the cache of st (StageUnspecified for values out of range).
func (m *metrics) stage(st restriction.Stage) *stageMetrics {
	if st < 0 || int(st) >= len(m.stages) {
		st = restriction.StageUnspecified
	}
	return &m.stages[st]
}

// counter returns the child of checks for st and a (0: "error").
func (m *metrics) counter(st restriction.Stage, a restriction.Action) prometheus.Counter {
	if a < 0 || int(a) >= len(m.stages[0].checks) {
		a = 0
	}
	p := &m.stage(st).checks[a]
	if c := p.Load(); c != nil {
		return *c
	}
	action := "error"
	if a != 0 {
		action = strings.ToLower(a.String())
	}
	c := m.checks.WithLabelValues(strings.ToLower(st.String()), action)
	p.Store(&c)
	return c
}

// observer returns the child of latency for st.
func (m *metrics) observer(st restriction.Stage) prometheus.Observer {
	p := &m.stage(st).latency
	if o := p.Load(); o != nil {
		return *o
	}
	o := m.latency.WithLabelValues(strings.ToLower(st.String()))
	p.Store(&o)
	return o
}

func newMetrics(r prometheus.Registerer, dns func() resolver.Stats) *metrics {
	m := &metrics{
		checks: telemetry.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgate_policy_checks_total",
			Help: "Check calls answered, by SMTP stage and action (permit, reject, defer, discard, error).",
		}, []string{"stage", "action"})),
		refusals: telemetry.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgate_policy_refusals_total",
			Help: "Checks refused (reject, defer, discard), by restriction list and the restriction that decided.",
		}, []string{"list", "restriction"})),
		latency: telemetry.Register(r, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "smtpgate_policy_check_duration_seconds",
			Help:    "Time to evaluate a Check, by SMTP stage.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"stage"})),
	}
	// Every stage's series at zero from the start (what dashboards and
	// alerts look for exists before the first Check).
	for st := restriction.Connect; st <= restriction.VRFY; st++ {
		m.observer(st)
		for a := range restriction.ActionDiscard + 1 {
			m.counter(st, a)
		}
	}
	telemetry.Register(r, dnsCollector(dns))
	return m
}

func (m *metrics) checked(stage restriction.Stage, v restriction.Verdict, d time.Duration) {
	m.counter(stage, v.Action).Inc()
	m.observer(stage).Observe(d.Seconds())
	if v.Action != restriction.ActionPermit {
		m.refusals.WithLabelValues(v.List, v.Restriction).Inc()
	}
}

func (m *metrics) failed(stage restriction.Stage) {
	m.counter(stage, 0).Inc()
}

// dnsCollector exports the resolver's counters (resolver.Stats) as they
// are at scrape time.
type dnsCollector func() resolver.Stats

var (
	dnsLookupsDesc = prometheus.NewDesc("smtpgate_policy_dns_lookups_total",
		"DNS lookups of the restrictions, by result: hit (in-process cache), redis_hit (shared cache), miss (asked DNS), error (temporary failure), invalid (refused name), coalesced (joined a lookup in flight).",
		[]string{"result"}, nil)
	dnsQueriesDesc = prometheus.NewDesc("smtpgate_policy_dns_queries_total",
		"DNS messages sent, TCP retries included.", nil, nil)
	redisErrorsDesc = prometheus.NewDesc("smtpgate_policy_redis_errors_total",
		"Failed calls to the Redis of smtpgate_dns_redis, and undecodable entries.", nil, nil)
	redisFallbacksDesc = prometheus.NewDesc("smtpgate_policy_redis_fallbacks_total",
		"DNS lookups that went to DNS because Redis failed or was being left alone.", nil, nil)
)

func (c dnsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- dnsLookupsDesc
	ch <- dnsQueriesDesc
	ch <- redisErrorsDesc
	ch <- redisFallbacksDesc
}

func (c dnsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c()
	for _, v := range []struct {
		result string
		n      uint64
	}{{"hit", s.Hits}, {"redis_hit", s.RedisHits}, {"miss", s.Misses}, {"error", s.Errors}, {"invalid", s.Invalid}, {"coalesced", s.Coalesced}} {
		ch <- prometheus.MustNewConstMetric(dnsLookupsDesc, prometheus.CounterValue, float64(v.n), v.result)
	}
	ch <- prometheus.MustNewConstMetric(dnsQueriesDesc, prometheus.CounterValue, float64(s.Queries))
	ch <- prometheus.MustNewConstMetric(redisErrorsDesc, prometheus.CounterValue, float64(s.RedisErrors))
	ch <- prometheus.MustNewConstMetric(redisFallbacksDesc, prometheus.CounterValue, float64(s.RedisFallbacks))
}
