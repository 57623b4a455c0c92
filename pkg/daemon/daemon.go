// Package daemon is the command line every smtpgate service shares:
//
//	smtpgate-<svc> [-c CONFIG_DIR]          validate, then serve until SIGINT/SIGTERM
//	smtpgate-<svc> [-c CONFIG_DIR] check    validate only
//
// It loads main.cf and master.cf from the configuration directory, runs
// the service's validation (problems printed with file:line, exit 1), sets
// up the slog logger from smtpgate_log_format/smtpgate_log_level, logs the
// effective configuration at debug level (secrets redacted) and serves.
// Exit codes: 0 clean stop or valid configuration, 1 configuration or
// runtime error, 2 usage error.
package daemon

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
)

// Service describes one smtpgate service to Main.
type Service struct {
	// Name is the short name ("edge", "policy", "auth").
	Name string
	// Owner selects the parameters the service reads.
	Owner maincf.Owner
	// Validate checks the configuration; all problems, joined.
	Validate func(cfg *maincf.Config, services []maincf.Service) error
	// Run builds the service and serves until ctx ends.
	Run func(ctx context.Context, cfg *maincf.Config, services []maincf.Service, log *slog.Logger) error
	// Usage are extra usage lines, for commands the service's main
	// handles itself before calling Main ("smtpgate-auth hash-password").
	Usage []string
}

// Main runs the command line of svc with args (without the program name).
func Main(ctx context.Context, svc Service, args []string, stderr io.Writer) int {
	prog := "smtpgate-" + svc.Name
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("c", "/etc/smtpgate", "configuration `directory` (main.cf, master.cf)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s [-c CONFIG_DIR] [check]\n", prog)
		for _, u := range svc.Usage {
			fmt.Fprintf(stderr, "       %s\n", u)
		}
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
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
	cfg, services, err := maincf.Load(maincf.Params(), *dir)
	if err == nil {
		err = svc.Validate(cfg, services)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: configuration errors:\n%v\n", prog, err)
		return 1
	}
	if checkOnly {
		return 0
	}
	log, err := telemetry.NewLogger(stderr, svc.Name, cfg.Get("smtpgate_log_format"), cfg.Get("smtpgate_log_level"))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	for _, p := range cfg.Effective(svc.Owner) {
		log.DebugContext(ctx, "config", "name", p.Name, "value", p.Value, "at", p.Pos.String())
	}
	if err := svc.Run(ctx, cfg, services, log); err != nil {
		log.ErrorContext(ctx, "stopped with an error", "err", err)
		return 1
	}
	log.InfoContext(ctx, "stopped")
	return 0
}
