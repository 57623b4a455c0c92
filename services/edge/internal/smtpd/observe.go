package smtpd

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/smtpgate/smtpgate/pkg/telemetry"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// Metrics are the engine's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	connections *prometheus.CounterVec
	sessions    prometheus.Gauge
	// commands holds a counter per known verb, resolved once; other
	// verbs share "other" so a client cannot grow the label set.
	commands map[string]prometheus.Counter
	other    prometheus.Counter
	// replies is indexed by the code's class (2 for 2xx ... 5 for 5xx).
	replies         [6]prometheus.Counter
	handoffDuration prometheus.Histogram
	handoffFailures *prometheus.CounterVec
}

// NewMetrics registers the engine's metrics in r (nil: unregistered).
func NewMetrics(r prometheus.Registerer) *Metrics {
	m := &Metrics{
		connections: telemetry.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgate_edge_connections_total",
			Help: "SMTP connections accepted, by listener (master.cf service) and origin of the client address (socket, proxy).",
		}, []string{"listener", "origin"})),
		sessions: telemetry.Register(r, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "smtpgate_edge_sessions",
			Help: "SMTP sessions open now.",
		})),
		handoffDuration: telemetry.Register(r, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "smtpgate_edge_handoff_duration_seconds",
			Help:    "Time to hand a message's content to the next hop and get its answer.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		})),
		handoffFailures: telemetry.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgate_edge_handoff_failures_total",
			Help: "Hand-offs to the next hop that failed, by step (begin: connection and MAIL, rcpt, data).",
		}, []string{"step"})),
	}
	commands := telemetry.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "smtpgate_edge_commands_total",
		Help: "SMTP commands received, by verb (other: any verb the edge does not implement).",
	}, []string{"verb"}))
	m.commands = make(map[string]prometheus.Counter, len(knownCommands))
	for v := range knownCommands {
		m.commands[v] = commands.WithLabelValues(v)
	}
	m.other = commands.WithLabelValues("other")
	replies := telemetry.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "smtpgate_edge_replies_total",
		Help: "SMTP replies sent, by class of the code (2xx, 3xx, 4xx, 5xx).",
	}, []string{"class"}))
	for c := 2; c <= 5; c++ {
		m.replies[c] = replies.WithLabelValues(string(rune('0'+c)) + "xx")
	}
	return m
}

func (m *Metrics) connected(listener, origin string) {
	if m == nil {
		return
	}
	m.connections.WithLabelValues(listener, origin).Inc()
	m.sessions.Inc()
}

func (m *Metrics) disconnected() {
	if m == nil {
		return
	}
	m.sessions.Dec()
}

func (m *Metrics) command(verb string) {
	if m == nil {
		return
	}
	if c, ok := m.commands[verb]; ok {
		c.Inc()
		return
	}
	m.other.Inc()
}

func (m *Metrics) replied(code int) {
	if m == nil {
		return
	}
	if c := code / 100; c >= 2 && c <= 5 {
		m.replies[c].Inc()
	}
}

func (m *Metrics) handedOff(d time.Duration, err error) {
	if m == nil {
		return
	}
	m.handoffDuration.Observe(d.Seconds())
	if err != nil {
		m.handoffFailures.WithLabelValues("data").Inc()
	}
}

func (m *Metrics) handoffFailed(step string) {
	if m == nil {
		return
	}
	m.handoffFailures.WithLabelValues(step).Inc()
}

// The span attributes.
const (
	attrListener     = attribute.Key("smtp.listener")
	attrClient       = attribute.Key("client.address")
	attrOrigin       = attribute.Key("smtp.client.origin")
	attrTLS          = attribute.Key("smtp.tls")
	attrSASLUser     = attribute.Key("smtp.sasl.username")
	attrSession      = attribute.Key("smtp.session.id")
	attrReplyCode    = attribute.Key("smtp.reply.code")
	attrEnhanced     = attribute.Key("smtp.reply.enhanced_code")
	attrQueueID      = attribute.Key("smtp.queue_id")
	attrNextHop      = attribute.Key("smtp.next_hop")
	attrMessageBytes = attribute.Key("smtp.message.size")
)

// startSession starts the session's root span ("smtp.session") when the
// server traces; ctx then carries it. Without a tracer nothing is done.
func (s *session) startSession(ctx context.Context) context.Context {
	if s.srv.Tracer == nil {
		return ctx
	}
	ctx, s.span = s.srv.Tracer.Start(ctx, "smtp.session", trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attrListener.String(s.l.Name), attrClient.String(s.client.addr),
			attrOrigin.String(originName(s.client.origin.String())), attrSession.String(s.id)))
	return ctx
}

// endSession ends the session's span with what the session learned.
func (s *session) endSession() {
	if s.span == nil {
		return
	}
	s.span.SetAttributes(attrTLS.Bool(s.tls.state != nil), attrClient.String(s.client.addr),
		attrOrigin.String(originName(s.client.origin.String())))
	if s.sasl.user != "" {
		s.span.SetAttributes(attrSASLUser.String(s.sasl.user))
	}
	s.span.End()
}

// originName is "socket" for ORIGIN_SOCKET.
func originName(enum string) string {
	return strings.ToLower(strings.TrimPrefix(enum, "ORIGIN_"))
}

// startCommand counts the command and, when tracing, starts its span
// ("smtp.<VERB>") as a child of the session's.
func (s *session) startCommand(ctx context.Context, verb string) (context.Context, trace.Span) {
	s.srv.Metrics.command(verb)
	if s.span == nil {
		return ctx, nil
	}
	name := "smtp.other"
	if knownCommands[verb] {
		name = "smtp." + verb
	}
	return s.srv.Tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal))
}

// endCommand records the reply on the command's span and ends it.
func endCommand(span trace.Span, r reply.Reply) {
	if span == nil {
		return
	}
	if r.Code != 0 {
		span.SetAttributes(attrReplyCode.Int(r.Code))
		if r.Enhanced != "" {
			span.SetAttributes(attrEnhanced.String(r.Enhanced))
		}
	}
	span.End()
}

// traceHandoff records the hand-off of a message of size bytes, from
// start to end (it may have run while the content came, on a goroutine
// of its own): a span "smtp.handoff" under ctx's.
func (s *session) traceHandoff(ctx context.Context, queueID string, size int64, start, end time.Time, err error) {
	if s.span == nil || start.IsZero() {
		return
	}
	_, span := s.srv.Tracer.Start(ctx, "smtp.handoff", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start),
		trace.WithAttributes(attrQueueID.String(queueID), attrNextHop.String(s.l.NextHop.String()), attrMessageBytes.Int64(size)))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "hand-off failed")
	}
	span.End(trace.WithTimestamp(end))
}
