package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// spanPolicy remembers the span each Check was called in.
type spanPolicy struct {
	next  Policy
	mu    sync.Mutex
	spans map[policyv1.Stage]trace.SpanContext
}

func (p *spanPolicy) Check(ctx context.Context, req *policyv1.CheckRequest) (*policyv1.CheckResponse, error) {
	p.mu.Lock()
	p.spans[req.GetStage()] = trace.SpanContextFromContext(ctx)
	p.mu.Unlock()
	return p.next.Check(ctx, req)
}

// TestTelemetry runs one transaction on a traced, measured server: a
// session span, a span per command with its reply, policy called in the
// command's span, a hand-off span under DATA, and the metrics counted.
func TestTelemetry(t *testing.T) {
	h := newHarness(t, relayDenied, nil)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	reg := prometheus.NewRegistry()
	pol := &spanPolicy{next: h.policy, spans: map[policyv1.Stage]trace.SpanContext{}}
	srv := &Server{Config: Config{Policy: pol, Auth: h.auth, Tracer: tp.Tracer("test"), Metrics: NewMetrics(reg)}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		srv.Serve(context.Background(), c, h.l)
	}()
	t.Cleanup(func() { ln.Close() })
	h.addr = ln.Addr().String()
	c := h.dial()
	c.reply()
	c.steps(append(refusedThenQueued(), [2]string{"BOGUS\r\n", "500"}, [2]string{"QUIT\r\n", "221"})...)
	<-done

	spans := rec.Ended()
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byName[s.Name()] = append(byName[s.Name()], s)
	}
	if len(byName["smtp.session"]) != 1 {
		t.Fatalf("session spans: %d of %d", len(byName["smtp.session"]), len(spans))
	}
	sess := byName["smtp.session"][0]
	if sess.Parent().IsValid() {
		t.Error("session span has a parent")
	}
	attrs := map[string]string{}
	for _, a := range sess.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	if attrs["smtp.listener"] != "test" || attrs["client.address"] != "127.0.0.1" || attrs["smtp.client.origin"] != "socket" || attrs["smtp.tls"] != "false" {
		t.Errorf("session attributes %v", attrs)
	}
	for name, n := range map[string]int{"smtp.EHLO": 1, "smtp.MAIL": 1, "smtp.RCPT": 2, "smtp.DATA": 1, "smtp.other": 1, "smtp.QUIT": 1, "smtp.handoff": 1} {
		if len(byName[name]) != n {
			t.Errorf("%d %s spans, want %d", len(byName[name]), name, n)
		}
	}
	for _, s := range spans {
		if s.SpanContext().TraceID() != sess.SpanContext().TraceID() {
			t.Errorf("%s in another trace", s.Name())
		}
		if strings.HasPrefix(s.Name(), "smtp.") && s.Name() != "smtp.session" && s.Name() != "smtp.handoff" && s.Parent().SpanID() != sess.SpanContext().SpanID() {
			t.Errorf("%s is not the session's child", s.Name())
		}
	}
	rejected := byName["smtp.RCPT"][0]
	got := map[string]string{}
	for _, a := range rejected.Attributes() {
		got[string(a.Key)] = a.Value.String()
	}
	if got["smtp.reply.code"] != "554" || got["smtp.reply.enhanced_code"] != "5.7.1" {
		t.Errorf("refused RCPT attributes %v", got)
	}
	if ho, data := byName["smtp.handoff"][0], byName["smtp.DATA"][0]; ho.Parent().SpanID() != data.SpanContext().SpanID() {
		t.Error("hand-off span is not DATA's child")
	}
	if sc := pol.spans[policyv1.Stage_STAGE_MAIL]; sc.SpanID() != byName["smtp.MAIL"][0].SpanContext().SpanID() {
		t.Error("policy's MAIL check was not called in the MAIL command's span")
	}

	m := srv.Metrics
	hop := h.l.NextHop.String()
	for _, tc := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"connections", m.connections.WithLabelValues("test", "socket"), 1},
		{"sessions", m.sessions, 0},
		{"RCPT 2xx", m.commands["RCPT"][2], 1},
		{"RCPT 5xx", m.commands["RCPT"][5], 1},
		{"DATA 2xx", m.commands["DATA"][2], 1}, // its last reply: the end of data's
		{"DATA 3xx", m.commands["DATA"][3], 0}, // not its 354
		{"other 5xx", m.other[5], 1},
		{"2xx", m.replies[2], 6}, // greeting, EHLO, MAIL, RCPT, end of data, QUIT
		{"3xx", m.replies[3], 1},
		{"5xx", m.replies[5], 2}, // 554 and 500
		{"sent", m.handoffs.WithLabelValues(hop, "sent"), 1},
		{"deferred", m.handoffs.WithLabelValues(hop, "deferred"), 0},
	} {
		if got := testutil.ToFloat64(tc.c); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(reg, "smtpgate_edge_handoff_duration_seconds"); n != 1 {
		t.Errorf("hand-off histogram: %d series", n)
	}
}

// Every series whose labels are known up front exists before the first
// session: per verb and reply class, and per listener and next hop once
// Listen announced them.
func TestMetricsFromTheStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	h := newHarness(t, relayDenied, nil)
	l := *h.l
	l.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	m.Listen(&l)
	for name, want := range map[string]int{
		"smtpgate_edge_commands_total":           (len(knownCommands) + 1) * 5, // none, 2xx-5xx
		"smtpgate_edge_replies_total":            4,
		"smtpgate_edge_connections_total":        2, // socket, proxy
		"smtpgate_edge_tls_handshakes_total":     3, // failed; ok with TLSv1.2, TLSv1.3
		"smtpgate_edge_handoffs_total":           3, // sent, deferred, bounced
		"smtpgate_edge_handoff_duration_seconds": 1,
		"smtpgate_edge_sessions":                 1,
	} {
		if n := testutil.CollectAndCount(reg, name); n != want {
			t.Errorf("%s: %d series before any session, want %d", name, n, want)
		}
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "sent"},
		{reply.NextHopRefused(550, "5.1.1", "no such user"), "bounced"},
		{reply.NextHopRefused(452, "4.2.2", "mailbox full"), "deferred"},
		{reply.NextHopUnavailable(errors.New("connection refused")), "deferred"},
		{errors.New("spool: disk full"), "deferred"},
	} {
		if got := handoffResult(tc.err); got != tc.want {
			t.Errorf("handoffResult(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}
