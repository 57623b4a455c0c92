package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace/noop"

	"github.com/smtpgate/smtpgate/services/edge/internal/handoff"
	"github.com/smtpgate/smtpgate/services/edge/internal/maillog"
)

// gate is a next hop that holds every message's hand-off until release
// is closed; entered gets a value when a hand-off waits.
type gate struct {
	*sink
	entered chan struct{}
	release chan struct{}
}

func (g *gate) Begin(ctx context.Context, env handoff.Envelope) (handoff.Tx, error) {
	tx, err := g.sink.Begin(ctx, env)
	return &gateTx{Tx: tx, g: g}, err
}

type gateTx struct {
	handoff.Tx
	g *gate
}

func (t *gateTx) Data(ctx context.Context, r io.Reader) error {
	t.g.entered <- struct{}{}
	<-t.g.release
	return t.Tx.Data(ctx, r)
}

// TestDrain runs four sessions through a drain: one between
// transactions, one inside a transaction waiting for a command, one
// sending DATA content and one whose message is being handed off.
func TestDrain(t *testing.T) {
	h := &harness{t: t, policy: &testPolicy{decide: permit}, auth: &testAuth{}, sink: &sink{refuse: map[string]bool{}}, logs: &logBuffer{}}
	g := &gate{sink: h.sink, entered: make(chan struct{}, 1), release: make(chan struct{})}
	h.l = &Listener{Name: "test", Hostname: "mail.example.org", Banner: "mail.example.org ESMTP smtpgate",
		MaxMessageSize: 10240000, MaxRecipients: 3, LineLimit: 2048, Timeout: 10 * time.Second, NextHop: g,
		TLS: testTLS(t), TLSLevel: TLSMay}
	drain := &Drain{}
	srv := &Server{Config: Config{Policy: h.policy, Auth: h.auth, Logger: slog.New(slog.NewJSONHandler(h.logs, nil)), Drain: drain}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	stop := serveAll(t, srv, ln, h.l)
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(g.release) }) }
	t.Cleanup(release) // before the wait above, should the test fail early

	start := func() *client {
		c := h.ehlo("250-")
		return c
	}
	idle := start()
	inTx := start()
	inTx.do("MAIL FROM:<a@example.net>", "250 ")
	inTx.do("RCPT TO:<b@example.org>", "250 ")
	// Over TLS, the read that waits is the TLS connection's.
	tlsInTx := start()
	tlsInTx.do("STARTTLS", "220 ")
	tc := tls.Client(tlsInTx.conn, &tls.Config{InsecureSkipVerify: true})
	tlsInTx.conn, tlsInTx.br = tc, bufio.NewReader(tc)
	tlsInTx.do("EHLO client.example.net", "250-")
	tlsInTx.do("MAIL FROM:<a@example.net>", "250 ")
	inData := start()
	inData.do("MAIL FROM:<a@example.net>", "250 ")
	inData.do("RCPT TO:<b@example.org>", "250 ")
	inData.do("DATA", "354 ")
	inData.send("Subject: never\r\n\r\nhalf a message\r\n")
	handing := start()
	handing.do("MAIL FROM:<a@example.net>", "250 ")
	handing.do("RCPT TO:<b@example.org>", "250 ")
	handing.do("DATA", "354 ")
	handing.send("Subject: handed\r\n\r\nbody\r\n.\r\n")
	<-g.entered
	if got := drain.Stats().Live; got != 5 {
		t.Fatalf("live sessions = %d, want 5", got)
	}

	const bye = "421 4.3.2 mail.example.org Service shutting down, closing transmission channel"
	drain.Start()
	if got := idle.reply(); got != bye {
		t.Errorf("idle session at the start of the drain: %q, want %q", got, bye)
	}
	// A transaction goes on.
	inTx.do("NOOP", "250 ")

	drain.Close()
	if got := inTx.reply(); got != bye {
		t.Errorf("session in a transaction at the deadline: %q, want %q", got, bye)
	}
	if got := tlsInTx.reply(); got != bye {
		t.Errorf("TLS session in a transaction at the deadline: %q, want %q", got, bye)
	}
	if got := inData.reply(); got != bye {
		t.Errorf("session in DATA at the deadline: %q, want %q", got, bye)
	}
	// The hand-off under way finishes, the client gets its 250, then
	// the 421.
	release()
	if got := handing.reply(); !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
		t.Errorf("session in hand-off: %q, want its 250", got)
	}
	if got := handing.reply(); got != bye {
		t.Errorf("session in hand-off after its 250: %q, want %q", got, bye)
	}
	for name, c := range map[string]*client{"idle": idle, "in a transaction": inTx, "TLS": tlsInTx, "in DATA": inData, "in hand-off": handing} {
		if _, err := c.br.ReadString('\n'); err != io.EOF {
			t.Errorf("%s session: connection not closed after the 421: %v", name, err)
		}
	}
	if msgs := h.sink.messages(); len(msgs) != 1 || !strings.Contains(msgs[0], "Subject: handed") {
		t.Errorf("next hop got %d messages, want the handed-off one: %q", len(msgs), msgs)
	}
	stop()
	want := DrainStats{Live: 0, ClosedIdle: 1, ClosedAtDeadline: 4}
	if got := drain.Stats(); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
}

// TestReconfigured: a reloaded Server has the new Config whole (every
// field of it, the new timeouts included) and shares the old one's
// worker goroutines; a field added to Server outside Config, where
// Reconfigured would not carry it, fails here.
func TestReconfigured(t *testing.T) {
	s := &Server{Config: Config{Policy: &testPolicy{}, Auth: &testAuth{}, Logger: slog.Default(), PolicyTimeout: time.Second, AuthTimeout: time.Second, PolicySkipTime: time.Second,
		Limits: &ConnLimits{}, Memory: NewMemory(1 << 20), Metrics: &Metrics{}, MailLog: &maillog.Log{}, Drain: &Drain{}, Tracer: noop.NewTracerProvider().Tracer("t")}}
	c := s.Config
	c.PolicyTimeout, c.AuthTimeout = 2*time.Second, 3*time.Second
	r := s.Reconfigured(c)
	if r.PolicyTimeout != 2*time.Second || r.AuthTimeout != 3*time.Second {
		t.Errorf("timeouts = %v, %v", r.PolicyTimeout, r.AuthTimeout)
	}
	sv, rv := reflect.ValueOf(&s.Config).Elem(), reflect.ValueOf(&r.Config).Elem()
	for i := range sv.NumField() {
		f := sv.Type().Field(i)
		if sv.Field(i).IsZero() {
			t.Errorf("the test sets no %s", f.Name)
		}
		if f.Name == "PolicyTimeout" || f.Name == "AuthTimeout" {
			continue
		}
		if !rv.Field(i).Equal(sv.Field(i)) {
			t.Errorf("Reconfigured does not carry %s over", f.Name)
		}
	}
	if r.workers() != s.workers() {
		t.Error("Reconfigured does not share the worker goroutines")
	}
	// The Server's own state, which Reconfigured makes afresh or shares
	// by hand; anything else belongs in Config.
	own := map[string]bool{"Config": true, "skipped": true, "names": true, "bufs": true, "workOnce": true, "work": true}
	st := reflect.TypeFor[Server]()
	for i := range st.NumField() {
		if f := st.Field(i); !own[f.Name] {
			t.Errorf("Server.%s is outside Config: Reconfigured drops it", f.Name)
		}
	}
}
