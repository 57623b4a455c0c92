// Command smtpgate-edge runs the smtpgate SMTP server.
//
//	smtpgate-edge [-c CONFIG_DIR]          serve
//	smtpgate-edge [-c CONFIG_DIR] check    validate the configuration
//
// Signals: SIGTERM and SIGINT drain (no new connections, sessions finish
// their transaction until smtpgate_shutdown_timeout) and exit 0, a second
// one stops at once; SIGHUP
// reloads main.cf, master.cf and the TLS certificates for new sessions,
// or, when the new configuration is invalid, logs every error with its
// file:line and keeps the old one; SIGUSR1 and SIGHUP reopen the mail log
// file (maillog_file) by name, after logrotate moved it away, as
// Postfix's "postfix logrotate" has postlogd do.
//
// It trusts its configuration directory and the signals it is sent (the
// operator's); everything else is the edge package's to judge.
package main

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/smtpgate/smtpgate/pkg/daemon"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/services/edge"
	"github.com/smtpgate/smtpgate/services/edge/internal/maillog"
)

func main() {
	// SIGHUP is caught from the start: its default action ends the
	// process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	// The first SIGTERM or SIGINT drains; a second one ends the process
	// at once (the signal's default action). The default is restored
	// before the drain begins, so a second signal sent once the drain is
	// logged is never swallowed.
	term := make(chan os.Signal, 1)
	signal.Notify(term, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-term
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		cancel()
	}()
	os.Exit(daemon.Main(ctx, daemon.Service[edge.Settings]{
		Name:      "edge",
		Owner:     maincf.Edge,
		Catalogue: edge.Catalogue(),
		Load:      edge.Load,
		Start: func(ctx context.Context, env daemon.Env[edge.Settings]) error {
			// The mail log in Postfix's words and program names, for
			// pflogsumm and fail2ban's postfix filters (maillog_file).
			mailLog, err := env.Settings.OpenMailLog()
			if err != nil {
				return err
			}
			defer mailLog.Close()
			cfg := edge.Config{Logger: env.Logger, TracerProvider: env.TracerProvider, Metrics: env.Metrics, MailLog: mailLog}
			srv, err := edge.New(env.Settings, cfg)
			if err != nil {
				return err
			}
			defer srv.Close()
			go reloadOnHUP(ctx, hup, srv, env, mailLog)
			go reopenOnUSR1(ctx, usr1, env, mailLog)
			return srv.Run(ctx)
		},
	}, os.Args[1:], os.Stderr))
}

// reopenOnUSR1 reopens the mail log at every SIGUSR1 until ctx ends.
func reopenOnUSR1(ctx context.Context, usr1 <-chan os.Signal, env daemon.Env[edge.Settings], mailLog *maillog.Log) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-usr1:
		}
		reopen(ctx, env, mailLog)
	}
}

// reopen reopens the mail log file by name (logrotate moved it away).
func reopen(ctx context.Context, env daemon.Env[edge.Settings], mailLog *maillog.Log) {
	if err := mailLog.Reopen(); err != nil {
		env.Logger.ErrorContext(ctx, "mail log not reopened; lines go to the old file", "err", err)
	}
}

// reloadOnHUP reloads the configuration and reopens the mail log at
// every SIGHUP until ctx ends. (The mail log's parameters themselves are
// read only at start.)
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, srv *edge.Server, env daemon.Env[edge.Settings], mailLog *maillog.Log) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		reopen(ctx, env, mailLog)
		env.Logger.InfoContext(ctx, "SIGHUP: reloading the configuration")
		l, err := env.Reload()
		if err == nil {
			err = srv.Reload(ctx, l.Settings)
		}
		if err == nil {
			daemon.LogEffective(ctx, env.Logger, l.Config, maincf.Edge)
			continue
		}
		// One line per problem, each with its file:line.
		for _, line := range strings.Split(err.Error(), "\n") {
			env.Logger.ErrorContext(ctx, "configuration reload failed", "error", line)
		}
		env.Logger.ErrorContext(ctx, "configuration reload failed; the configuration in use stays")
	}
}
