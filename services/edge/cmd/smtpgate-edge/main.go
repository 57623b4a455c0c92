// Command smtpgate-edge runs the smtpgate SMTP server.
//
//	smtpgate-edge [-c CONFIG_DIR]          serve
//	smtpgate-edge [-c CONFIG_DIR] check    validate the configuration
package main

import (
	"context"
	"log/slog"
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
		Run: func(ctx context.Context, cfg *maincf.Config, services []maincf.Service, log *slog.Logger) error {
			srv, err := edge.New(edge.Config{Main: cfg, Services: services, Logger: log})
			if err != nil {
				return err
			}
			return srv.Run(ctx)
		},
	}, os.Args[1:], os.Stderr))
}
