// Command smtpgate-policy serves smtpgate's restriction lists over gRPC
// (smtpgate.policy.v1.PolicyService) to the edge.
//
//	smtpgate-policy [-c CONFIG_DIR]          validate, then serve
//	smtpgate-policy [-c CONFIG_DIR] check    validate the configuration
//	smtpgate-policy import [-o DIR] MAIN_CF [MASTER_CF]
//	smtpgate-policy table [-c DIR] [-q KEY | -d KEY] TYPE:NAME [FILE]
//
// The first two are the command line every service shares (pkg/daemon).
// import reads an existing Postfix main.cf (and the master.cf beside it,
// or MASTER_CF) and reports, setting by setting, whether smtpgate takes,
// ignores, cannot honour or does not know it; with -o it writes the
// smtpgate main.cf and master.cf made of what was taken. It exits 0 when
// everything can be taken (as Postfix does it) or ignored, 1 when anything
// behaves differently, cannot be honoured or is unknown, 2 on usage errors.
// table is postmap(1) for smtpgate's redis: tables: with FILE it loads
// that text table (postmap's format) into the table, with -q it prints
// the value of KEY (in any table type, as smtpgate-policy looks it up),
// with -d it deletes KEY; it exits 0 on success, 1 when KEY is not found,
// 2 on usage errors and failures.
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
	"path/filepath"
	"syscall"

	"github.com/smtpgate/smtpgate/pkg/daemon"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/services/policy"
	"github.com/smtpgate/smtpgate/services/policy/internal/importcf"
	"github.com/smtpgate/smtpgate/services/policy/internal/table"
)

const (
	importUsage = "smtpgate-policy import [-o DIR] MAIN_CF [MASTER_CF]"
	tableUsage  = "smtpgate-policy table [-c DIR] [-q KEY | -d KEY] TYPE:NAME [FILE]"
)

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
	if len(args) > 0 && args[0] == "table" {
		return runTable(ctx, args[1:], stdout, stderr)
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
		Usage: []string{importUsage, tableUsage},
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

// runTable is "smtpgate-policy table".
func runTable(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("smtpgate-policy table", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("c", "/etc/smtpgate", "configuration `directory` (relative table names)")
	query := fs.String("q", "", "print the value of `key`")
	del := fs.String("d", "", "delete `key` (redis: tables)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n", tableUsage)
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "with FILE: load that text table (postmap's format) into a redis: table\n"+
			"exit status: 0 done; 1 key not found; 2 usage error or failure\n")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	set := 0
	for _, b := range []bool{*query != "", *del != "", fs.NArg() == 2} {
		if b {
			set++
		}
	}
	if fs.NArg() < 1 || fs.NArg() > 2 || set != 1 {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "smtpgate-policy: table: %v\n", err)
		return 2
	}
	spec, opts := fs.Arg(0), table.Options{Dir: *dir}
	if *query != "" {
		t, err := table.Open(spec, opts)
		if err != nil {
			return fail(err)
		}
		if c, ok := t.(io.Closer); ok {
			defer c.Close()
		}
		v, ok, err := t.Lookup(ctx, *query)
		if err != nil {
			return fail(err)
		}
		if !ok {
			return 1
		}
		fmt.Fprintln(stdout, v)
		return 0
	}
	t, err := table.OpenRedis(spec, opts)
	if err != nil {
		return fail(err)
	}
	defer t.Close()
	if *del != "" {
		ok, err := t.Delete(ctx, *del)
		if err != nil {
			return fail(err)
		}
		if !ok {
			return 1
		}
		return 0
	}
	path := fs.Arg(1)
	if !filepath.IsAbs(path) {
		path = filepath.Join(*dir, path)
	}
	entries, err := table.ReadText(path)
	if err != nil {
		return fail(err)
	}
	if err := t.Set(ctx, entries); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "%s: %d entries loaded\n", spec, len(entries))
	return 0
}
