// Command smtpgate-policy serves smtpgate's restriction lists over gRPC
// (smtpgate.policy.v1.PolicyService) to the edge.
//
//	smtpgate-policy [-c CONFIG_DIR]          validate, then serve
//	smtpgate-policy [-c CONFIG_DIR] check    validate the configuration
//	smtpgate-policy import [-o DIR] MAIN_CF [MASTER_CF]
//
// The first two are the command line every service shares (pkg/daemon).
// import reads an existing Postfix main.cf (and the master.cf beside it,
// or MASTER_CF) and reports, setting by setting, whether smtpgate takes,
// ignores, cannot honour or does not know it; with -o it writes the
// smtpgate main.cf and master.cf made of what was taken. It exits 0 when
// everything can be taken (as Postfix does it) or ignored, 1 when anything
// behaves differently, cannot be honoured or is unknown, 2 on usage errors.
// This file is wiring only. It trusts its configuration directory; import
// trusts the Postfix files it is given no further than to read them: what
// it cannot map is reported, never guessed.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/smtpgate/smtpgate/pkg/daemon"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/services/policy"
	"github.com/smtpgate/smtpgate/services/policy/internal/importcf"
)

const importUsage = "smtpgate-policy import [-o DIR] MAIN_CF [MASTER_CF]"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "import" {
		return runImport(args[1:], stdout, stderr)
	}
	return daemon.Main(ctx, daemon.Service[policy.Settings]{
		Name:      "policy",
		Owner:     maincf.Policy,
		Catalogue: policy.Catalogue(),
		Load:      policy.Load,
		Warnings:  policy.Warnings,
		Start: func(ctx context.Context, env daemon.Env[policy.Settings]) error {
			srv, err := policy.New(env.Settings, policy.Config{Logger: env.Logger,
				TracerProvider: env.TracerProvider, Propagator: env.Propagator, Metrics: env.Metrics})
			if err != nil {
				return err
			}
			defer srv.Close()
			return srv.Run(ctx)
		},
		Usage: []string{importUsage},
	}, args, stderr)
}

// runImport is "smtpgate-policy import".
func runImport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("smtpgate-policy import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write the smtpgate main.cf and master.cf to `directory`")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n", importUsage)
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "exit status: 0 smtpgate takes everything as Postfix does it (or it does not matter);\n"+
			"1 anything behaves differently, cannot be honoured or is unknown, or a file cannot be read or written; 2 usage error\n")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fs.Usage()
		return 2
	}
	report, err := importcf.Import(importcf.Options{Main: fs.Arg(0), Master: fs.Arg(1)})
	if err != nil {
		fmt.Fprintf(stderr, "smtpgate-policy: import: %v\n", err)
		return 1
	}
	if err := report.WriteText(stdout); err != nil {
		fmt.Fprintf(stderr, "smtpgate-policy: import: %v\n", err)
		return 1
	}
	if *out != "" {
		if err := report.WriteConfig(*out); err != nil {
			fmt.Fprintf(stderr, "smtpgate-policy: import: %v\n", err)
			return 1
		}
	}
	if !report.OK() {
		return 1
	}
	return 0
}
