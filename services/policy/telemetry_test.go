package policy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/smtpgate/smtpgate/pkg/otlptest"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

// serveWith runs a server built from cfg on 127.0.0.1:0 and returns a
// client of it; the server stops when the test ends.
func serveWith(t testing.TB, cfg serverSetup) policyv1.PolicyServiceClient {
	t.Helper()
	return policyv1.NewPolicyServiceClient(serveConn(t, cfg))
}

// TestTracePipeline is the whole trace path: a caller's W3C traceparent
// in, the OTLP/gRPC exporter that telemetry.Tracing builds from the
// environment, a real receiver out. The Check's server span must be the
// caller's child, and each restriction evaluated a child of it.
func TestTracePipeline(t *testing.T) {
	rcv := otlptest.Start(t)
	t.Setenv("OTEL_SDK_DISABLED", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.Endpoint())
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
	t.Setenv("OTEL_SERVICE_NAME", "")
	tp, shutdown, err := telemetry.Tracing(context.Background(), "policy")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.TracerProvider = tp
	client := serveWith(t, cfg)

	const traceID, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-"+callerSpan+"-01")
	resp, err := client.Check(ctx, rcptRequest("127.0.0.1:2525", "203.0.113.5", "lisa@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVerdict().GetAction() != policyv1.Action_ACTION_REJECT {
		t.Fatalf("verdict = %v", resp.GetVerdict())
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })

	// The server span ends just after the reply is sent: flush until it
	// arrives.
	var server *otlptest.Span
	var spans []otlptest.Span
	for deadline := time.Now().Add(10 * time.Second); server == nil && time.Now().Before(deadline); {
		if err := tp.(interface{ ForceFlush(context.Context) error }).ForceFlush(context.Background()); err != nil {
			t.Fatal(err)
		}
		spans = rcv.Spans()
		for i, s := range spans {
			if s.Kind == 2 /* SERVER */ && s.Name == "smtpgate.policy.v1.PolicyService/Check" {
				server = &spans[i]
			}
		}
		if server == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if server == nil {
		t.Fatalf("no Check server span in %+v", spans)
	}
	if server.TraceID != traceID || server.ParentSpanID != callerSpan || server.Service != "smtpgate-policy" {
		t.Errorf("server span = %+v, want trace %s, parent %s", server, traceID, callerSpan)
	}
	if server.Attributes["smtpgate.restriction"] != "reject_unauth_destination" || server.Attributes["smtpgate.reply.code"] != "554" {
		t.Errorf("server span attributes = %v", server.Attributes)
	}
	var got []string
	for _, s := range spans {
		if s.ParentSpanID != server.SpanID {
			continue
		}
		if s.TraceID != traceID {
			t.Errorf("span %s in trace %s", s.Name, s.TraceID)
		}
		got = append(got, s.Name+" "+s.Attributes["smtpgate.restriction.list"]+" "+s.Attributes["smtpgate.restriction.result"]+" "+s.Attributes["smtpgate.reply.code"])
	}
	want := []string{
		"permit_mynetworks smtpd_relay_restrictions DUNNO ",
		"permit_sasl_authenticated smtpd_relay_restrictions DUNNO ",
		"reject_unauth_destination smtpd_relay_restrictions REFUSE 554",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("restriction spans:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestMetricsScrape scrapes /metrics over HTTP after a few Checks.
func TestMetricsScrape(t *testing.T) {
	reg := telemetry.NewRegistry("policy")
	cfg := testConfig(t)
	cfg.Metrics = reg
	client := serveWith(t, cfg)
	ctx := context.Background()
	for _, req := range []*policyv1.CheckRequest{
		rcptRequest("127.0.0.1:2525", "203.0.113.5", "lisa@example.com"),
		rcptRequest("127.0.0.1:2525", "203.0.113.5", "lisa@example.com"),
		rcptRequest("127.0.0.1:2525", "127.0.0.1", "lisa@example.com"),
	} {
		if _, err := client.Check(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	body := scrape(t, reg)
	for _, want := range []string{
		`smtpgate_policy_checks_total{action="reject",stage="rcpt"} 2`,
		`smtpgate_policy_checks_total{action="permit",stage="rcpt"} 1`,
		`smtpgate_policy_refusals_total{list="smtpd_relay_restrictions",restriction="reject_unauth_destination"} 2`,
		`smtpgate_policy_check_duration_seconds_count{stage="rcpt"} 3`,
		`smtpgate_policy_dns_lookups_total{result="miss"} 0`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Check",grpc_service="smtpgate.policy.v1.PolicyService",grpc_type="unary"} 3`,
		`grpc_server_handling_seconds_count{grpc_method="Check",grpc_service="smtpgate.policy.v1.PolicyService",grpc_type="unary"} 3`,
		`grpc_client_handled_total{grpc_code="OK",grpc_method="LookupUser",grpc_service="smtpgate.auth.v1.AuthService",grpc_type="unary"} 0`,
		`smtpgate_build_info{`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in /metrics", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", grepSmtpgate(body))
	}
}

// scrape returns what /metrics serves for g.
func scrape(t *testing.T, g prometheus.Gatherer) string {
	t.Helper()
	web := httptest.NewServer(telemetry.MetricsHandler(g))
	defer web.Close()
	resp, err := http.Get(web.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func grepSmtpgate(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "smtpgate_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// BenchmarkCheckTracing is the cost of a Check over gRPC on loopback with
// tracing off (the no-op provider Tracing returns by default) and on
// (every call sampled, spans batched to an OTLP receiver).
func BenchmarkCheckTracing(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := map[bool]string{false: "off", true: "on"}[on]
		b.Run(name, func(b *testing.B) {
			var tp trace.TracerProvider
			var shutdown telemetry.ShutdownFunc
			var err error
			b.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
			b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
			b.Setenv("OTEL_TRACES_EXPORTER", "")
			if on {
				rcv := otlptest.Start(b)
				b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.Endpoint())
				b.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
				b.Setenv("OTEL_TRACES_SAMPLER", "always_on")
			}
			if tp, shutdown, err = telemetry.Tracing(context.Background(), "policy"); err != nil {
				b.Fatal(err)
			}
			defer shutdown(context.Background())
			cfg := testConfig(b)
			cfg.TracerProvider = tp
			cfg.Metrics = prometheus.NewRegistry()
			client := serveWith(b, cfg)
			req := rcptRequest("127.0.0.1:2525", "203.0.113.5", "lisa@example.com")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Check(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
