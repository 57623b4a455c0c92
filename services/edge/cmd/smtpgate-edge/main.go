// Command smtpgate-edge runs the smtpgate SMTP server.
//
//	smtpgate-edge [-c CONFIG_DIR]          serve
//	smtpgate-edge [-c CONFIG_DIR] check    validate the configuration
package main

import (
	"context"
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
			srv, err := edge.New(edge.Config{Main: env.Config, Services: env.Services, Logger: env.Logger,
				TracerProvider: env.TracerProvider, Metrics: env.Metrics})
			if err != nil {
				return err
			}
			return srv.Run(ctx)
		},
	}, os.Args[1:], os.Stderr))
}
