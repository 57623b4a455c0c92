package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/listener"
)

// wire makes decide fail as the gRPC client fails on a request it cannot
// marshal (a string that is not UTF-8), and counts those failures: the
// edge must never produce one.
type wire struct {
	mu     sync.Mutex
	failed []string
}

func (w *wire) check(m proto.Message) error {
	if _, err := proto.Marshal(m); err != nil {
		w.mu.Lock()
		w.failed = append(w.failed, fmt.Sprintf("%v: %v", m, err))
		w.mu.Unlock()
		return fmt.Errorf("grpc: error while marshaling: %w", err)
	}
	return nil
}

func (w *wire) failures() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.failed...)
}

func (w *wire) policy(decide func(*policyv1.CheckRequest) (*policyv1.Verdict, error)) func(*policyv1.CheckRequest) (*policyv1.Verdict, error) {
	return func(req *policyv1.CheckRequest) (*policyv1.Verdict, error) {
		if err := w.check(req); err != nil {
			return nil, err
		}
		return decide(req)
	}
}

// wireAuth is testAuth behind the same check.
type wireAuth struct {
	testAuth
	w *wire
}

func (a *wireAuth) Mechanisms(ctx context.Context, req *authv1.MechanismsRequest) (*authv1.MechanismsResponse, error) {
	if err := a.w.check(req); err != nil {
		return nil, err
	}
	return a.testAuth.Mechanisms(ctx, req)
}

func (a *wireAuth) Authenticate(ctx context.Context) (AuthStream, error) {
	s, err := a.testAuth.Authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return &wireStream{AuthStream: s, w: a.w}, nil
}

type wireStream struct {
	AuthStream
	w *wire
}

func (s *wireStream) Send(req *authv1.AuthenticateRequest) error {
	if err := s.w.check(req); err != nil {
		return err
	}
	return s.AuthStream.Send(req)
}

// TestBadUTF8 is issue 16's attack: bytes that are not UTF-8 in EHLO or
// an address made every policy call fail to marshal, and the client got
// "451 4.3.0" (try again, forever) with an ERROR line each time. They are
// refused at the edge now with Postfix's reply, and policy is never asked.
func TestBadUTF8(t *testing.T) {
	w := &wire{}
	h := newHarness(t, w.policy(relayDenied), func(l *Listener) { l.HardErrorLimit = 100; l.SASL = true; l.ETRN = true })
	c := h.dial()
	c.reply()
	for _, cmd := range []string{
		"EHLO \xff.example.net", "HELO x\xc3",
	} {
		c.do(cmd, "500 5.5.2 Error: bad UTF-8 syntax")
	}
	c.do("EHLO client.example.net", "250-")
	for _, cmd := range []string{
		"MAIL FROM:<j\xf6hn@example.net>", "MAIL FROM:<john@exa\xe9mple.net> SMTPUTF8", "MAIL FROM:<a@b> AUTH=\xff",
		"ETRN \xffexample.net", "VRFY j\xf6hn", "AUTH PL\xc0IN", "NOOP \xfe", "XCLIENT NAME=\xff",
	} {
		c.do(cmd, "500 5.5.2 Error: bad UTF-8 syntax")
	}
	c.do("MAIL FROM:<john@example.net>", "250 2.1.0 Ok")
	for _, cmd := range []string{"RCPT TO:<j\xf6hn@example.org>", "RCPT TO:<john@example.org> NOTIFY=\xff", "RCPT TO:<\xed\xa0\x80@example.org> "} {
		c.do(cmd, "500 5.5.2 Error: bad UTF-8 syntax")
	}
	c.do("RCPT TO:<john@example.org>", "250 2.1.5 Ok")
	c.do("QUIT", "221")
	if f := w.failures(); len(f) > 0 {
		t.Errorf("requests the API cannot carry: %q", f)
	}
	for _, r := range h.logs.records(t) {
		if r["level"] == "ERROR" {
			t.Errorf("error logged: %v", r)
		}
	}
}

// TestBadUTF8WithoutSMTPUTF8: with smtputf8_enable = no, Postfix takes
// 8-bit bytes as they come; policy cannot, so each command gets its
// syntax reply. SMTPUTF8 is neither offered nor accepted.
func TestBadUTF8WithoutSMTPUTF8(t *testing.T) {
	w := &wire{}
	h := newHarness(t, w.policy(relayDenied), func(l *Listener) { l.DisableSMTPUTF8 = true })
	c := h.dial()
	c.reply()
	c.do("EHLO \xff.example.net", "501 Syntax: EHLO hostname")
	c.do("HELO \xff.example.net", "501 Syntax: HELO hostname")
	if got := c.do("EHLO client.example.net", "250-"); strings.Contains(got, "SMTPUTF8") {
		t.Errorf("SMTPUTF8 advertised with smtputf8_enable = no: %q", got)
	}
	c.do("MAIL FROM:<j\xf6hn@example.net>", "501 5.1.7 Bad sender address syntax")
	c.do("MAIL FROM:<john@example.net> SMTPUTF8", "555 5.5.4 Unsupported option: SMTPUTF8")
	c.do("MAIL FROM:<john@example.net>", "250 2.1.0 Ok")
	c.do("RCPT TO:<j\xf6hn@example.org>", "501 5.1.3 Bad recipient address syntax")
	c.do("NOOP \xff", "500 5.5.2 Error: bad syntax")
	// A UTF-8 domain needs SMTPUTF8, which this listener does not have.
	c.do("RCPT TO:<john@пример.испытание>", "501 5.1.3 Bad recipient address syntax")
	c.do("RCPT TO:<john@example.org>", "250 2.1.5 Ok")
	if f := w.failures(); len(f) > 0 {
		t.Errorf("requests the API cannot carry: %q", f)
	}
}

// TestSMTPUTF8 follows RFC 6531 as Postfix with smtputf8_enable = yes and
// strict_smtputf8 = yes: SMTPUTF8 is advertised, a non-ASCII address
// needs it, and a UTF-8 domain needs it even without strict_smtputf8.
func TestSMTPUTF8(t *testing.T) {
	h := newHarness(t, permit, func(l *Listener) { l.StrictSMTPUTF8 = true; l.MaxRecipients = 10 })
	c := h.dial()
	c.reply()
	if got := c.do("EHLO client.example.net", "250-"); !strings.Contains(got, "|250-DSN|250-SMTPUTF8|250 CHUNKING") {
		t.Errorf("EHLO reply %q does not offer SMTPUTF8 where Postfix does", got)
	}
	c.do("MAIL FROM:<jöhn@example.net>", "553 5.6.7 Must declare SMTPUTF8 to send unicode address")
	c.do("MAIL FROM:<john@пример.испытание>", "501 5.1.7 Bad sender address syntax")
	c.do("MAIL FROM:<john@example.net>", "250 2.1.0 Ok")
	c.do("RCPT TO:<пользователь@example.org>", "553 5.6.7 Must declare SMTPUTF8 to send unicode address")
	c.do("RCPT TO:<user@пример.испытание>", "501 5.1.3 Bad recipient address syntax")
	c.do("RSET", "250")
	c.do("MAIL FROM:<jöhn@example.net> SMTPUTF8", "250 2.1.0 Ok")
	c.do("RCPT TO:<пользователь@example.org>", "250 2.1.5 Ok")
	c.do("RCPT TO:<user@пример.испытание.>", "250 2.1.5 Ok")
	c.do("RCPT TO:<user@xn--e1afmkfd.xn--80akhbyknj4f>", "250 2.1.5 Ok")
	c.do("RCPT TO:<user@пример..испытание>", "501 5.1.3 Bad recipient address syntax")
	c.do("RCPT TO:<user@xn--ab-.example>", "501 5.1.3 Bad recipient address syntax")
	c.do("QUIT", "221")
	var rcpts []string
	for _, r := range h.requests() {
		if r.GetStage() == policyv1.Stage_STAGE_RCPT {
			rcpts = append(rcpts, r.GetTransaction().GetRecipient())
		}
	}
	want := []string{"пользователь@example.org", "user@пример.испытание", "user@xn--e1afmkfd.xn--80akhbyknj4f"}
	if strings.Join(rcpts, " ") != strings.Join(want, " ") {
		t.Errorf("policy was asked about %q, want %q", rcpts, want)
	}
	// Without strict_smtputf8 a UTF-8 local part passes, as in Postfix.
	h.l.StrictSMTPUTF8 = false
	c = h.ehlo("250-")
	c.do("MAIL FROM:<jöhn@example.net>", "250 2.1.0 Ok")
	c.do("RCPT TO:<пользователь@example.org>", "250 2.1.5 Ok")
	c.do("RCPT TO:<user@пример.испытание>", "501 5.1.3 Bad recipient address syntax")
}

// TestEnvelopeDomain: address literals, host names and the trailing dot
// as Postfix's trivial-rewrite and smtpd_check_addr judge them.
func TestEnvelopeDomain(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" means refused
		utf8     bool
	}{
		{in: "john@example.org", want: "john@example.org"},
		{in: "john@example.org.", want: "john@example.org"},
		{in: "john@EXAMPLE.org.", want: "john@EXAMPLE.org"},
		{in: `"a@b"@example.org.`, want: `"a@b"@example.org`},
		{in: "postmaster", want: "postmaster"},
		{in: "john@example.org..", want: ""},
		{in: "john@.", want: ""},
		{in: "john@.example.org", want: ""},
		{in: "john@-example.org", want: ""},
		{in: "john@example-.org", want: ""},
		{in: "john@ex-ample.org", want: "john@ex-ample.org"},
		{in: "john@under_score.example", want: "john@under_score.example"},
		{in: "john@192.0.2.1", want: ""},
		{in: "john@1.2", want: ""},
		{in: "john@1a", want: "john@1a"},
		{in: "john@" + strings.Repeat("a", 63) + ".org", want: "john@" + strings.Repeat("a", 63) + ".org"},
		{in: "john@" + strings.Repeat("a", 64) + ".org", want: ""},
		{in: "john@" + strings.Repeat("a.", 127) + "org", want: ""},
		{in: "john@exa!mple.org", want: ""},
		// Address literals (valid_mailhost_literal).
		{in: "a@[192.0.2.1]", want: "a@[192.0.2.1]"},
		{in: "a@[300.1.1.1]", want: ""},
		{in: "a@[1.2.3]", want: ""},
		{in: "a@[1.2.3.4.5]", want: ""},
		{in: "a@[1..3.4]", want: ""},
		{in: "a@[1.2.3.4.]", want: ""},
		{in: "a@[0.1.2.3]", want: ""},
		{in: "a@[0.0.0.0]", want: "a@[0.0.0.0]"},
		{in: "a@[001.002.003.004]", want: "a@[001.002.003.004]"},
		{in: "a@[example.org]", want: ""},
		{in: "a@[]", want: ""},
		{in: "a@[IPv6:2001:db8::1]", want: "a@[IPv6:2001:db8::1]"},
		{in: "a@[ipv6:2001:DB8::1]", want: "a@[ipv6:2001:DB8::1]"},
		{in: "a@[IPv6:::1]", want: "a@[IPv6:::1]"},
		{in: "a@[IPv6:::]", want: "a@[IPv6:::]"},
		{in: "a@[IPv6:1:2:3:4:5:6:7:8]", want: "a@[IPv6:1:2:3:4:5:6:7:8]"},
		{in: "a@[IPv6:1:2:3:4:5:6:7:8:9]", want: ""},
		{in: "a@[IPv6:::ffff:192.0.2.1]", want: "a@[IPv6:::ffff:192.0.2.1]"},
		{in: "a@[IPv6:::ffff:300.0.2.1]", want: ""},
		{in: "a@[IPv6:2001:db8:::1]", want: ""},
		{in: "a@[IPv6:2001:db8::1::2]", want: ""},
		{in: "a@[IPv6:12345::1]", want: ""},
		{in: "a@[IPv6::1]", want: ""},
		{in: "a@[IPv6:1:]", want: ""},
		{in: "a@[IPv6:g::1]", want: ""},
		{in: "a@[2001:db8::1]", want: ""},
		{in: "a@[IPv6:1.2.3.4]", want: ""},
		{in: "a@[IPv6:0000:0000:0000:0000:0000:ffff:192.168.100.228]", want: ""}, // 47 bytes: longer than INET6_ADDRSTRLEN
		{in: "a@[192.0.2.1].", want: "a@[192.0.2.1]"},
		// UTF-8 domains: only in an SMTPUTF8 transaction.
		{in: "a@пример.испытание", want: ""},
		{in: "a@пример.испытание", want: "a@пример.испытание", utf8: true},
		{in: "a@xn--e1afmkfd.xn--80akhbyknj4f", want: "a@xn--e1afmkfd.xn--80akhbyknj4f"},
		{in: "a@bücher.example.", want: "a@bücher.example", utf8: true},
		{in: "a@bü_cher.example", want: "a@bü_cher.example", utf8: true},
		{in: "a@-bücher.example", want: "", utf8: true},
		{in: "a@bücher..example", want: "", utf8: true},
		{in: "a@\u200dbücher.example", want: "", utf8: true},
		{in: "jöhn@example.org", want: "jöhn@example.org"},
	} {
		got, ok := envelopeAddress(tc.in, tc.utf8)
		if !ok {
			got = ""
		}
		if got != tc.want {
			t.Errorf("envelopeAddress(%q, smtputf8 %v) = %q, %v; want %q", tc.in, tc.utf8, got, ok, tc.want)
		}
	}
}

// TestTrailingDot: "john@example.org." is "john@example.org" for policy,
// the next hop and the Received header, as Postfix's trivial-rewrite
// makes it before any decision; a bad address literal is refused as
// Postfix refuses it.
func TestTrailingDot(t *testing.T) {
	h := newHarness(t, relayDenied, nil)
	c := h.ehlo("250-")
	c.do("MAIL FROM:<a@[300.1.1.1]>", "501 5.1.7 Bad sender address syntax")
	c.do("MAIL FROM:<lisa@example.net.>", "250 2.1.0 Ok")
	c.do("RCPT TO:<john@[IPv6:2001:db8:::1]>", "501 5.1.3 Bad recipient address syntax")
	c.do("RCPT TO:<john@example.org.>", "250 2.1.5 Ok")
	c.message("trailing dot")
	c.do("QUIT", "221")
	for _, r := range h.requests() {
		tx := r.GetTransaction()
		if strings.HasSuffix(tx.GetSender(), ".") || strings.HasSuffix(tx.GetRecipient(), ".") {
			t.Errorf("policy got %s with a trailing dot: %v", r.GetStage(), tx)
		}
	}
	h.sink.mu.Lock()
	defer h.sink.mu.Unlock()
	if strings.Join(h.sink.forwarded, " ") != "john@example.org" {
		t.Errorf("next hop got recipients %q, want john@example.org", h.sink.forwarded)
	}
	if len(h.sink.msgs) != 1 || !strings.Contains(h.sink.msgs[0], "for <john@example.org>;") {
		t.Errorf("messages handed on: %q", h.sink.msgs)
	}
}

// TestSASLSenderAndSNI: MAIL's AUTH= value and the TLS server name reach
// policy only as UTF-8 (Postfix makes the one printable and ignores an
// SNI that is not a host name).
func TestSASLSenderAndSNI(t *testing.T) {
	if got := saslSender("j\xffohn\x01@example.org"); got != "j?ohn?@example.org" {
		t.Errorf("saslSender = %q", got)
	}
	if got := saslSender("jöhn@example.org"); got != "jöhn@example.org" {
		t.Errorf("saslSender = %q", got)
	}
	w := &wire{}
	h := newHarness(t, w.policy(permit), nil)
	for _, name := range []string{"mail\xff.example.org", "mail.example.org"} {
		c := h.ehlo("250-")
		c.do("STARTTLS", "220")
		tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true, ServerName: name})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS with server name %q: %v", name, err)
		}
		c.conn, c.br = tc, bufio.NewReader(tc)
		c.do("EHLO client.example.net", "250-")
		c.do("MAIL FROM:<a@example.net> AUTH=+FF+01x", "250")
		c.do("RCPT TO:<john@example.org>", "250")
		c.do("QUIT", "221")
	}
	var snis []string
	for _, r := range h.requests() {
		if r.GetStage() == policyv1.Stage_STAGE_RCPT {
			snis = append(snis, r.GetSession().GetTls().GetSni())
		}
	}
	if strings.Join(snis, ",") != ",mail.example.org" {
		t.Errorf("policy got server names %q, want none for the bad one", snis)
	}
	if got := sni("mail\xff.example.org"); got != "" {
		t.Errorf("sni kept %q", got)
	}
	if got := sni("mail.example.org"); got != "mail.example.org" {
		t.Errorf("sni = %q", got)
	}
	if f := w.failures(); len(f) > 0 {
		t.Errorf("requests the API cannot carry: %q", f)
	}
}

// FuzzAPIStrings runs whole sessions on arbitrary client bytes with a
// policy and an auth service that marshal every request as gRPC would:
// whatever a client sends, the edge must not produce a request the APIs
// cannot carry (which would fail every check with 451 4.3.0).
func FuzzAPIStrings(f *testing.F) {
	for _, s := range []string{
		"EHLO \xff\r\nMAIL FROM:<\xe9@b> SMTPUTF8\r\nRCPT TO:<c@\xc3(>\r\nQUIT\r\n",
		"EHLO x\r\nMAIL FROM:<a@b> AUTH=+FF SMTPUTF8\r\nRCPT TO:<c@example.org>\r\nDATA\r\nSubject: \xff\r\n\r\n.\r\nQUIT\r\n",
		"HELO x\r\nETRN \xffx\r\nVRFY \xff\r\nAUTH \xff\r\nAUTH PLAIN /w==\r\nXCLIENT HELO=+FF LOGIN=+FF NAME=+FF\r\nEHLO x\r\n",
		"EHLO x\r\nMAIL FROM:<a@[300.1.1.1]>\r\nMAIL FROM:<a@b.>\r\nRCPT TO:<c@пример.испытание.>\r\nRCPT TO:<c@[IPv6:::1]>\r\n",
		"EHLO x\r\nXCLIENT ADDR=192.0.2.1 HELO=\xed\xa0\x80 LOGIN=a+80b\r\nEHLO y\r\nMAIL FROM:<a@b>\r\n",
	} {
		f.Add(s)
	}
	hosts, err := listener.ParseNetworks([]string{"127.0.0.1"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in string) {
		w := &wire{}
		l := &Listener{Name: "fuzz", Hostname: "h", Banner: "h", MaxMessageSize: 1 << 16, MaxRecipients: 10, LineLimit: 512, Timeout: time.Second,
			HardErrorLimit: 50, NextHop: &sink{}, SASL: true, ETRN: true, XCLIENTHosts: hosts}
		srv := &Server{Config: Config{Policy: &testPolicy{decide: w.policy(relayDenied)}, Auth: &wireAuth{w: w}, PolicyTimeout: time.Second, AuthTimeout: 100 * time.Millisecond}}
		pipe, clientEnd := net.Pipe()
		// From 127.0.0.1, so that XCLIENT is allowed.
		server := remoteConn{Conn: pipe, remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}}
		sessionOf(t, srv, l, server, clientEnd, in)
		if f := w.failures(); len(f) > 0 {
			t.Errorf("requests the API cannot carry: %q", f)
		}
	})
}

// remoteConn is a net.Conn with another remote address.
type remoteConn struct {
	net.Conn
	remote net.Addr
}

func (c remoteConn) RemoteAddr() net.Addr { return c.remote }

// FuzzEnvelopeAddress: any mailbox parsePath accepts gives an answer, and
// an address envelopeAddress accepts is accepted again unchanged (the
// trailing dot goes once), and is UTF-8 when its input was.
func FuzzEnvelopeAddress(f *testing.F) {
	for _, s := range []string{"<john@example.org.>", "<a@[IPv6:::ffff:1.2.3.4]>", "<a@[300.1.1.1]>", "<jöhn@пример.испытание.>",
		`<"a@b"@xn--e1afmkfd.xn--80akhbyknj4f>`, "<a@-b.example>", "<a@1.2.3.4>", "<a@b..>"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, path string, smtputf8 bool) {
		addr, _, err := parsePath(path)
		if err != nil {
			return
		}
		got, ok := envelopeAddress(addr, smtputf8)
		if !ok {
			return
		}
		if again, ok := envelopeAddress(got, smtputf8); !ok || again != got {
			t.Errorf("envelopeAddress(%q) = %q, which gives %q, %v", addr, got, again, ok)
		}
		if utf8.ValidString(addr) && !utf8.ValidString(got) {
			t.Errorf("envelopeAddress(%q) = %q: not UTF-8", addr, got)
		}
	})
}
