// Command smtpgate-policy serves smtpgate's restriction lists over gRPC
// (smtpgate.policy.v1.PolicyService) to the edge.
//
//	smtpgate-policy [-c CONFIG_DIR] [check]
//
// It reads CONFIG_DIR/main.cf and CONFIG_DIR/master.cf (default
// /etc/smtpgate). With "check" it validates the configuration, prints every
// problem with its file:line to stderr and exits 1 if there is any, 0 if
// there is none. Without it, it validates the same way, then serves until
// SIGINT or SIGTERM and stops gracefully. This file is wiring only.
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
	"github.com/smtpgate/smtpgate/services/policy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("smtpgate-policy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("c", "/etc/smtpgate", "configuration `directory` (main.cf, master.cf)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: smtpgate-policy [-c CONFIG_DIR] [check]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	checkOnly := false
	switch {
	case fs.NArg() == 0:
	case fs.NArg() == 1 && fs.Arg(0) == "check":
		checkOnly = true
	default:
		fs.Usage()
		return 2
	}

	cfg, services, err := maincf.Load(maincf.Params(), *dir)
	if err != nil {
		fmt.Fprintf(stderr, "smtpgate-policy: %v\n", err)
		return 1
	}
	if err := policy.Validate(cfg, services); err != nil {
		printErrors(stderr, err)
		return 1
	}
	if checkOnly {
		return 0
	}

	log, err := telemetry.NewLogger(stderr, "policy", cfg.Get("smtpgate_log_format"), cfg.Get("smtpgate_log_level"))
	if err != nil {
		fmt.Fprintf(stderr, "smtpgate-policy: %v\n", err)
		return 1
	}
	srv, err := policy.New(policy.Config{Main: cfg, Services: services, Logger: log})
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	if err := srv.Run(ctx); err != nil {
		log.ErrorContext(ctx, "stopped", "err", err)
		return 1
	}
	log.InfoContext(ctx, "stopped")
	return 0
}

// printErrors prints each joined error on its own line.
func printErrors(w io.Writer, err error) {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			printErrors(w, e)
		}
		return
	}
	fmt.Fprintf(w, "smtpgate-policy: %v\n", err)
}
