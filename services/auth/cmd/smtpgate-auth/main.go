// Command smtpgate-auth runs the smtpgate SASL authority.
//
//	smtpgate-auth [-c CONFIG_DIR]                 serve
//	smtpgate-auth [-c CONFIG_DIR] check           validate the configuration
//	smtpgate-auth hash-password [-s SCHEME]       hash the password on stdin
//
// It is wiring only: it trusts the configuration directory it is pointed
// at and, for hash-password, whoever writes to its stdin (the operator);
// the password is read from the first line of stdin and only its hash is
// printed. What the running service trusts is said in package auth.
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

	"github.com/smtpgate/smtpgate/pkg/daemon"
	"github.com/smtpgate/smtpgate/pkg/maincf"
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
	return daemon.Main(ctx, daemon.Service[auth.Settings]{
		Name:      "auth",
		Owner:     maincf.Auth,
		Catalogue: auth.Catalogue(),
		Load:      auth.Load,
		Warnings:  auth.Warnings,
		Start: func(ctx context.Context, env daemon.Env[auth.Settings]) error {
			srv, err := auth.New(env.Settings, auth.Config{Logger: env.Logger,
				TracerProvider: env.TracerProvider, Propagator: env.Propagator, Metrics: env.Metrics})
			if err != nil {
				return err
			}
			defer srv.Close()
			return srv.Run(ctx)
		},
	}, args, stderr)
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
