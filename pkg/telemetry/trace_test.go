package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/smtpgate/smtpgate/pkg/otlptest"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
)

// clearEnv unsets the variables Tracing reads, for the test.
func clearEnv(t *testing.T) {
	for _, v := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(v, "")
	}
}

func TestTracingOff(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"nothing set", nil},
		{"exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}},
		{"sdk disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			tp, shutdown, err := telemetry.Tracing(context.Background(), "policy")
			if err != nil {
				t.Fatal(err)
			}
			if telemetry.Recording(tp) {
				t.Errorf("provider %T records", tp)
			}
			_, span := tp.Tracer("x").Start(context.Background(), "s")
			if span.IsRecording() {
				t.Error("span records")
			}
			if err := shutdown(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestTracingBadEnv(t *testing.T) {
	for _, tc := range []struct{ name, key, value, want string }{
		{"exporter", "OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER"},
		{"protocol", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"sampler", "OTEL_TRACES_SAMPLER", "sometimes", "OTEL_TRACES_SAMPLER"},
		{"sampler arg", "OTEL_TRACES_SAMPLER_ARG", "2", "OTEL_TRACES_SAMPLER_ARG"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
			t.Setenv("OTEL_TRACES_SAMPLER", "traceidratio")
			t.Setenv(tc.key, tc.value)
			_, _, err := telemetry.Tracing(context.Background(), "policy")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one naming %s", err, tc.want)
			}
		})
	}
}

// TestTracingExports sends a span through the real OTLP/gRPC exporter to
// the test receiver.
func TestTracingExports(t *testing.T) {
	clearEnv(t)
	rcv := otlptest.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", rcv.Endpoint())
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
	ctx := context.Background()
	tp, shutdown, err := telemetry.Tracing(ctx, "auth")
	if err != nil {
		t.Fatal(err)
	}
	if !telemetry.Recording(tp) {
		t.Fatal("tracing is off")
	}
	_, span := tp.Tracer("test").Start(ctx, "hello", trace.WithSpanKind(trace.SpanKindServer))
	span.End()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	spans := rcv.Spans()
	if len(spans) != 1 || spans[0].Name != "hello" || spans[0].Service != "smtpgate-auth" {
		t.Fatalf("received %+v", spans)
	}
}

func TestTraceHandler(t *testing.T) {
	var b bytes.Buffer
	log, err := telemetry.NewLogger(&b, "policy", "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	log.With("a", 1).InfoContext(ctx, "traced")
	log.InfoContext(context.Background(), "untraced")
	dec := json.NewDecoder(&b)
	var rec map[string]any
	if err := dec.Decode(&rec); err != nil {
		t.Fatal(err)
	}
	if rec["trace_id"] != tid.String() || rec["span_id"] != sid.String() || rec["a"] != 1.0 {
		t.Errorf("traced record = %v", rec)
	}
	rec = nil
	if err := dec.Decode(&rec); err != nil {
		t.Fatal(err)
	}
	if _, ok := rec["trace_id"]; ok {
		t.Errorf("untraced record = %v", rec)
	}
}
