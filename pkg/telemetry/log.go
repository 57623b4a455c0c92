// Package telemetry sets up what every smtpgate service reports about
// itself: structured logs (log/slog) carrying the trace and span ids of
// their context, OpenTelemetry traces exported over OTLP (Tracing), and
// Prometheus metrics (NewRegistry, ServeMetrics).
//
// Trust: its settings come from main.cf and the OTEL_* environment
// variables, both the operator's and trusted; a bad value is an error,
// never a silent default. The metrics and pprof endpoints answer whoever
// can reach their listener (the callers bind pprof to loopback); log
// attributes are what the callers pass, and the callers keep secrets out
// of them.
package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// NewLogger returns a slog logger writing format ("text" or "json") at level
// ("debug", "info", "warn", "error") to w, with a service attribute. Records
// logged with a context that holds a span (the …Context methods) carry its
// trace_id and span_id.
func NewLogger(w io.Writer, service, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch format {
	case "", "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("log format %q: want text or json", format)
	}
	return slog.New(TraceHandler(h)).With("service", service), nil
}

// TraceHandler wraps h so that every record logged with a context holding
// a valid span context gets trace_id and span_id attributes.
func TraceHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(traceHandler); ok {
		return h
	}
	return traceHandler{h}
}

type traceHandler struct{ next slog.Handler }

func (h traceHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.next.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.next.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.next.WithGroup(name)}
}
