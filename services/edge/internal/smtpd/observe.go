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
// nothing. Every series whose labels are known up front exists from the
// start at zero: per verb and reply class, and per listener and next hop
// as Listen announces them.
type Metrics struct {
	connections *prometheus.CounterVec
	sessions    prometheus.Gauge
	// commands holds the counters of each known verb by reply class
	// (replyClasses), resolved once; other verbs share "other" so a
	// client cannot grow the label set.
	commands map[string]*[len(replyClasses)]prometheus.Counter
	other    *[len(replyClasses)]prometheus.Counter
	// replies is indexed by the code's class (2 for 2xx ... 5 for 5xx).
	replies         [6]prometheus.Counter
	handoffs        *prometheus.CounterVec
	handoffDuration *prometheus.HistogramVec
	handshakes      *prometheus.CounterVec
}

// replyClasses are the values of the class label of
// smtpgate_edge_commands_total, indexed by the code's first digit; "none"
// for a command that got no reply (the client went away in it, or
// STARTTLS's handshake failed after its 220).
var replyClasses = [6]string{"none", "none", "2xx", "3xx", "4xx", "5xx"}

// classOf is the index in replyClasses of code.
func classOf(code int) int {
	if c := code / 100; c >= 2 && c <= 5 {
		return c
	}
	return 0
}

// The results of smtpgate_edge_handoffs_total: Postfix's status words
// in its delivery lines.
const (
	handoffSent     = "sent"
	handoffDeferred = "deferred"
	handoffBounced  = "bounced"
)

// tlsVersions are the versions a listener's handshake can end with
// (MinVersion is TLS 1.2).
var tlsVersions = []string{"TLSv1.2", "TLSv1.3"}

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
		handoffs: telemetry.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgate_edge_handoffs_total",
			Help: "Transactions handed to the next hop, by next hop and result: sent (it took the message), deferred (a temporary failure: unreachable, 4xx, connection lost; the client was told to try again), bounced (it refused with 5xx). A transaction the next hop would not begin counts too.",
		}, []string{"next_hop", "result"})),
		handoffDuration: telemetry.Register(r, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "smtpgate_edge_handoff_duration_seconds",
			Help:    "Time to hand a message's content to the next hop and get its answer, by next hop.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"next_hop"})),
		handshakes: telemetry.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgate_edge_tls_handshakes_total",
			Help: "TLS handshakes with SMTP clients (STARTTLS, wrapper mode), by listener, result (ok, failed) and the version agreed (empty when failed).",
		}, []string{"listener", "result", "version"})),
	}
	commands := telemetry.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "smtpgate_edge_commands_total",
		Help: "SMTP commands received, by verb (other: any verb the edge does not implement) and the class of the command's last reply (2xx, 3xx, 4xx, 5xx; DATA and BDAT: the end of data's; none: no reply, the client went away).",
	}, []string{"verb", "class"}))
	byClass := func(verb string) *[len(replyClasses)]prometheus.Counter {
		var cs [len(replyClasses)]prometheus.Counter
		for i, class := range replyClasses {
			cs[i] = commands.WithLabelValues(verb, class)
		}
		return &cs
	}
	m.commands = make(map[string]*[len(replyClasses)]prometheus.Counter, len(knownCommands))
	for v := range knownCommands {
		m.commands[v] = byClass(v)
	}
	m.other = byClass("other")
	replies := telemetry.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "smtpgate_edge_replies_total",
		Help: "SMTP replies sent, by class of the code (2xx, 3xx, 4xx, 5xx).",
	}, []string{"class"}))
	for c := 2; c <= 5; c++ {
		m.replies[c] = replies.WithLabelValues(replyClasses[c])
	}
	return m
}

// Listen makes the series of l (its connections, TLS handshakes and
// next hop) at zero, so that they exist before its first session: the
// edge calls it for every listener at start and at every reload.
func (m *Metrics) Listen(l *Listener) {
	if m == nil {
		return
	}
	for _, origin := range []string{"socket", "proxy"} {
		m.connections.WithLabelValues(l.Name, origin)
	}
	if l.TLS != nil {
		m.handshakes.WithLabelValues(l.Name, "failed", "")
		for _, v := range tlsVersions {
			m.handshakes.WithLabelValues(l.Name, "ok", v)
		}
	}
	if l.NextHop != nil {
		hop := l.NextHop.String()
		for _, r := range []string{handoffSent, handoffDeferred, handoffBounced} {
			m.handoffs.WithLabelValues(hop, r)
		}
		m.handoffDuration.WithLabelValues(hop)
	}
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

// command counts a command by its verb and the class of its reply.
func (m *Metrics) command(verb string, code int) {
	if m == nil {
		return
	}
	cs, ok := m.commands[verb]
	if !ok {
		cs = m.other
	}
	cs[classOf(code)].Inc()
}

func (m *Metrics) replied(code int) {
	if m == nil {
		return
	}
	if c := code / 100; c >= 2 && c <= 5 {
		m.replies[c].Inc()
	}
}

// handoffResult is the result label of a hand-off that ended with err.
func handoffResult(err error) string {
	switch {
	case err == nil:
		return handoffSent
	case reply.FromHandoff(err).Code >= 500:
		return handoffBounced
	}
	return handoffDeferred
}

// handedOff counts a message's hand-off to hop, which took d.
func (m *Metrics) handedOff(hop string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.handoffDuration.WithLabelValues(hop).Observe(d.Seconds())
	m.handoffs.WithLabelValues(hop, handoffResult(err)).Inc()
}

// handoffFailed counts a transaction hop would not begin.
func (m *Metrics) handoffFailed(hop string, err error) {
	if m == nil {
		return
	}
	m.handoffs.WithLabelValues(hop, handoffResult(err)).Inc()
}

// handshaken counts a TLS handshake on listener: version "" when it
// failed.
func (m *Metrics) handshaken(listener, version string) {
	if m == nil {
		return
	}
	result := "ok"
	if version == "" {
		result = "failed"
	}
	m.handshakes.WithLabelValues(listener, result, version).Inc()
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

// startCommand starts the command's span ("smtp.<VERB>") as a child of
// the session's, when tracing.
func (s *session) startCommand(ctx context.Context, verb string) (context.Context, trace.Span) {
	if s.span == nil {
		return ctx, nil
	}
	name := "smtp.other"
	if knownCommands[verb] {
		name = "smtp." + verb
	}
	return s.srv.Tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal))
}

// endCommand counts the command by its reply's class, and records the
// reply on the command's span and ends it.
func (s *session) endCommand(verb string, span trace.Span, r reply.Reply) {
	s.srv.Metrics.command(verb, r.Code)
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
