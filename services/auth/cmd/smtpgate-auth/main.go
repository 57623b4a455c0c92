// Command smtpgate-auth runs the smtpgate SASL authority.
//
//	smtpgate-auth [-c CONFIG_DIR]                 serve
//	smtpgate-auth [-c CONFIG_DIR] check           validate the configuration
//	smtpgate-auth hash-password [-s SCHEME]       hash the password on stdin
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
	"github.com/smtpgate/smtpgate/services/auth"
	"github.com/smtpgate/smtpgate/services/auth/internal/scheme"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "hash-password" {
		return hashPassword(args[1:], stdin, stdout, stderr)
	}
	fs := flag.NewFlagSet("smtpgate-auth", flag.ContinueOnError)
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
		fmt.Fprintf(stderr, "smtpgate-auth: unknown command %q (want check or hash-password)\n", fs.Arg(0))
		return 2
	}
	cfg, services, err := maincf.Load(maincf.Params(), *dir)
	if err == nil {
		err = auth.Validate(cfg, services)
	}
	if err != nil {
		fmt.Fprintf(stderr, "smtpgate-auth: configuration errors:\n%v\n", err)
		return 1
	}
	if checkOnly {
		return 0
	}
	log, err := telemetry.NewLogger(stderr, "auth", cfg.Get("smtpgate_log_format"), cfg.Get("smtpgate_log_level"))
	if err != nil {
		fmt.Fprintf(stderr, "smtpgate-auth: %v\n", err)
		return 1
	}
	for _, p := range cfg.Effective(maincf.Auth) {
		log.DebugContext(ctx, "config", "name", p.Name, "value", p.Value, "at", p.Pos.String())
	}
	srv, err := auth.New(auth.Config{Main: cfg, Services: services, Logger: log})
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

// hashPassword prints "{SCHEME}hash" for the first line of stdin, like
// `doveadm pw -s SCHEME`.
func hashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("smtpgate-auth hash-password", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("s", scheme.SHA512Crypt, "scheme: "+strings.Join(scheme.Names(), ", "))
	if err := fs.Parse(args); err != nil {
		return 2
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintf(stderr, "smtpgate-auth: read password: %v\n", err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "smtpgate-auth: empty password on stdin")
		return 1
	}
	st, err := scheme.Hash(*name, []byte(pw))
	if err != nil {
		fmt.Fprintf(stderr, "smtpgate-auth: %v\n", err)
		return 2
	}
	fmt.Fprintln(stdout, st.String())
	return 0
}
