package e2e

import (
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/otlptest"
)

// TestTrace sends one message with AUTH on the submission port, with the
// three services exporting to an OTLP/gRPC receiver, and follows it as
// one trace: the edge's session span at the root, its command spans, and
// the policy and auth server spans each a child of an edge span of that
// session (the gRPC client span under a command span).
func TestTrace(t *testing.T) {
	rcv := otlptest.Start(t)
	// The services inherit the test's environment (exec.Cmd with no Env).
	for k, v := range map[string]string{
		"OTEL_SDK_DISABLED":                  "",
		"OTEL_TRACES_EXPORTER":               "otlp",
		"OTEL_EXPORTER_OTLP_ENDPOINT":        rcv.Endpoint(),
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
		"OTEL_EXPORTER_OTLP_PROTOCOL":        "grpc",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "",
		"OTEL_TRACES_SAMPLER":                "parentbased_always_on",
		"OTEL_SERVICE_NAME":                  "",
		"OTEL_RESOURCE_ATTRIBUTES":           "",
	} {
		t.Setenv(k, v)
	}
	s := newStack(t, "")
	m := message{from: Trusted, listener: "submission", startTLS: true, auth: plain(JohnPassword),
		sender: "john@example.org", rcpts: []string{"lisa@example.com"}, token: newToken("trace")}
	if err := s.send(m); err != nil {
		t.Fatalf("send: %v", err)
	}
	// Stopping the services flushes their batched spans.
	s.stopAll()

	var session otlptest.Span
	deadline := time.Now().Add(15 * time.Second)
	for session.TraceID == "" {
		for _, sp := range rcv.Spans() {
			if sp.Service == "smtpgate-edge" && sp.Name == "smtp.session" && sp.Attributes["smtp.sasl.username"] == "john@example.org" {
				session = sp
			}
		}
		if session.TraceID == "" {
			if time.Now().After(deadline) {
				t.Fatalf("no session span of john@example.org among %d spans", len(rcv.Spans()))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if session.ParentSpanID != "" {
		t.Errorf("session span has parent %s", session.ParentSpanID)
	}
	if session.Attributes["smtp.listener"] == "" || session.Attributes["client.address"] != Trusted ||
		session.Attributes["smtp.client.origin"] != "socket" || session.Attributes["smtp.tls"] != "true" {
		t.Errorf("session attributes %v", session.Attributes)
	}
	// Wait until every service's spans of the trace have arrived.
	var trace map[string]otlptest.Span
	for {
		trace = map[string]otlptest.Span{}
		services := map[string]bool{}
		for _, sp := range rcv.Spans() {
			if sp.TraceID == session.TraceID {
				trace[sp.SpanID] = sp
				services[sp.Service] = true
			}
		}
		if services["smtpgate-policy"] && services["smtpgate-auth"] || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// underSession reports whether sp descends from the session span
	// through edge spans only.
	underSession := func(sp otlptest.Span) bool {
		for i := 0; i < 10; i++ {
			parent, ok := trace[sp.ParentSpanID]
			if !ok || parent.Service != "smtpgate-edge" {
				return false
			}
			if parent.SpanID == session.SpanID {
				return true
			}
			sp = parent
		}
		return false
	}
	names := map[string]int{}
	servers := map[string]int{}
	for _, sp := range trace {
		names[sp.Service+" "+sp.Name]++
		switch sp.Service {
		case "smtpgate-edge":
			if sp.SpanID != session.SpanID && !underSession(sp) {
				t.Errorf("edge span %s does not descend from the session span", sp.Name)
			}
		case "smtpgate-policy", "smtpgate-auth":
			if sp.Kind.String() != "SPAN_KIND_SERVER" {
				continue
			}
			servers[sp.Service]++
			parent, ok := trace[sp.ParentSpanID]
			if !ok || parent.Service != "smtpgate-edge" || !underSession(sp) {
				t.Errorf("%s server span %s: parent %s (%s %s) is not an edge span of the session", sp.Service, sp.Name, sp.ParentSpanID, parent.Service, parent.Name)
			}
		}
	}
	for _, want := range []string{"smtpgate-edge smtp.EHLO", "smtpgate-edge smtp.STARTTLS", "smtpgate-edge smtp.AUTH",
		"smtpgate-edge smtp.MAIL", "smtpgate-edge smtp.RCPT", "smtpgate-edge smtp.DATA", "smtpgate-edge smtp.handoff"} {
		if names[want] == 0 {
			t.Errorf("no %q span in the trace; have %v", want, names)
		}
	}
	// Policy: RCPT, and CONNECT unless the edge already knew that stage
	// has nothing to evaluate on this listener (the first answer names
	// such stages, answered by the edge from then on:
	// smtpgate_policy_skip_time); the readiness probes' connections may
	// have got that answer first. Auth: Mechanisms and Authenticate.
	if servers["smtpgate-policy"] < 1 || servers["smtpgate-auth"] < 2 {
		t.Errorf("server spans in the trace: %v; all spans: %v", servers, names)
	}
}
