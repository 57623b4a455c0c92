// Package daemon is the command line every smtpgate service shares:
//
//	smtpgate-<svc> [-c CONFIG_DIR]          validate, then serve until SIGINT/SIGTERM
//	smtpgate-<svc> [-c CONFIG_DIR] check    validate only
//	smtpgate-<svc> --version                print the build (pkg/buildinfo) on stdout
//
// It loads main.cf and master.cf from the configuration directory through
// the catalogue of every service's parameters, runs the service's Load
// once (problems printed with file:line, exit 1; check stops there), sets
// up the slog logger from smtpgate_log_format/smtpgate_log_level, tracing
// from the OTEL_* environment (telemetry.Tracing), the Prometheus registry
// served on smtpgate_<svc>_metrics_listen when set, Go's profiles on
// smtpgate_<svc>_pprof_listen (loopback only) when set, logs the effective
// configuration at debug level (secrets redacted) and serves with the
// settings Load returned. Env.Reload reads the directory and runs Load
// again, for a service that reloads on SIGHUP (the edge). Spans not yet
// exported are flushed on the way out.
//
// It trusts the configuration directory (the operator's) and reports every
// problem in it instead of serving.
// Exit codes: 0 clean stop or valid configuration, 1 configuration or
// runtime error, 2 usage error.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/smtpgate/smtpgate/pkg/buildinfo"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
)

// Service describes one smtpgate service to Main; S is its settings, the
// typed result of reading its part of the configuration.
type Service[S any] struct {
	// Name is the short name ("edge", "policy", "auth").
	Name string
	// Owner selects the parameters the service reads (for the effective
	// configuration logged at debug level).
	Owner maincf.Owner
	// Catalogue knows every parameter of every service (maincf.Shared
	// and each service's params.Defs): a name nobody owns is an error.
	Catalogue *maincf.Catalogue
	// Load reads and checks the service's part of the configuration,
	// once: every problem, joined, each with its file:line. check is
	// Load with the settings dropped.
	Load func(cfg *maincf.Config, services []maincf.Service) (S, error)
	// Start builds the service from env.Settings and serves until ctx
	// ends.
	Start func(ctx context.Context, env Env[S]) error
	// Warnings, when set, returns what the settings of a valid
	// configuration should still tell the operator (gRPC callers trusted
	// off loopback); check prints each on a "warning:" line and exits 0.
	Warnings func(set S) []string
	// Usage are extra usage lines, for commands the service's main
	// handles itself before calling Main ("smtpgate-auth hash-password").
	Usage []string
	// Stdout receives what --version prints; os.Stdout when nil.
	Stdout io.Writer
}

// Loaded is one reading of the configuration directory: main.cf, master.cf
// and the settings the service's Load made of them.
type Loaded[S any] struct {
	Settings S
	Config   *maincf.Config
	Services []maincf.Service
}

// Env is what Main hands a service's Start.
type Env[S any] struct {
	// Loaded is the configuration read at start.
	Loaded[S]
	Logger *slog.Logger
	// TracerProvider is never nil: a no-op provider when tracing is off
	// (telemetry.Recording says which).
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// Metrics is the service's registry (telemetry.NewRegistry), served
	// on smtpgate_<svc>_metrics_listen when that is set.
	Metrics *prometheus.Registry
	// Reload reads main.cf and master.cf again from the configuration
	// directory and loads them as at start (Service.Load); the error
	// lists every problem with its file:line. A service that reloads on
	// SIGHUP calls it.
	Reload func() (Loaded[S], error)
}

// MetricsParam is the parameter naming where service serves its metrics.
func MetricsParam(service string) string {
	return "smtpgate_" + service + "_metrics_listen"
}

// PprofParam is the parameter naming where service serves Go's profiles.
func PprofParam(service string) string {
	return "smtpgate_" + service + "_pprof_listen"
}

// Main runs the command line of svc with args (without the program name).
func Main[S any](ctx context.Context, svc Service[S], args []string, stderr io.Writer) int {
	prog := "smtpgate-" + svc.Name
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("c", "/etc/smtpgate", "configuration `directory` (main.cf, master.cf)")
	version := fs.Bool("version", false, "print the version, VCS revision, build date and Go version, and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s [-c CONFIG_DIR] [check]\n", prog)
		for _, u := range svc.Usage {
			fmt.Fprintf(stderr, "       %s\n", u)
		}
		fmt.Fprintf(stderr, "       %s --version\n", prog)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *version {
		if fs.NArg() != 0 {
			fmt.Fprintf(stderr, "%s: --version takes no arguments\n", prog)
			fs.Usage()
			return 2
		}
		out := svc.Stdout
		if out == nil {
			out = os.Stdout
		}
		if _, err := io.WriteString(out, buildinfo.Get().String(prog)); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", prog, err)
			return 1
		}
		return 0
	}
	checkOnly := false
	switch fs.Arg(0) {
	case "":
	case "check":
		checkOnly = fs.NArg() == 1
		if !checkOnly {
			fmt.Fprintf(stderr, "%s: check takes no arguments\n", prog)
			fs.Usage()
			return 2
		}
	default:
		fmt.Fprintf(stderr, "%s: unknown command %q (want check)\n", prog, fs.Arg(0))
		fs.Usage()
		return 2
	}
	load := func() (Loaded[S], error) {
		cfg, services, err := maincf.Load(svc.Catalogue, *dir)
		if err != nil {
			return Loaded[S]{}, err
		}
		// Postfix's read-only process_name: main.cf can name a file per
		// service with ${process_name}.
		cfg = cfg.WithOverrides([]maincf.Param{{Name: "process_name", Value: prog}})
		set, err := svc.Load(cfg, services)
		if err != nil {
			return Loaded[S]{}, err
		}
		return Loaded[S]{Settings: set, Config: cfg, Services: services}, nil
	}
	loaded, err := load()
	cfg := loaded.Config
	if err != nil {
		fmt.Fprintf(stderr, "%s: configuration errors:\n%v\n", prog, err)
		return 1
	}
	if checkOnly {
		if svc.Warnings != nil {
			for _, w := range svc.Warnings(loaded.Settings) {
				fmt.Fprintf(stderr, "%s: warning: %s\n", prog, w)
			}
		}
		return 0
	}
	log, err := telemetry.NewLogger(stderr, svc.Name, cfg.Get("smtpgate_log_format"), cfg.Get("smtpgate_log_level"))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	LogEffective(ctx, log, cfg, svc.Owner)
	env := Env[S]{Loaded: loaded, Logger: log, Reload: load}
	if err := serve(ctx, svc, env); err != nil {
		log.ErrorContext(ctx, "stopped with an error", "err", err)
		return 1
	}
	log.InfoContext(ctx, "stopped")
	return 0
}

// LogEffective logs the configuration owner reads at debug level, a
// record per parameter with its value (secrets redacted) and where it
// was set: at start, and after each reload.
func LogEffective(ctx context.Context, log *slog.Logger, cfg *maincf.Config, owner maincf.Owner) {
	for _, p := range cfg.Effective(owner) {
		log.DebugContext(ctx, "config", "name", p.Name, "value", p.Value, "at", p.Pos.String())
	}
}

// serve sets up tracing and metrics, runs the service and tears them down.
func serve[S any](ctx context.Context, svc Service[S], env Env[S]) (err error) {
	cfg, log := env.Config, env.Logger
	tp, shutdown, err := telemetry.Tracing(ctx, svc.Name)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if serr := shutdown(sctx); serr != nil {
			log.WarnContext(ctx, "flushing traces", "err", serr)
		}
	}()
	if telemetry.Recording(tp) {
		log.InfoContext(ctx, "tracing on (OTEL_* environment)")
	}
	env.TracerProvider, env.Propagator, env.Metrics = tp, telemetry.Propagator(), telemetry.NewRegistry(svc.Name)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var side []chan error // the metrics and pprof servers
	serveSide := func(param string, serveFn func(context.Context, net.Listener) error) error {
		addr := cfg.Get(param)
		if addr == "" {
			return nil
		}
		var lc net.ListenConfig
		lis, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("%s %s: %w", param, addr, err)
		}
		log.InfoContext(ctx, "listening", "param", param, "addr", lis.Addr().String())
		done := make(chan error, 1)
		side = append(side, done)
		go func() {
			err := serveFn(ctx, lis)
			cancel() // a side server down stops the service
			done <- err
		}()
		return nil
	}
	waitSide := func() (err error) {
		cancel()
		for _, done := range side {
			err = errors.Join(err, <-done)
		}
		return err
	}
	if err := serveSide(MetricsParam(svc.Name), func(ctx context.Context, lis net.Listener) error {
		return telemetry.ServeMetrics(ctx, lis, env.Metrics)
	}); err != nil {
		return errors.Join(err, waitSide())
	}
	// Go's profiles, opt-in and on loopback only (maincf.CheckLoopbackAddr).
	if err := serveSide(PprofParam(svc.Name), telemetry.ServePprof); err != nil {
		return errors.Join(err, waitSide())
	}
	return errors.Join(svc.Start(ctx, env), waitSide())
}
