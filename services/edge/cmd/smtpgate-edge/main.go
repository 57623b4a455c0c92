// Command smtpgate-edge runs the smtpgate SMTP server.
//
//	smtpgate-edge [-c CONFIG_DIR]          serve
//	smtpgate-edge [-c CONFIG_DIR] check    validate the configuration
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
	"github.com/smtpgate/smtpgate/services/edge"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("smtpgate-edge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("c", "/etc/smtpgate", "configuration directory (main.cf, master.cf)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	checkOnly := false
	switch fs.Arg(0) {
	case "":
	case "check":
		checkOnly = true
	default:
		fmt.Fprintf(stderr, "smtpgate-edge: unknown command %q (want check)\n", fs.Arg(0))
		return 2
	}
	cfg, services, err := maincf.Load(maincf.Params(), *dir)
	if err == nil {
		err = edge.Validate(cfg, services)
	}
	if err != nil {
		fmt.Fprintf(stderr, "smtpgate-edge: configuration errors:\n%v\n", err)
		return 1
	}
	if checkOnly {
		return 0
	}
	log, err := telemetry.NewLogger(stderr, "edge", cfg.Get("smtpgate_log_format"), cfg.Get("smtpgate_log_level"))
	if err != nil {
		fmt.Fprintf(stderr, "smtpgate-edge: %v\n", err)
		return 1
	}
	for _, p := range cfg.Effective(maincf.Edge) {
		log.DebugContext(ctx, "config", "name", p.Name, "value", p.Value, "at", p.Pos.String())
	}
	srv, err := edge.New(edge.Config{Main: cfg, Services: services, Logger: log})
	if err != nil {
		log.ErrorContext(ctx, "start", "err", err)
		return 1
	}
	if err := srv.Run(ctx); err != nil {
		log.ErrorContext(ctx, "serve", "err", err)
		return 1
	}
	log.InfoContext(ctx, "stopped")
	return 0
}
