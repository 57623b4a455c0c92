package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/smtpgate/smtpgate/pkg/grpcclient"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/handoff"
	"github.com/smtpgate/smtpgate/services/edge/internal/maillog"
)

// BenchmarkTransaction runs one whole mail transaction per iteration over
// a live loopback session (policy and next hop are in-process test seams):
// the engine's own cost per message.
func BenchmarkTransaction(b *testing.B) {
	h := newHarness(b, permit, nil)
	c := h.dial()
	c.reply()
	c.send("EHLO bench.example\r\n")
	c.reply()
	body := "Subject: bench\r\n\r\n" + strings.Repeat("0123456789012345678901234567890123456789012345678901234567890123456789\r\n", 40)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for b.Loop() {
		c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<john@example.org>\r\nDATA\r\n")
		c.reply()
		c.reply()
		c.reply()
		c.send(body + ".\r\n")
		if r := c.reply(); !strings.HasPrefix(r, "250 2.0.0") {
			b.Fatalf("end of data: %q", r)
		}
	}
}

// benchPolicy is a policy service that permits everything and says, as
// smtpgate-policy does for a listener whose only restrictions are on
// RCPT, that it always permits the other stages: with PolicySkipTime the
// edge then asks once per message, as in scripts/bench's scenario a.
type benchPolicy struct {
	policyv1.UnimplementedPolicyServiceServer
}

func (benchPolicy) Check(context.Context, *policyv1.CheckRequest) (*policyv1.CheckResponse, error) {
	return &policyv1.CheckResponse{
		Verdict: &policyv1.Verdict{Action: policyv1.Action_ACTION_PERMIT},
		PermitStages: []policyv1.Stage{policyv1.Stage_STAGE_CONNECT, policyv1.Stage_STAGE_HELO, policyv1.Stage_STAGE_MAIL,
			policyv1.Stage_STAGE_DATA, policyv1.Stage_STAGE_END_OF_DATA},
	}, nil
}

// grpcPolicy adapts the generated client to the engine's seam, as the
// edge's policyClient does.
type grpcPolicy struct{ c policyv1.PolicyServiceClient }

func (p grpcPolicy) Check(ctx context.Context, req *policyv1.CheckRequest) (*policyv1.CheckResponse, error) {
	return p.c.Check(ctx, req)
}

// benchSink is a go-smtp next hop that takes every message.
type benchSink struct{ delivered atomic.Int64 }

func (k *benchSink) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return benchSinkSession{k}, nil }

type benchSinkSession struct{ k *benchSink }

func (benchSinkSession) Reset()                                 {}
func (benchSinkSession) Logout() error                          { return nil }
func (benchSinkSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (benchSinkSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (s benchSinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.k.delivered.Add(1)
	return nil
}

// newSessionBench starts an engine built as smtpgate-edge builds it for
// scripts/bench's scenario a: policy over gRPC (pkg/grpcclient's client
// to an in-process server on loopback), handoff.Relay to a go-smtp next
// hop on loopback with kept connections, the slog logger of
// pkg/telemetry at info level and the mail log, both writing to
// io.Discard. It returns the edge's address and the next hop.
func newSessionBench(b *testing.B) (string, *benchSink) {
	b.Helper()
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer()
	policyv1.RegisterPolicyServiceServer(gs, benchPolicy{})
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() { _ = gs.Serve(gln) }()
	b.Cleanup(gs.Stop)
	cc, err := grpcclient.Dial(gln.Addr().String(), grpcclient.WithTimeout(time.Second))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })

	k := &benchSink{}
	hs := gosmtp.NewServer(k)
	hs.Domain = "next.example"
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = hs.Serve(hln) }()
	b.Cleanup(func() { hs.Close() })
	hop, err := handoff.Parse("smtp://"+hln.Addr().String(), nil, handoff.Options{Hostname: "mail.example.org", Timeout: 10 * time.Second, IdleConnections: 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if c, ok := hop.(io.Closer); ok {
			c.Close()
		}
	})

	log, err := telemetry.NewLogger(io.Discard, "edge", "text", "info")
	if err != nil {
		b.Fatal(err)
	}
	l := &Listener{Name: "127.0.0.1:2525", Hostname: "mail.example.org", Banner: "mail.example.org ESMTP smtpgate",
		MaxMessageSize: 10240000, MaxRecipients: 1000, LineLimit: 2048, Timeout: 300 * time.Second,
		DisableVRFY: true, HardErrorLimit: 20, SoftErrorLimit: 10, ErrorSleep: time.Second, JunkCommandLimit: 100,
		NextHop: hop, ETRN: true, BareNewline: BareNewlineNormalize}
	srv := &Server{Config: Config{Policy: grpcPolicy{policyv1.NewPolicyServiceClient(cc)}, Auth: &testAuth{}, Logger: log,
		PolicyTimeout: 5 * time.Second, AuthTimeout: 5 * time.Second, PolicySkipTime: time.Minute,
		MailLog: maillog.New(io.Discard, "mail.example.org", ""), Metrics: NewMetrics(prometheus.NewRegistry()), Drain: &Drain{}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	serveAll(b, srv, ln, l)
	return ln.Addr().String(), k
}

// BenchmarkSession runs one whole SMTP session per iteration, as
// smtpgate-bench does in scenario a: connect, greeting, EHLO, MAIL, RCPT,
// DATA with 1 KiB, QUIT, each reply awaited. The engine's pieces are the
// real ones (newSessionBench); the client is a plain socket with a
// buffered reader, kept as cheap as it can be.
func BenchmarkSession(b *testing.B) {
	addr, k := newSessionBench(b)
	body := "Subject: bench\r\n\r\n" + strings.Repeat("0123456789012345678901234567890123456789012345678901234567890\r\n", 16)
	body = body[:1024-2] + "\r\n"
	script := []struct{ send, want string }{
		{"", "220 "},
		{"EHLO client.example.net\r\n", "250 "},
		{"MAIL FROM:<a@example.net>\r\n", "250 "},
		{"RCPT TO:<lisa-1@example.com>\r\n", "250 "},
		{"DATA\r\n", "354 "},
		{body + ".\r\n", "250 2.0.0"},
		{"QUIT\r\n", "221 "},
	}
	br := bufio.NewReaderSize(nil, 4096)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		br.Reset(c)
		for _, step := range script {
			if step.send != "" {
				if _, err := io.WriteString(c, step.send); err != nil {
					b.Fatal(err)
				}
			}
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					b.Fatalf("after %q: %v", step.send, err)
				}
				if len(line) >= 4 && line[3] == '-' {
					continue
				}
				if !bytes.HasPrefix(line, []byte(step.want)) {
					b.Fatalf("after %q: %q, want %q", step.send, line, step.want)
				}
				break
			}
		}
		c.Close()
	}
	b.StopTimer()
	if n := k.delivered.Load(); n < int64(b.N) {
		b.Fatalf("next hop got %d messages, want %d", n, b.N)
	}
}
