package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/certtest"
	"github.com/smtpgate/smtpgate/pkg/logtest"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/handoff"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// testPolicy answers with decide, and records the requests.
type testPolicy struct {
	mu     sync.Mutex
	decide func(*policyv1.CheckRequest) (*policyv1.Verdict, error)
	reqs   []*policyv1.CheckRequest
	// permitStages go with every answer (CheckResponse.permit_stages).
	permitStages []policyv1.Stage
	// names go with an answer to a request without the client's names
	// (CheckResponse.client_names), as policy resolves them.
	names *policyv1.ClientNames
}

func (p *testPolicy) setPermitStages(stages ...policyv1.Stage) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.permitStages = stages
}

func (p *testPolicy) Check(ctx context.Context, req *policyv1.CheckRequest) (*policyv1.CheckResponse, error) {
	p.mu.Lock()
	p.reqs = append(p.reqs, req)
	stages, names := p.permitStages, p.names
	p.mu.Unlock()
	if req.GetSession().GetClientNameStatus() != policyv1.NameStatus_NAME_STATUS_UNSPECIFIED {
		names = nil
	}
	type answer struct {
		v   *policyv1.Verdict
		err error
	}
	ch := make(chan answer, 1)
	go func() { v, err := p.decide(req); ch <- answer{v, err} }()
	select {
	case a := <-ch:
		if a.err != nil {
			return nil, a.err
		}
		return &policyv1.CheckResponse{Verdict: a.v, PermitStages: stages, ClientNames: names}, nil
	case <-ctx.Done():
		return nil, ctx.Err() // as a gRPC client does at its deadline
	}
}

func permit(*policyv1.CheckRequest) (*policyv1.Verdict, error) {
	return &policyv1.Verdict{Action: policyv1.Action_ACTION_PERMIT}, nil
}

// relayDenied refuses recipients outside example.org, as Postfix words it.
func relayDenied(req *policyv1.CheckRequest) (*policyv1.Verdict, error) {
	if req.GetStage() == policyv1.Stage_STAGE_RCPT && !strings.HasSuffix(req.GetTransaction().GetRecipient(), "@example.org") {
		return &policyv1.Verdict{Action: policyv1.Action_ACTION_REJECT, Code: 554, EnhancedCode: "5.7.1", Text: "<" + req.GetTransaction().GetRecipient() + ">: Relay access denied"}, nil
	}
	return permit(req)
}

// testAuth accepts john/secret with PLAIN and LOGIN.
type testAuth struct {
	fail bool
}

func (a *testAuth) Mechanisms(context.Context, *authv1.MechanismsRequest) (*authv1.MechanismsResponse, error) {
	if a.fail {
		return nil, errors.New("auth down")
	}
	return &authv1.MechanismsResponse{Mechanisms: []string{"PLAIN", "LOGIN"}}, nil
}

func (a *testAuth) Authenticate(ctx context.Context) (AuthStream, error) {
	if a.fail {
		return nil, errors.New("auth down")
	}
	return &testStream{ctx: ctx}, nil
}

type testStream struct {
	ctx   context.Context
	start *authv1.Start
	out   []*authv1.AuthenticateResponse
	user  string
	step  int
}

func outcome(r authv1.Result, user string) *authv1.AuthenticateResponse {
	return &authv1.AuthenticateResponse{Step: &authv1.AuthenticateResponse_Outcome{Outcome: &authv1.Outcome{Result: r, Username: user}}}
}

func challenge(s string) *authv1.AuthenticateResponse {
	return &authv1.AuthenticateResponse{Step: &authv1.AuthenticateResponse_Challenge{Challenge: &authv1.Challenge{Data: []byte(s)}}}
}

func checkPlain(b []byte) *authv1.AuthenticateResponse {
	if string(b) == "\x00john\x00secret" {
		return outcome(authv1.Result_RESULT_SUCCESS, "john")
	}
	return outcome(authv1.Result_RESULT_FAILURE, "")
}

func (s *testStream) Send(req *authv1.AuthenticateRequest) error {
	switch st := req.GetStep().(type) {
	case *authv1.AuthenticateRequest_Start:
		s.start = st.Start
		switch {
		case st.Start.GetMechanism() == "PLAIN" && st.Start.GetHasInitialResponse():
			s.out = append(s.out, checkPlain(st.Start.GetInitialResponse()))
		case st.Start.GetMechanism() == "PLAIN":
			s.out = append(s.out, challenge(""))
		case st.Start.GetMechanism() == "LOGIN":
			s.out = append(s.out, challenge("Username:"))
		default:
			s.out = append(s.out, outcome(authv1.Result_RESULT_UNSUPPORTED_MECHANISM, ""))
		}
	case *authv1.AuthenticateRequest_Cancel:
		s.out = append(s.out, outcome(authv1.Result_RESULT_CANCELLED, ""))
	case *authv1.AuthenticateRequest_Response:
		if s.start.GetMechanism() == "PLAIN" {
			s.out = append(s.out, checkPlain(st.Response))
		} else if s.step == 0 {
			s.user, s.step = string(st.Response), 1
			s.out = append(s.out, challenge("Password:"))
		} else if s.user == "john" && string(st.Response) == "secret" {
			s.out = append(s.out, outcome(authv1.Result_RESULT_SUCCESS, "john"))
		} else {
			s.out = append(s.out, outcome(authv1.Result_RESULT_FAILURE, ""))
		}
	}
	return nil
}

func (s *testStream) Recv() (*authv1.AuthenticateResponse, error) {
	if len(s.out) == 0 {
		<-s.ctx.Done()
		return nil, s.ctx.Err()
	}
	r := s.out[0]
	s.out = s.out[1:]
	return r, nil
}

func (s *testStream) CloseSend() error { return nil }

// sink is a next hop that records messages; refuse makes it refuse a
// recipient with the next hop's own reply.
type sink struct {
	mu      sync.Mutex
	msgs    []string
	rcpts   [][]string
	refuse  map[string]bool
	aborted int
	// begun counts next-hop transactions opened; forwarded lists every
	// recipient passed on, accepted or not.
	begun     int
	forwarded []string
	// receiving counts the Data calls under way: content on its way to
	// the next hop.
	receiving int
}

func (k *sink) String() string { return "sink" }

func (k *sink) Begin(context.Context, handoff.Envelope) (handoff.Tx, error) {
	k.mu.Lock()
	k.begun++
	k.mu.Unlock()
	return &sinkTx{k: k}, nil
}

type sinkTx struct {
	k     *sink
	rcpts []string
	done  bool
}

func (t *sinkTx) Rcpt(_ context.Context, a string, _ handoff.RecipientDSN) error {
	t.k.mu.Lock()
	t.k.forwarded = append(t.k.forwarded, a)
	t.k.mu.Unlock()
	if t.k.refuse[a] {
		return reply.NextHopRefused(550, "5.1.1", "<"+a+">: Recipient address rejected: User unknown")
	}
	t.rcpts = append(t.rcpts, a)
	return nil
}

func (t *sinkTx) Data(_ context.Context, r io.Reader) error {
	t.k.mu.Lock()
	t.k.receiving++
	t.k.mu.Unlock()
	msg, err := io.ReadAll(r)
	t.k.mu.Lock()
	t.k.receiving--
	t.k.mu.Unlock()
	if err != nil {
		return err
	}
	t.k.mu.Lock()
	defer t.k.mu.Unlock()
	t.k.msgs = append(t.k.msgs, string(msg))
	t.k.rcpts = append(t.k.rcpts, t.rcpts)
	t.done = true
	return nil
}

func (t *sinkTx) Abort() {
	if !t.done {
		t.k.mu.Lock()
		t.k.aborted++
		t.k.mu.Unlock()
	}
}

// inData is how many messages are on their way to the sink now.
func (k *sink) inData() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.receiving
}

func (k *sink) messages() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.msgs...)
}

// harness runs a listener on loopback with the test seams.
type harness struct {
	t      testing.TB
	addr   string
	policy *testPolicy
	auth   *testAuth
	sink   *sink
	l      *Listener
	logs   *logBuffer
}

// logBuffer collects the engine's JSON log records.
type logBuffer struct{ logtest.Buffer }

// records returns the log records written so far.
func (b *logBuffer) records(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if len(line) == 0 {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

func newHarness(t testing.TB, decide func(*policyv1.CheckRequest) (*policyv1.Verdict, error), tune func(*Listener)) *harness {
	t.Helper()
	h := &harness{t: t, policy: &testPolicy{decide: decide}, auth: &testAuth{}, sink: &sink{refuse: map[string]bool{}}, logs: &logBuffer{}}
	h.l = &Listener{Name: "test", Hostname: "mail.example.org", Banner: "mail.example.org ESMTP smtpgate",
		MaxMessageSize: 10240000, MaxRecipients: 3, LineLimit: 2048, Timeout: 10 * time.Second,
		DisableVRFY: true, HardErrorLimit: 20, NextHop: h.sink, TLS: testTLS(t), TLSLevel: TLSMay}
	if tune != nil {
		tune(h.l)
	}
	srv := &Server{Config: Config{Policy: h.policy, Auth: h.auth, PolicyTimeout: 500 * time.Millisecond, AuthTimeout: 500 * time.Millisecond, PolicySkipTime: time.Minute,
		Logger: slog.New(slog.NewJSONHandler(h.logs, nil))}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	serveAll(t, srv, ln, h.l)
	return h
}

// serveAll runs srv on listener l for every connection ln accepts. The
// function it returns, also called when the test ends, closes ln, cancels
// the sessions' context and waits for the sessions to end.
func serveAll(tb testing.TB, srv *Server, ln net.Listener, l *Listener) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); srv.Serve(ctx, c, l) }()
		}
	}()
	stop = sync.OnceFunc(func() { ln.Close(); cancel(); wg.Wait() })
	tb.Cleanup(stop)
	return stop
}

func testTLS(t testing.TB) *tls.Config {
	t.Helper()
	return &tls.Config{Certificates: []tls.Certificate{certtest.SelfSignedCert(t, "mail.example.org")}, MinVersion: tls.VersionTLS12}
}

// client is a raw SMTP client.
type client struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func (h *harness) dial() *client {
	h.t.Helper()
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	h.t.Cleanup(func() { conn.Close() })
	return &client{t: h.t, conn: conn, br: bufio.NewReader(conn)}
}

// ehlo dials, reads the greeting and says EHLO client.example.net,
// checking that the reply starts with want.
func (h *harness) ehlo(want string) *client {
	h.t.Helper()
	c := h.dial()
	c.reply()
	c.do("EHLO client.example.net", want)
	return c
}

// reply reads one (possibly multi-line) reply and returns its last line.
func (c *client) reply() string {
	c.t.Helper()
	var lines []string
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply after %q: %v", lines, err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] == ' ' {
			return strings.Join(lines, "|")
		}
	}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatal(err)
	}
}

// do sends one command line and checks that the reply starts with want.
func (c *client) do(cmd, want string) string {
	c.t.Helper()
	c.send(cmd + "\r\n")
	got := c.reply()
	if !strings.HasPrefix(got, want) {
		c.t.Errorf("%q: got %q, want %q", cmd, got, want)
	}
	return got
}

// steps sends each step's first string as it is (with its CRLF) and
// checks that the reply starts with the second; a mismatch ends the
// test.
func (c *client) steps(steps ...[2]string) {
	c.t.Helper()
	for _, step := range steps {
		c.send(step[0])
		if r := c.reply(); !strings.HasPrefix(r, step[1]) {
			c.t.Fatalf("%q: %q, want %s", step[0], r, step[1])
		}
	}
}

// refusedThenQueued is a transaction with one recipient refused (a
// relay) and one accepted, and its message queued.
func refusedThenQueued() [][2]string {
	return [][2]string{
		{"EHLO client.example.net\r\n", "250"},
		{"MAIL FROM:<a@example.net>\r\n", "250"},
		{"RCPT TO:<x@elsewhere.example>\r\n", "554 5.7.1"},
		{"RCPT TO:<john@example.org>\r\n", "250"},
		{"DATA\r\n", "354"},
		{"Subject: t\r\n\r\nhi\r\n.\r\n", "250 2.0.0"},
	}
}

func TestDialogue(t *testing.T) {
	h := newHarness(t, relayDenied, func(l *Listener) { l.HardErrorLimit = 100 })
	c := h.dial()
	for _, step := range [][2]string{
		{"", "220 mail.example.org ESMTP smtpgate"},
		{"HELO", "501 Syntax: HELO hostname"},
		{"EHLO", "501 Syntax: EHLO hostname"},
		{"EHLO client.example.net", "250-mail.example.org"},
		{"RCPT TO:<john@example.org>", "503 5.5.1 Error: need MAIL command"},
		{"DATA", "503 5.5.1 Error: need MAIL command"},
		{"FOO", "500 5.5.2 Error: command not recognized"},
		{"VRFY john", "502 5.5.1 VRFY command is disabled"},
		{"MAIL TO:<a@b>", "501 5.5.4 Syntax: MAIL FROM:<address>"},
		{"MAIL FROM:<bad address>", "501 5.1.7 Bad sender address syntax"},
		{"MAIL FROM:<a@example.net> FOO=bar", "555 5.5.4 Unsupported option: FOO=bar"},
		{"MAIL FROM:<a@example.net> SIZE=abc", "501 5.5.4 Bad message size syntax"},
		{"MAIL FROM:<a@example.net> SIZE=99999999999", "552 5.3.4 Message size exceeds fixed limit"},
		{"MAIL FROM:<a@example.net> BODY=9BIT", "555 5.5.4 Unsupported option: BODY=9BIT"},
		{"RSET x", "501 5.5.4 Syntax: RSET"},
		{"MAIL FROM:<a@example.net> SIZE=100 BODY=8BITMIME", "250 2.1.0 Ok"},
		{"MAIL FROM:<a@example.net>", "503 5.5.1 Error: nested MAIL command"},
		{"DATA", "554 5.5.1 Error: no valid recipients"},
		{"RCPT TO:<bad address>", "501 5.1.3 Bad recipient address syntax"},
		{"RCPT TO:<>", "501 5.1.3 Bad recipient address syntax"},
		{"RCPT FROM:<x@example.org>", "501 5.5.4 Syntax: RCPT TO:<address>"},
		{"RCPT TO:<lisa@example.com>", "554 5.7.1 <lisa@example.com>: Relay access denied"},
		{"RCPT TO:<john@example.org>", "250 2.1.5 Ok"},
		{"RCPT TO:<jane@example.org>", "250 2.1.5 Ok"},
		{"RCPT TO:<joe@example.org>", "250 2.1.5 Ok"},
		{"RCPT TO:<jim@example.org>", "452 4.5.3 Error: too many recipients"},
		{"RSET", "250 2.0.0 Ok"},
		{"NOOP", "250 2.0.0 Ok"},
		{"AUTH PLAIN", "503 5.5.1 Error: authentication not enabled"},
		{"STARTTLS now", "501 5.5.4 Syntax: STARTTLS"},
		{"\x00", "500 5.5.2 Error: bad syntax"},
		{"MAIL FROM:<" + strings.Repeat("a", 3000) + "@example.net>", "500 5.5.2 mail.example.org Error: command too long"},
		{"QUIT", "221 2.0.0 Bye"},
	} {
		if step[0] == "" {
			if got := c.reply(); got != step[1] {
				t.Errorf("greeting %q, want %q", got, step[1])
			}
			continue
		}
		c.do(step[0], step[1])
	}
	if n := len(h.sink.messages()); n != 0 {
		t.Errorf("%d messages delivered, want none", n)
	}
}

// TestHELORequired: Postfix accepts MAIL before HELO unless
// smtpd_helo_required = yes.
func TestHELORequired(t *testing.T) {
	h := newHarness(t, permit, nil)
	c := h.dial()
	c.reply()
	c.do("MAIL FROM:<a@example.net>", "250 2.1.0 Ok")
	c.do("RCPT TO:<john@example.org>", "250 2.1.5 Ok")
	h = newHarness(t, permit, func(l *Listener) { l.HELORequired = true })
	c = h.dial()
	c.reply()
	c.do("MAIL FROM:<a@example.net>", "503 5.5.1 Error: send HELO/EHLO first")
}

func TestEHLOKeywords(t *testing.T) {
	h := newHarness(t, permit, func(l *Listener) { l.SASL = true; l.TLSAuthOnly = true })
	c := h.dial()
	c.reply()
	got := c.do("EHLO client.example.net", "250-mail.example.org")
	want := "250-mail.example.org|250-PIPELINING|250-SIZE 10240000|250-STARTTLS|250-ENHANCEDSTATUSCODES|250-8BITMIME|250-DSN|250-SMTPUTF8|250 CHUNKING"
	if got != want {
		t.Errorf("EHLO before TLS = %q, want %q", got, want)
	}
	c.do("AUTH PLAIN AHhAeA==", "503 5.5.1 Error: authentication not enabled")
}

// TestPipelinedTransaction sends a whole transaction in one write
// (RFC 2920) and gets every reply, in order, and one message.
func TestPipelinedTransaction(t *testing.T) {
	h := newHarness(t, relayDenied, nil)
	c := h.ehlo("250-")
	c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<john@example.org>\r\nRCPT TO:<lisa@example.com>\r\nDATA\r\n")
	for _, want := range []string{"250 2.1.0", "250 2.1.5", "554 5.7.1 <lisa@example.com>: Relay access denied", "354 End data with <CR><LF>.<CR><LF>"} {
		if got := c.reply(); !strings.HasPrefix(got, want) {
			t.Errorf("pipelined reply %q, want %q", got, want)
		}
	}
	c.send("Subject: pipelined\r\n\r\nhi\r\n.\r\nQUIT\r\n")
	if got := c.reply(); !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
		t.Errorf("end of data: %q", got)
	}
	c.reply()
	msgs := h.sink.messages()
	if len(msgs) != 1 || !strings.Contains(msgs[0], "Subject: pipelined\r\n") || !strings.Contains(msgs[0], "by mail.example.org (smtpgate) with ESMTP id ") {
		t.Errorf("delivered %q", msgs)
	}
	if got := h.sink.rcpts[0]; len(got) != 1 || got[0] != "john@example.org" {
		t.Errorf("delivered to %q, want only john@example.org", got)
	}
}

// TestSmuggling: each smuggling variant (smuggleSeparators) yields exactly
// one message whose content holds the would-be second transaction as text
// (smtpd_forbid_bare_newline = normalize, the default).
func TestSmuggling(t *testing.T) {
	for _, v := range smuggleSeparators {
		sep := v.sep
		t.Run(escaped(sep), func(t *testing.T) {
			h := newHarness(t, permit, nil)
			c := h.ehlo("250-")
			c.do("MAIL FROM:<a@example.net>", "250 ")
			c.do("RCPT TO:<john@example.org>", "250 ")
			c.do("DATA", "354 ")
			c.send("Subject: one\r\n\r\nfirst" + sep + "MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nsecond\r\n.\r\n")
			if got := c.reply(); !strings.HasPrefix(got, "250 2.0.0 Ok: queued as") {
				t.Fatalf("end of data: %q", got)
			}
			c.do("QUIT", "221")
			msgs := h.sink.messages()
			if len(msgs) != 1 {
				t.Fatalf("%d messages reached the next hop, want exactly 1", len(msgs))
			}
			if !strings.Contains(msgs[0], "Subject: smuggled") {
				t.Errorf("the smuggled text is not inside the one message: %q", msgs[0])
			}
			for _, line := range strings.Split(msgs[0], "\r\n") {
				if strings.ContainsAny(line, "\r\n") {
					t.Errorf("content line %q could end the message at the next hop", line)
				}
			}
		})
	}
}

func TestPolicyFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		decide func(*policyv1.CheckRequest) (*policyv1.Verdict, error)
	}{
		{"error", func(r *policyv1.CheckRequest) (*policyv1.Verdict, error) {
			if r.GetStage() == policyv1.Stage_STAGE_RCPT {
				return nil, errors.New("unavailable")
			}
			return permit(r)
		}},
		{"timeout", func(r *policyv1.CheckRequest) (*policyv1.Verdict, error) {
			if r.GetStage() == policyv1.Stage_STAGE_RCPT {
				time.Sleep(2 * time.Second)
			}
			return permit(r)
		}},
		{"no action", func(r *policyv1.CheckRequest) (*policyv1.Verdict, error) {
			if r.GetStage() == policyv1.Stage_STAGE_RCPT {
				return &policyv1.Verdict{}, nil
			}
			return permit(r)
		}},
		{"reject with a 2xx code", func(r *policyv1.CheckRequest) (*policyv1.Verdict, error) {
			if r.GetStage() == policyv1.Stage_STAGE_RCPT {
				return &policyv1.Verdict{Action: policyv1.Action_ACTION_REJECT, Code: 250}, nil
			}
			return permit(r)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.decide, nil)
			c := h.ehlo("250-")
			c.do("MAIL FROM:<a@example.net>", "250 ")
			c.do("RCPT TO:<john@example.org>", "451 4.3.0 <john@example.org>: Temporary lookup failure")
			c.do("DATA", "554 5.5.1 Error: no valid recipients")
		})
	}
	h := newHarness(t, func(*policyv1.CheckRequest) (*policyv1.Verdict, error) { return nil, errors.New("down") }, nil)
	c := h.dial()
	if got := c.reply(); !strings.HasPrefix(got, "421 4.3.0 mail.example.org") {
		t.Errorf("greeting with policy down = %q, want 421 4.3.0", got)
	}
}

func TestConnectRefusal(t *testing.T) {
	h := newHarness(t, func(r *policyv1.CheckRequest) (*policyv1.Verdict, error) {
		if r.GetStage() == policyv1.Stage_STAGE_CONNECT {
			return &policyv1.Verdict{Action: policyv1.Action_ACTION_REJECT, Code: 554, EnhancedCode: "5.7.1", Text: "<unknown[127.0.0.1]>: Client host rejected: Access denied"}, nil
		}
		return permit(r)
	}, nil)
	c := h.dial()
	if got := c.reply(); got != "554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied" {
		t.Errorf("greeting %q", got)
	}
	c.do("EHLO x", "503 5.7.0 Error: access denied for unknown[127.0.0.1]")
	c.do("MAIL FROM:<a@b>", "503 5.7.0 Error: access denied")
	c.do("QUIT", "221 2.0.0 Bye")
}

func TestNextHopRefusalPassesThrough(t *testing.T) {
	h := newHarness(t, permit, nil)
	h.sink.refuse["nobody@example.org"] = true
	c := h.ehlo("250-")
	c.do("MAIL FROM:<a@example.net>", "250 ")
	c.do("RCPT TO:<nobody@example.org>", "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown")
	c.do("RCPT TO:<john@example.org>", "250 ")
	c.do("RSET", "250 ")
	c.do("QUIT", "221")
	if len(h.sink.messages()) != 0 || h.sink.aborted != 1 {
		t.Errorf("after RSET: %d messages, %d aborted; want 0 and 1", len(h.sink.messages()), h.sink.aborted)
	}
}

func TestPolicyFacts(t *testing.T) {
	h := newHarness(t, permit, nil)
	c := h.dial()
	c.reply()
	c.do("HELO client.example.net", "250 mail.example.org")
	c.do("MAIL FROM:<a@example.net> SIZE=42", "250 ")
	c.do("RCPT TO:<john@example.org>", "250 ")
	c.do("DATA", "354")
	c.send("x\r\n.\r\n")
	c.reply()
	c.do("QUIT", "221")
	h.policy.mu.Lock()
	defer h.policy.mu.Unlock()
	var stages []string
	for _, r := range h.policy.reqs {
		stages = append(stages, strings.TrimPrefix(r.GetStage().String(), "STAGE_"))
		if r.GetSession().GetListener() != "test" || r.GetSession().GetClientAddress() != "127.0.0.1" || r.GetSession().GetServerPort() == 0 {
			t.Errorf("%v: session facts %v", r.GetStage(), r.GetSession())
		}
	}
	if got := strings.Join(stages, " "); got != "CONNECT HELO MAIL RCPT DATA END_OF_DATA" {
		t.Errorf("stages asked = %q", got)
	}
	rcpt := h.policy.reqs[3]
	if rcpt.GetSession().GetHeloName() != "client.example.net" || rcpt.GetSession().GetProtocol() != "SMTP" ||
		rcpt.GetTransaction().GetSender() != "a@example.net" || rcpt.GetTransaction().GetRecipient() != "john@example.org" || rcpt.GetTransaction().GetSize() != 42 {
		t.Errorf("RCPT facts = %v", rcpt)
	}
	eod := h.policy.reqs[5].GetTransaction()
	if eod.GetRecipientCount() != 1 || eod.GetRecipient() != "john@example.org" || eod.GetSize() != 3 || eod.GetQueueId() == "" {
		t.Errorf("END_OF_DATA facts = %v", eod)
	}
}

func startTLS(t *testing.T, c *client) *client {
	t.Helper()
	c.do("STARTTLS", "220 2.0.0 Ready to start TLS")
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return &client{t: t, conn: tc, br: bufio.NewReader(tc)}
}

func TestSTARTTLSAndAUTH(t *testing.T) {
	h := newHarness(t, permit, func(l *Listener) { l.SASL = true; l.TLSAuthOnly = true; l.TLSLevel = TLSEncrypt })
	c := h.ehlo("250-")
	c.do("MAIL FROM:<john@example.org>", "530 5.7.0 Must issue a STARTTLS command first")
	c = startTLS(t, c)
	// After STARTTLS the session starts over (RFC 3207 §4.2); as in
	// Postfix, MAIL needs no new EHLO, but EHLO resets the transaction.
	c.do("MAIL FROM:<john@example.org>", "250 2.1.0 Ok")
	got := c.do("EHLO client.example.net", "250-")
	if strings.Contains(got, "STARTTLS") || !strings.Contains(got, "250-AUTH PLAIN LOGIN") {
		t.Errorf("EHLO after TLS = %q", got)
	}
	c.do("STARTTLS", "554 5.5.1 Error: TLS already active")
	b64 := base64.StdEncoding.EncodeToString
	c.do("AUTH PLAIN "+b64([]byte("\x00john\x00wrong")), "535 5.7.8 Error: authentication failed")
	c.do("AUTH PLAIN !!!", "501 5.5.2 Cannot decode response")
	c.do("AUTH CRAM-MD5", "504 5.5.4")
	c.do("AUTH PLAIN", "334 ")
	c.do("*", "501 5.7.0 Authentication aborted")
	c.do("AUTH LOGIN", "334 "+b64([]byte("Username:")))
	c.do(b64([]byte("john")), "334 "+b64([]byte("Password:")))
	c.do("%%%", "501 5.5.2 Cannot decode response")
	c.do("AUTH LOGIN", "334 ")
	c.do(b64([]byte("john")), "334 ")
	c.do(b64([]byte("secret")), "235 2.7.0 Authentication successful")
	c.do("AUTH PLAIN "+b64([]byte("\x00john\x00secret")), "503 5.5.1 Error: already authenticated")
	c.do("MAIL FROM:<john@example.org>", "250 ")
	c.do("RCPT TO:<lisa@example.com>", "250 ")
	c.do("DATA", "354")
	c.send("Subject: auth\r\n\r\nx\r\n.\r\n")
	c.reply()
	msgs := h.sink.messages()
	if len(msgs) != 1 || !strings.Contains(msgs[0], "with ESMTPSA id") || !strings.Contains(msgs[0], "(using TLSv1.3") {
		t.Errorf("delivered %q", msgs)
	}
	last := h.policy.reqs[len(h.policy.reqs)-1].GetSession()
	if last.GetSasl().GetUsername() != "john" || last.GetSasl().GetMethod() != "LOGIN" || last.GetTls().GetVersion() != "TLSv1.3" {
		t.Errorf("policy facts after AUTH = %v", last)
	}
}

func TestAuthDownFailsClosed(t *testing.T) {
	h := newHarness(t, permit, func(l *Listener) { l.SASL = true })
	h.auth.fail = true
	c := h.dial()
	c.reply()
	if got := c.do("EHLO client.example.net", "250-"); strings.Contains(got, "AUTH") {
		t.Errorf("AUTH advertised while auth is down: %q", got)
	}
	c.do("AUTH PLAIN AGpvaG4Ac2VjcmV0", "454 4.7.0 Temporary authentication failure")
}

func TestErrorLimit(t *testing.T) {
	h := newHarness(t, permit, func(l *Listener) { l.HardErrorLimit = 3 })
	c := h.dial()
	c.reply()
	c.do("FOO", "500")
	c.do("FOO", "500")
	c.send("FOO\r\n")
	if got := c.reply(); !strings.HasPrefix(got, "500") {
		t.Errorf("third error: %q", got)
	}
	if got := c.reply(); !strings.HasPrefix(got, "421 4.7.0 mail.example.org Error: too many errors") {
		t.Errorf("after the limit: %q", got)
	}
}

// FuzzSession feeds arbitrary client bytes to a whole session: the engine
// must neither panic nor hang, and must not deliver without a 250.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@example.org>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n",
		"HELO x\nMAIL FROM:a@b\nRCPT TO:c@example.org\nDATA\n.\n",
		"AUTH PLAIN\r\n*\r\nSTARTTLS\r\n\x00\r\n",
		"EHLO x\r\nMAIL FROM:<@a,@b:c@d> SIZE=1 BODY=8BITMIME AUTH=<>\r\nRCPT TO:<\"x@y\"@example.org>\r\nDATA\r\n\r.\r\n.\r\n",
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@example.org>\r\nBDAT 4\r\nhi\r\nBDAT 3 LAST\r\n.\r\nDATA\r\nQUIT\r\n",
		"EHLO x\r\nBDAT 2\r\n\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@example.org>\r\nBDAT 70000 LAST\r\nx\r\n",
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@example.org>\r\nBDAT 1\r\n\rBDAT 0 LAST\r\nBDAT x\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		l := &Listener{Name: "fuzz", Hostname: "h", Banner: "h", MaxMessageSize: 1 << 16, MaxRecipients: 10, LineLimit: 512, Timeout: time.Second, HardErrorLimit: 50, NextHop: &sink{}}
		srv := &Server{Config: Config{Policy: &testPolicy{decide: relayDenied}, Auth: &testAuth{}, PolicyTimeout: time.Second, AuthTimeout: 100 * time.Millisecond}}
		server, clientEnd := net.Pipe()
		sessionOf(t, srv, l, server, clientEnd, in)
	})
}

// sessionOf serves one session of srv on l over server, while the
// client at clientEnd sends in, hangs up and ignores every reply; the
// session must end once the client is gone.
func sessionOf(t *testing.T, srv *Server, l *Listener, server, clientEnd net.Conn, in string) {
	t.Helper()
	done := make(chan struct{})
	go func() { srv.Serve(context.Background(), server, l); close(done) }()
	go func() { _, _ = io.Copy(io.Discard, clientEnd) }()
	_, _ = io.WriteString(clientEnd, in)
	clientEnd.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("session did not end after the client closed")
	}
}
