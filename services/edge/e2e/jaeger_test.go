package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// jaeger is a Jaeger all-in-one (spans in memory) run by a test with
// deploy/local/jaeger.yaml on free loopback ports.
type jaeger struct {
	otlpHTTP, otlpGRPC, queryHTTP, queryGRPC int
	log                                      string
}

// startJaeger builds Jaeger with scripts/jaeger when its cache holds no
// binary yet (scripts/test builds it before the tests run), and starts it
// as scripts/jaeger does, with the ports of deploy/local/jaeger.yaml
// moved to free ones. A Jaeger that cannot be built or started fails the
// test. It is stopped when the test ends.
func startJaeger(t *testing.T) *jaeger {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command(filepath.Join(root, "scripts/jaeger"), "--build")
	var stderr strings.Builder
	build.Stderr = &stderr
	out, err := build.Output()
	if err != nil {
		t.Fatalf("scripts/jaeger --build: %v\n%s", err, stderr.String())
	}
	bin := strings.TrimSpace(string(out))
	j := &jaeger{otlpHTTP: freePort(t), otlpGRPC: freePort(t), queryHTTP: freePort(t), queryGRPC: freePort(t),
		log: filepath.Join(t.TempDir(), "jaeger.log")}
	logFile, err := os.Create(j.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "--config", filepath.Join(root, "deploy/local/jaeger.yaml"))
	cmd.Env = append(os.Environ(),
		"SMTPGATE_JAEGER_OTLP_HTTP=127.0.0.1:"+itoa(j.otlpHTTP),
		"SMTPGATE_JAEGER_OTLP_GRPC=127.0.0.1:"+itoa(j.otlpGRPC),
		"SMTPGATE_JAEGER_QUERY_HTTP=127.0.0.1:"+itoa(j.queryHTTP),
		"SMTPGATE_JAEGER_QUERY_GRPC=127.0.0.1:"+itoa(j.queryGRPC))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("Jaeger did not stop within 15s of SIGINT")
		}
		if t.Failed() {
			t.Logf("--- Jaeger log ---\n%s", j.logTail())
		}
	})
	// Ready when the query API answers and OTLP/HTTP accepts connections.
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("Jaeger exited at start: %v\n%s", err, j.logTail())
		default:
		}
		var services struct{ Services []string }
		if j.get("/api/v3/services", &services) == nil &&
			waitListening("127.0.0.1:"+itoa(j.otlpHTTP), time.Second) == nil {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("Jaeger's query API on 127.0.0.1:%d did not answer within 60s\n%s", j.queryHTTP, j.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (j *jaeger) logTail() string {
	b, _ := os.ReadFile(j.log)
	if len(b) > 20000 {
		b = b[len(b)-20000:]
	}
	return string(b)
}

// get decodes the JSON answer of Jaeger's query API to GET path into v;
// an answer other than 200 is an error (the API answers 404 when no
// trace matches).
func (j *jaeger) get(path string, v any) error {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", j.queryHTTP, path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// jSpan is a span as Jaeger's API v3 returns it (OTLP in JSON), with its
// service's name.
type jSpan struct {
	Service      string
	TraceID      string `json:"traceId"`
	SpanID       string `json:"spanId"`
	ParentSpanID string `json:"parentSpanId"`
	Name         string `json:"name"`
	Kind         jKind  `json:"kind"`
	Attributes   []jAttr
}

// jKind is OTLP's SpanKind, sent as a number or as its enum name.
type jKind string

func (k *jKind) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err == nil {
		*k = jKind([]string{"UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"}[min(max(n, 0), 5)])
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*k = jKind(strings.TrimPrefix(s, "SPAN_KIND_"))
	return nil
}

type jAttr struct {
	Key   string `json:"key"`
	Value struct {
		StringValue *string `json:"stringValue"`
		IntValue    *string `json:"intValue"` // int64 is a string in protobuf's JSON
		BoolValue   *bool   `json:"boolValue"`
	} `json:"value"`
}

// attr returns the value of the span's attribute key as text.
func (s jSpan) attr(key string) string {
	for _, a := range s.Attributes {
		if a.Key != key {
			continue
		}
		switch v := a.Value; {
		case v.StringValue != nil:
			return *v.StringValue
		case v.IntValue != nil:
			return *v.IntValue
		case v.BoolValue != nil:
			return strconv.FormatBool(*v.BoolValue)
		}
	}
	return ""
}

// traces fetches path from the API v3 and returns its spans.
func (j *jaeger) spans(path string) ([]jSpan, error) {
	var r struct {
		Result struct {
			ResourceSpans []struct {
				Resource   struct{ Attributes []jAttr }
				ScopeSpans []struct{ Spans []jSpan }
			}
		}
	}
	if err := j.get(path, &r); err != nil {
		return nil, err
	}
	var spans []jSpan
	for _, rs := range r.Result.ResourceSpans {
		service := jSpan{Attributes: rs.Resource.Attributes}.attr("service.name")
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				sp.Service = service
				spans = append(spans, sp)
			}
		}
	}
	return spans, nil
}

// findSpans returns the spans of the traces holding a span of service
// that started in [from, to].
func (j *jaeger) findSpans(service string, from, to time.Time) ([]jSpan, error) {
	q := url.Values{
		"query.service_name":   {service},
		"query.start_time_min": {from.UTC().Format(time.RFC3339Nano)},
		"query.start_time_max": {to.UTC().Format(time.RFC3339Nano)},
		"query.num_traces":     {"1000"},
	}
	return j.spans("/api/v3/traces?" + q.Encode())
}

// TestJaeger runs the three services exporting their spans over OTLP/HTTP,
// as the README shows, to a real Jaeger all-in-one (v1.75.0, built from the
// Go module proxy by scripts/jaeger), sends one submission session
// (STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA), and reads it back from Jaeger's
// query API (v3) as a user would: one trace, rooted at the edge's session
// span, holding spans of smtpgate-edge, smtpgate-policy and smtpgate-auth,
// every span's parent in the trace and the one expected: command spans
// under the session, each policy or auth server span under the edge's
// client span of that call, under the command that made it (Check under
// RCPT, Authenticate under AUTH), the restriction spans under policy's
// Check span, and the hand-off under DATA.
func TestJaeger(t *testing.T) {
	j := startJaeger(t)
	// The services inherit the test's environment (exec.Cmd with no Env).
	for k, v := range map[string]string{
		"OTEL_SDK_DISABLED":                  "",
		"OTEL_TRACES_EXPORTER":               "",
		"OTEL_EXPORTER_OTLP_ENDPOINT":        "http://127.0.0.1:" + itoa(j.otlpHTTP),
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
		"OTEL_EXPORTER_OTLP_PROTOCOL":        "",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "",
		"OTEL_TRACES_SAMPLER":                "",
		"OTEL_SERVICE_NAME":                  "",
		"OTEL_RESOURCE_ATTRIBUTES":           "",
	} {
		t.Setenv(k, v)
	}
	from := time.Now().Add(-time.Minute)
	s := newStack(t, "")
	m := message{from: Trusted, listener: "submission", startTLS: true, auth: plain(JohnPassword),
		sender: "john@example.org", rcpts: []string{"lisa@example.com"}, token: newToken("jaeger")}
	if err := s.send(m); err != nil {
		t.Fatalf("send: %v", err)
	}
	if got := s.maildirTokens()[m.token]; got != 1 {
		t.Fatalf("the message is in the Maildir %d times, want 1", got)
	}
	// Stopping the services flushes their batched spans to Jaeger.
	s.stopAll()
	to := time.Now().Add(time.Minute)

	// The session's trace: the one whose root is john's session span.
	var traceID string
	deadline := time.Now().Add(30 * time.Second)
	for traceID == "" {
		spans, err := j.findSpans("smtpgate-edge", from, to)
		for _, sp := range spans {
			if sp.Name == "smtp.session" && sp.attr("smtp.sasl.username") == "john@example.org" {
				traceID = sp.TraceID
			}
		}
		if traceID == "" {
			if time.Now().After(deadline) {
				t.Fatalf("Jaeger has no trace with john@example.org's session span (%d edge spans; %v)", len(spans), err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// Jaeger stores what arrives; wait until all three services' spans
	// of the trace are there.
	var trace []jSpan
	for {
		var err error
		trace, err = j.spans("/api/v3/traces/" + traceID)
		if err != nil {
			t.Fatalf("the session's trace %s: %v", traceID, err)
		}
		services := map[string]bool{}
		for _, sp := range trace {
			services[sp.Service] = true
		}
		if services["smtpgate-edge"] && services["smtpgate-policy"] && services["smtpgate-auth"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s holds spans of %v only, want smtpgate-edge, smtpgate-policy and smtpgate-auth", traceID, services)
		}
		time.Sleep(200 * time.Millisecond)
	}

	byID := map[string]jSpan{}
	for _, sp := range trace {
		if sp.TraceID != traceID {
			t.Errorf("trace %s returned span %s %s of trace %s", traceID, sp.Service, sp.Name, sp.TraceID)
		}
		if _, dup := byID[sp.SpanID]; dup {
			t.Errorf("span ID %s twice in the trace", sp.SpanID)
		}
		byID[sp.SpanID] = sp
	}
	parent := func(sp jSpan) jSpan { return byID[sp.ParentSpanID] }
	label := func(sp jSpan) string {
		if sp.SpanID == "" {
			return "(none)"
		}
		return fmt.Sprintf("%s %s %s", sp.Service, sp.Kind, sp.Name)
	}
	var session jSpan
	var roots []string
	for _, sp := range trace {
		// Jaeger marks what it could not place (a parent missing from
		// the trace, a span ID used twice) with a warning on the span.
		if w := sp.attr("@jaeger@warnings"); strings.Contains(w, "not in the trace") || strings.Contains(w, "duplicate span IDs") {
			t.Errorf("Jaeger warns about %s: %s", label(sp), w)
		}
		if sp.ParentSpanID == "" {
			roots = append(roots, label(sp))
			session = sp
			continue
		}
		if _, ok := byID[sp.ParentSpanID]; !ok {
			t.Errorf("%s: parent %s is not in the trace", label(sp), sp.ParentSpanID)
		}
	}
	if len(roots) != 1 || session.Service != "smtpgate-edge" || session.Name != "smtp.session" || session.Kind != "SERVER" {
		t.Fatalf("roots of the trace: %v, want the edge's smtp.session server span alone", roots)
	}
	if session.attr("smtp.sasl.username") != "john@example.org" || session.attr("smtp.tls") != "true" || session.attr("client.address") != Trusted {
		t.Errorf("session span attributes: %+v", session.Attributes)
	}

	// command returns the edge command span sp descends from (sp itself
	// when it is one), the span right under the session.
	command := func(sp jSpan) jSpan {
		for range 20 {
			if sp.ParentSpanID == session.SpanID {
				return sp
			}
			sp = parent(sp)
			if sp.SpanID == "" {
				break
			}
		}
		return jSpan{}
	}
	names := map[string]int{}
	servers := map[string][]string{} // service → "server span name under command"
	restrictions := map[string]bool{}
	for _, sp := range trace {
		names[sp.Service+" "+sp.Name]++
		p := parent(sp)
		switch {
		case sp.SpanID == session.SpanID:
		case sp.Service == "smtpgate-edge" && sp.ParentSpanID == session.SpanID:
			// A command span, or the client span of the connect stage's
			// Check (made before any command).
			if sp.Name == "smtp.handoff" || !strings.HasPrefix(sp.Name, "smtp.") && sp.Kind != "CLIENT" {
				t.Errorf("%s is right under the session span", label(sp))
			}
		case sp.Service == "smtpgate-edge" && sp.Name == "smtp.handoff":
			if sp.Kind != "CLIENT" || p.Name != "smtp.DATA" || p.ParentSpanID != session.SpanID {
				t.Errorf("hand-off %s: parent %s, want the session's smtp.DATA span", label(sp), label(p))
			}
			if sp.attr("smtp.queue_id") == "" || !strings.HasPrefix(sp.attr("smtp.next_hop"), "maildir:") {
				t.Errorf("hand-off span attributes: %+v", sp.Attributes)
			}
		case sp.Kind == "SERVER":
			// A gRPC server span: its parent is the caller's client span
			// of the same method, in another service.
			if p.Kind != "CLIENT" || p.Name != sp.Name || p.Service == sp.Service {
				t.Errorf("%s: parent %s, want the caller's client span of %s", label(sp), label(p), sp.Name)
			}
			if c := command(sp); c.Service != "smtpgate-edge" {
				t.Errorf("%s does not descend from an edge command span", label(sp))
			} else {
				servers[sp.Service] = append(servers[sp.Service], sp.Name+" under "+c.Name)
			}
		case sp.attr("smtpgate.restriction.list") != "":
			// A restriction span: under policy's Check server span, or
			// under the restriction that named its list (depth > 0).
			depth := sp.attr("smtpgate.restriction.depth")
			okParent := p.Service == "smtpgate-policy" &&
				(depth == "0" && p.Kind == "SERVER" && p.Name == "smtpgate.policy.v1.PolicyService/Check" ||
					depth != "0" && p.attr("smtpgate.restriction.list") != "")
			if sp.Service != "smtpgate-policy" || !okParent {
				t.Errorf("restriction %s (depth %s): parent %s, want policy's Check server span", label(sp), depth, label(p))
			}
			restrictions[sp.Name+" "+sp.attr("smtpgate.restriction.list")+" "+sp.attr("smtpgate.restriction.result")] = true
		case sp.Service == "smtpgate-edge" && sp.Kind == "CLIENT":
			// A gRPC call of the edge, made by a command.
			if p.Service != "smtpgate-edge" || command(sp).SpanID == "" {
				t.Errorf("%s: parent %s, want an edge command span", label(sp), label(p))
			}
		}
	}
	for _, want := range []string{"smtp.EHLO", "smtp.STARTTLS", "smtp.AUTH", "smtp.MAIL", "smtp.RCPT", "smtp.DATA", "smtp.handoff"} {
		if names["smtpgate-edge "+want] == 0 {
			t.Errorf("no edge %s span in the trace; have %v", want, names)
		}
	}
	// EHLO before and after STARTTLS.
	if n := names["smtpgate-edge smtp.EHLO"]; n != 2 {
		t.Errorf("%d smtp.EHLO spans, want 2", n)
	}
	if !slices.Contains(servers["smtpgate-auth"], "smtpgate.auth.v1.AuthService/Authenticate under smtp.AUTH") {
		t.Errorf("auth server spans: %v, want Authenticate under smtp.AUTH", servers["smtpgate-auth"])
	}
	if !slices.Contains(servers["smtpgate-policy"], "smtpgate.policy.v1.PolicyService/Check under smtp.RCPT") {
		t.Errorf("policy server spans: %v, want Check under smtp.RCPT", servers["smtpgate-policy"])
	}
	// The submission listener's relay restrictions (deploy/local/master.cf)
	// permit john at RCPT.
	if !restrictions["permit_sasl_authenticated smtpd_relay_restrictions PERMIT"] {
		t.Errorf("restriction spans (name list result): %v, want permit_sasl_authenticated in smtpd_relay_restrictions permitting", restrictions)
	}

	// No policy or auth span of the run makes a trace of its own: every
	// trace Jaeger holds for them is rooted at an edge session span.
	for _, svc := range []string{"smtpgate-policy", "smtpgate-auth"} {
		spans, err := j.findSpans(svc, from, to)
		if err != nil {
			t.Fatalf("traces of %s: %v", svc, err)
		}
		for _, sp := range spans {
			if sp.ParentSpanID == "" && (sp.Service != "smtpgate-edge" || sp.Name != "smtp.session") {
				t.Errorf("a trace of %s is rooted at %s, not at an edge session", svc, label(sp))
			}
		}
	}
}
