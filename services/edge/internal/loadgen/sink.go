package loadgen

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// Sink is a bare go-smtp server that accepts every message and throws it
// away after reading it: the next hop of a benchmark, and the baseline of
// what a Go SMTP server without policy costs.
type Sink struct {
	srv      *smtp.Server
	messages atomic.Int64
}

// NewSink returns a sink; Serve starts it.
func NewSink() *Sink {
	s := &Sink{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sinkSession{s}, nil
	}))
	srv.Domain = "sink.smtpgate.invalid"
	srv.ReadTimeout, srv.WriteTimeout = 5*time.Minute, 5*time.Minute
	srv.MaxMessageBytes = 64 << 20
	srv.MaxRecipients = 10000
	s.srv = srv
	return s
}

// Messages returns how many messages the sink has accepted.
func (s *Sink) Messages() int64 { return s.messages.Load() }

// Serve serves l until ctx ends.
func (s *Sink) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { _ = s.srv.Close() })
	defer stop()
	err := s.srv.Serve(l)
	if ctx.Err() != nil || errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

type sinkSession struct{ s *Sink }

func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }
func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (x *sinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	x.s.messages.Add(1)
	return nil
}
