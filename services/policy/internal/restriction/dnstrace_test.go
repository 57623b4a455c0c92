package restriction

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A traced check has a span per DNS lookup, saying where the answer came
// from.
func TestDNSLookupSpans(t *testing.T) {
	stub := startDNSStub(t)
	r := testResolver(t, stub)
	e, err := compileDNS(t, r, nil, "smtpd_client_restrictions = reject_rbl_client bl.test")
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	for range 2 {
		ctx, span := tp.Tracer("test").Start(context.Background(), "Check")
		if _, err := e.Check(ctx, facts(from("198.51.100.7"))); err != nil {
			t.Fatal(err)
		}
		span.End()
	}
	var sources []string
	for _, s := range rec.Ended() {
		if s.Name() != "dns A" {
			continue
		}
		for _, a := range s.Attributes() {
			if a.Key == "dns.source" {
				sources = append(sources, a.Value.AsString())
			}
		}
	}
	if len(sources) != 2 || sources[0] != "dns" || sources[1] != "cache" {
		t.Errorf("dns spans' sources %v, want [dns cache]", sources)
	}
}
