package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/smtpgate/smtpgate/pkg/buildinfo"
)

// Propagator is the propagation every smtpgate hop uses: W3C trace context
// (the traceparent and tracestate headers, gRPC metadata here).
func Propagator() propagation.TextMapPropagator {
	return propagation.TraceContext{}
}

// ShutdownFunc flushes the spans not yet exported and stops the exporter.
type ShutdownFunc func(context.Context) error

// Tracing returns the tracer provider of service ("edge", "policy",
// "auth") as the standard OpenTelemetry environment describes it:
//
//	OTEL_SDK_DISABLED=true                      no tracing
//	OTEL_TRACES_EXPORTER=otlp|none              unset: otlp when an endpoint is set, else none
//	OTEL_EXPORTER_OTLP_ENDPOINT                 e.g. http://127.0.0.1:4317 (grpc) or :4318 (http)
//	OTEL_EXPORTER_OTLP_TRACES_ENDPOINT          overrides the former for traces
//	OTEL_EXPORTER_OTLP_PROTOCOL                 grpc or http/protobuf (the default)
//	OTEL_EXPORTER_OTLP_TRACES_PROTOCOL          overrides the former for traces
//	OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG default parentbased_always_on
//	OTEL_SERVICE_NAME                           default smtpgate-<service>
//	OTEL_RESOURCE_ATTRIBUTES                    key=value,...
//
// The other OTEL_EXPORTER_OTLP_* variables (headers, certificates,
// timeouts) are read by the exporter itself. Without an exporter the
// provider is a no-op one: spans are never recorded and cost next to
// nothing. The shutdown function flushes what is buffered; call it on
// exit.
func Tracing(ctx context.Context, service string) (trace.TracerProvider, ShutdownFunc, error) {
	return tracing(ctx, service, os.Getenv)
}

func noShutdown(context.Context) error { return nil }

func tracing(ctx context.Context, service string, getenv func(string) string) (trace.TracerProvider, ShutdownFunc, error) {
	off := noop.NewTracerProvider()
	if v := strings.TrimSpace(getenv("OTEL_SDK_DISABLED")); strings.EqualFold(v, "true") {
		return off, noShutdown, nil
	}
	endpoint := firstEnv(getenv, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "":
		if endpoint == "" {
			return off, noShutdown, nil
		}
	case "none":
		return off, noShutdown, nil
	case "otlp":
	default:
		return nil, nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want otlp or none", exp)
	}
	sampler, err := samplerFromEnv(getenv)
	if err != nil {
		return nil, nil, err
	}
	var exporter *otlptrace.Exporter
	// The exporters read OTEL_EXPORTER_OTLP_* themselves (endpoint,
	// headers, TLS, timeout); only the protocol is chosen here.
	switch proto := firstEnv(getenv, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"); proto {
	case "grpc":
		exporter, err = otlptracegrpc.New(ctx)
	case "", "http/protobuf":
		exporter, err = otlptracehttp.New(ctx)
	default:
		return nil, nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want grpc or http/protobuf", proto)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", "smtpgate-"+service),
			attribute.String("service.version", buildinfo.Get().Version),
		),
		resource.WithTelemetrySDK(),
		// Last, so that OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win.
		resource.WithFromEnv(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		_ = exporter.Shutdown(ctx)
		return nil, nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
	)
	return tp, tp.Shutdown, nil
}

// firstEnv returns the first of names that is set, trimmed.
func firstEnv(getenv func(string) string, names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(getenv(n)); v != "" {
			return v
		}
	}
	return ""
}

// samplerFromEnv reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG;
// unlike the SDK it reports a bad value instead of ignoring it.
func samplerFromEnv(getenv func(string) string) (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio between 0 and 1", arg)
		}
		return f, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio", "parentbased_traceidratio":
		f, err := ratio()
		if err != nil {
			return nil, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(f), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(f)), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio or their parentbased_ forms", name)
}

// Recording says whether tp may record spans: false for nil and for the
// no-op provider Tracing returns when tracing is off, so that callers can
// skip their instrumentation altogether.
func Recording(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case nil, noop.TracerProvider, *noop.TracerProvider:
		return false
	}
	return true
}
