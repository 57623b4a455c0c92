package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/smtpgate/smtpgate/pkg/buildinfo"
)

// NewRegistry returns the Prometheus registry of service ("edge",
// "policy", "auth"), holding the Go runtime and process collectors and
// smtpgate_build_info{service,version,revision,build_date,go_version}
// (always 1; pkg/buildinfo, as --version and AdminService/Status). Each
// service registers its own metrics on it; nothing is global.
func NewRegistry(service string) *prometheus.Registry {
	bi := buildinfo.Get()
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "smtpgate_build_info",
			Help: "Build of the running smtpgate service (always 1).",
			ConstLabels: prometheus.Labels{"service": service, "version": bi.Version, "revision": bi.Revision,
				"build_date": bi.Date, "go_version": bi.GoVersion},
		}, func() float64 { return 1 }),
	)
	return reg
}

// MetricsHandler serves the metrics of g in the Prometheus text format.
func MetricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// ServeMetrics serves g on /metrics at lis until ctx is done.
func ServeMetrics(ctx context.Context, lis net.Listener, g prometheus.Gatherer) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", MetricsHandler(g))
	if err := serveHTTP(ctx, lis, mux); err != nil {
		return fmt.Errorf("metrics on %s: %w", lis.Addr(), err)
	}
	return nil
}

// serveHTTP serves h at lis until ctx is done, then shuts down.
func serveHTTP(ctx context.Context, lis net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	}
}

// Register registers c on r and returns it, or the collector already
// registered under the same descriptors (so that two servers built in one
// process with the same registry share their metrics). A nil r discards.
func Register[C prometheus.Collector](r prometheus.Registerer, c C) C {
	if r == nil {
		return c
	}
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(fmt.Sprintf("telemetry: registering metrics: %v", err))
	}
	return c
}
