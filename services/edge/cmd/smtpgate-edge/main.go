// Command smtpgate-edge runs the smtpgate SMTP server.
//
//	smtpgate-edge [-c CONFIG_DIR]          serve
//	smtpgate-edge [-c CONFIG_DIR] check    validate the configuration
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/smtpgate/smtpgate/pkg/daemon"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/services/edge"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(daemon.Main(ctx, daemon.Service{
		Name:     "edge",
		Owner:    maincf.Edge,
		Validate: edge.Validate,
		Start: func(ctx context.Context, env daemon.Env) error {
			cfg := edge.Config{Main: env.Config, Services: env.Services, Logger: env.Logger,
				TracerProvider: env.TracerProvider, Metrics: env.Metrics}
			// smtpgate_maillog_file: a mail log in Postfix smtpd's words,
			// for pflogsumm and fail2ban's postfix filters.
			if path := env.Config.Path("smtpgate_maillog_file"); path != "" {
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
				if err != nil {
					return fmt.Errorf("smtpgate_maillog_file: %w", err)
				}
				defer f.Close()
				cfg.MailLog = f
			}
			srv, err := edge.New(cfg)
			if err != nil {
				return err
			}
			return srv.Run(ctx)
		},
	}, os.Args[1:], os.Stderr))
}
