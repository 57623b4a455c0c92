package grpcclient

import (
	"context"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/smtpgate/smtpgate/pkg/grpcserver"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
)

// Metrics are the call metrics of a process's gRPC clients, under the
// names, labels and help of go-grpc-middleware's Prometheus provider
// (its ClientMetrics with the handling time histogram), which stock gRPC
// dashboards read: grpc_client_started_total,
// grpc_client_handled_total{grpc_type,grpc_service,grpc_method,grpc_code},
// grpc_client_handling_seconds, grpc_client_msg_sent_total and
// grpc_client_msg_received_total. The calls are measured by the
// provider's own interceptors (go-grpc-middleware/v2/interceptors), so
// what counts as started, handled and its code is the provider's.
//
// They are not the provider's ClientMetrics because that has no way to
// make a method's series before its first call (its ServerMetrics has
// InitializeMetrics): Initialize does it here, so that alerts and
// dashboards see every method of the services a client calls at zero
// from the start.
type Metrics struct {
	started, handled, sent, received *prometheus.CounterVec
	handling                         *prometheus.HistogramVec
}

// NewMetrics registers the client metrics in r (nil: unregistered). The
// clients of one process share them: a second NewMetrics on the same r
// returns metrics counting into the same series.
func NewMetrics(r prometheus.Registerer) *Metrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return telemetry.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
	}
	return &Metrics{
		started:  counter("grpc_client_started_total", "Total number of RPCs started on the client.", labels),
		handled:  counter("grpc_client_handled_total", "Total number of RPCs completed by the client, regardless of success or failure.", append(labels[:3:3], "grpc_code")),
		received: counter("grpc_client_msg_received_total", "Total number of RPC stream messages received by the client.", labels),
		sent:     counter("grpc_client_msg_sent_total", "Total number of gRPC stream messages sent by the client.", labels),
		handling: telemetry.Register(r, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_client_handling_seconds",
			Help:    "Histogram of response latency (seconds) of the gRPC until it is finished by the application.",
			Buckets: grpcserver.HandlingBuckets,
		}, labels)),
	}
}

// Initialize makes, at zero, the series of every method of sd (and
// every code of grpc_client_handled_total).
func (m *Metrics) Initialize(sd *grpc.ServiceDesc) {
	init := func(typ interceptors.GRPCType, method string) {
		m.started.WithLabelValues(string(typ), sd.ServiceName, method)
		m.sent.WithLabelValues(string(typ), sd.ServiceName, method)
		m.received.WithLabelValues(string(typ), sd.ServiceName, method)
		m.handling.WithLabelValues(string(typ), sd.ServiceName, method)
		for _, c := range interceptors.AllCodes {
			m.handled.WithLabelValues(string(typ), sd.ServiceName, method, c.String())
		}
	}
	for _, md := range sd.Methods {
		init(interceptors.Unary, md.MethodName)
	}
	for _, st := range sd.Streams {
		typ := interceptors.BidiStream
		switch {
		case st.ClientStreams && !st.ServerStreams:
			typ = interceptors.ClientStream
		case !st.ClientStreams && st.ServerStreams:
			typ = interceptors.ServerStream
		}
		init(typ, st.StreamName)
	}
}

// WithMetrics measures every call of the connection but health checks
// and reflection (grpcserver.Measured) in m, whose series
// for every method of services are made at once (Initialize).
func WithMetrics(m *Metrics, services ...*grpc.ServiceDesc) Option {
	return func(o *options) {
		for _, sd := range services {
			m.Initialize(sd)
		}
		o.metrics = m
	}
}

// ClientReporter starts measuring a call (interceptors.ClientReportable).
func (m *Metrics) ClientReporter(ctx context.Context, meta interceptors.CallMeta) (interceptors.Reporter, context.Context) {
	r := &reporter{m: m, labels: [3]string{string(meta.Typ), meta.Service, meta.Method}}
	m.started.WithLabelValues(r.labels[:]...).Inc()
	return r, ctx
}

// reporter measures one call.
type reporter struct {
	m      *Metrics
	labels [3]string
}

func (r *reporter) PostCall(err error, d time.Duration) {
	r.m.handled.WithLabelValues(r.labels[0], r.labels[1], r.labels[2], grpcprom.FromError(err).Code().String()).Inc()
	r.m.handling.WithLabelValues(r.labels[:]...).Observe(d.Seconds())
}

func (r *reporter) PostMsgSend(_ any, err error, _ time.Duration) {
	if err == nil {
		r.m.sent.WithLabelValues(r.labels[:]...).Inc()
	}
}

func (r *reporter) PostMsgReceive(_ any, err error, _ time.Duration) {
	if err == nil {
		r.m.received.WithLabelValues(r.labels[:]...).Inc()
	}
}
