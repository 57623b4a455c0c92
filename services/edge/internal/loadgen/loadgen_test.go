package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"maps"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
	"github.com/smtpgate/smtpgate/pkg/certtest"
)

func TestParseSources(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{in: "", want: nil},
		{in: "127.0.0.1", want: []string{"127.0.0.1"}},
		{in: "127.0.0.10-127.0.0.12", want: []string{"127.0.0.10", "127.0.0.11", "127.0.0.12"}},
		{in: "127.0.0.254-1.0.0.1", err: true},
		{in: "127.0.0.10-12, 127.0.0.1", want: []string{"127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.1"}},
		{in: "127.0.0.255-127.0.1.0", want: []string{"127.0.0.255", "127.0.1.0"}},
		{in: "::1", want: []string{"::1"}},
		{in: "127.0.0.12-10", err: true},
		{in: "127.0.0.1-::1", err: true},
		{in: "127.0.0.1-300", err: true},
		{in: "localhost", err: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSources(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("ParseSources(%q) error %v, want error %v", tc.in, err, tc.err)
			}
			var s []string
			for _, a := range got {
				s = append(s, a.String())
			}
			if diff := cmp.Diff(tc.want, s); diff != "" {
				t.Errorf("ParseSources(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	if got, want := Expand("u{c}-{m}+{r}@example.{c}", 3, 14, 1), "u3-14+1@example.3"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := Expand("john@example.org", 1, 2, 3); got != "john@example.org" {
		t.Errorf("got %q", got)
	}
}

func TestMessage(t *testing.T) {
	for _, size := range []int{0, 100, 200, 201, 202, 203, 1024, 4096, 100000} {
		m := Message("a@example.net", []string{"b@example.com", "c@example.com"}, size)
		head := len(Message("a@example.net", []string{"b@example.com", "c@example.com"}, 0))
		if want := max(size, head); len(m) != want && len(m) != want+1 {
			t.Errorf("size %d: got %d bytes, want %d (or one more)", size, len(m), want)
		}
		if !strings.HasSuffix(string(m), "\r\n") {
			t.Errorf("size %d: does not end with CRLF", size)
		}
		for i, l := range strings.Split(strings.TrimSuffix(string(m), "\r\n"), "\r\n") {
			if len(l) > 78 || strings.HasPrefix(l, ".") || strings.ContainsAny(l, "\r\n") {
				t.Errorf("size %d: line %d %q", size, i, l)
			}
		}
	}
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	got := percentiles(d)
	want := Latency{N: 100, P50: 50 * time.Millisecond, P90: 90 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := percentiles([]time.Duration{7}); got.P50 != 7 || got.P99 != 7 {
		t.Errorf("one sample: %+v", got)
	}
	if got := percentiles(nil); got != (Latency{}) {
		t.Errorf("no samples: %+v", got)
	}
}

func TestParseRSS(t *testing.T) {
	got, err := parseRSS(strings.NewReader("Name:\tsmtpgate-edge\nVmPeak:\t  9999 kB\nVmRSS:\t   12345 kB\nThreads: 7\n"))
	if err != nil || got != 12345*1024 {
		t.Errorf("got %d, %v", got, err)
	}
	if _, err := parseRSS(strings.NewReader("Name: x\n")); err == nil {
		t.Error("no VmRSS: no error")
	}
}

func TestErrKey(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&textproto.Error{Code: 554, Msg: "5.7.1 Relay access denied"}, "RCPT 554"},
		{io.EOF, "RCPT disconnected"},
		{&net.OpError{Op: "read", Err: osTimeout{}}, "RCPT timeout"},
		{errors.New("what"), "RCPT error"},
	} {
		if got := errKey("RCPT", tc.err); got != tc.want {
			t.Errorf("errKey(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

type osTimeout struct{}

func (osTimeout) Error() string   { return "i/o timeout" }
func (osTimeout) Timeout() bool   { return true }
func (osTimeout) Temporary() bool { return true }

// serve runs a go-smtp server with backend be on a loopback port.
func serve(t *testing.T, be smtp.Backend) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(be)
	srv.Domain = "test.invalid"
	done := make(chan struct{})
	go func() { _ = srv.Serve(l); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return l.Addr().String()
}

func sink(t *testing.T) (*Sink, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewSink()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sink: %v", err)
		}
	})
	return s, l.Addr().String()
}

// TestRunCount sends an exact number of messages over many sessions and
// checks that every one is counted once, by the generator and by the sink.
func TestRunCount(t *testing.T) {
	s, addr := sink(t)
	src, _ := ParseSources("127.0.0.1-3")
	res, err := Run(context.Background(), Config{
		Addr: addr, Sources: src, Connections: 16, MessagesPerConn: 3, Size: 2000, Recipients: 2,
		Sender: "s{c}@example.net", Recipient: "r{r}-{m}@example.com", Messages: 301, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 301 || s.Messages() != 301 || res.ErrorsTotal != 0 {
		t.Errorf("generator %d messages, sink %d, errors %v; want 301, 301, none", res.Messages, s.Messages(), res.Errors)
	}
	if res.Msg.N != 301 || res.Msg.P50 <= 0 || res.Msg.P99 < res.Msg.P50 {
		t.Errorf("latency %+v", res.Msg)
	}
	// A session may find the budget spent before its first message.
	if res.Connect.N < 101 || int64(res.Connect.N) > res.Sessions {
		t.Errorf("%d sessions, %d first-message latencies; want at least 101 latencies, at most one a session", res.Sessions, res.Connect.N)
	}
}

// TestRunDuration runs for a duration with a warm-up.
func TestRunDuration(t *testing.T) {
	_, addr := sink(t)
	start := time.Now()
	res, err := Run(context.Background(), Config{
		Addr: addr, Connections: 8, MessagesPerConn: 2, Size: 512, Recipients: 1,
		Sender: "s@example.net", Recipient: "r@example.com", Duration: 700 * time.Millisecond,
		Warmup: 200 * time.Millisecond, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("ran %v for a 700ms run", el)
	}
	if res.Messages == 0 || res.ErrorsTotal != 0 || res.Window != 500*time.Millisecond {
		t.Errorf("messages %d, errors %v, window %v", res.Messages, res.Errors, res.Window)
	}
}

// refuser refuses every other recipient with 554.
type refuser struct{ n atomic.Int64 }

func (r *refuser) NewSession(*smtp.Conn) (smtp.Session, error) { return &refuserSession{r}, nil }

type refuserSession struct{ r *refuser }

func (*refuserSession) Reset()                               {}
func (*refuserSession) Logout() error                        { return nil }
func (*refuserSession) Mail(string, *smtp.MailOptions) error { return nil }
func (x *refuserSession) Rcpt(string, *smtp.RcptOptions) error {
	if x.r.n.Add(1)%2 == 0 {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relay access denied"}
	}
	return nil
}
func (*refuserSession) Data(r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }

func TestRunErrors(t *testing.T) {
	addr := serve(t, &refuser{})
	res, err := Run(context.Background(), Config{
		Addr: addr, Connections: 4, MessagesPerConn: 5, Size: 100, Recipients: 1,
		Sender: "s@example.net", Recipient: "r@example.com", Messages: 100, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages+res.Errors["RCPT 554"] != 100 || res.Errors["RCPT 554"] != 50 || len(res.Errors) != 1 {
		t.Errorf("messages %d, errors %v; want 50 and 50 RCPT 554", res.Messages, res.Errors)
	}
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestRunRefused(t *testing.T) {
	addr := closedAddr(t)
	res, err := Run(context.Background(), Config{
		Addr: addr, Connections: 2, MessagesPerConn: 1, Recipients: 1, Sender: "s@example.net",
		Recipient: "r@example.com", Duration: 200 * time.Millisecond, Timeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 0 || res.Errors["connect "+"connection refused"] == 0 {
		t.Errorf("messages %d, errors %v", res.Messages, res.Errors)
	}
}

// TestRunRefusedCount: a message count ends the run even when no
// connection succeeds (each failed session spends one message); it used
// to retry forever.
func TestRunRefusedCount(t *testing.T) {
	addr := closedAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{
		Addr: addr, Connections: 3, MessagesPerConn: 2, Recipients: 1, Sender: "s@example.net",
		Recipient: "r@example.com", Messages: 10, Timeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("the run did not end by itself")
	}
	if res.Messages != 0 || res.Errors["connect "+"connection refused"] != 10 {
		t.Errorf("messages %d, errors %v; want 10 refused connections", res.Messages, res.Errors)
	}
}

func TestIdle(t *testing.T) {
	s, addr := sink(t)
	_ = s
	res, err := Idle(context.Background(), IdleConfig{
		Addr: addr, Sources: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")},
		Sessions: 50, Parallel: 10, Hold: 10 * time.Millisecond, Timeout: 5 * time.Second, PID: osPID(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Open != 50 || res.Still != 50 || res.RSSBefore <= 0 || res.RSSAfter <= 0 {
		t.Errorf("%+v", res)
	}
}

func TestConfigCheck(t *testing.T) {
	ok := Config{Addr: "x:25", Connections: 1, MessagesPerConn: 1, Recipients: 1, Duration: time.Second, Timeout: time.Second}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"no target":      func(c *Config) { c.Addr = "" },
		"no sessions":    func(c *Config) { c.Connections = 0 },
		"no end":         func(c *Config) { c.Duration = 0 },
		"long warm-up":   func(c *Config) { c.Warmup = time.Second },
		"both TLS modes": func(c *Config) { c.StartTLS, c.ImplicitTLS = true, true },
	} {
		c := ok
		mod(&c)
		if c.Check() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func osPID() int { return os.Getpid() }

// TestDNSBL: the scenario c zone lists what it was given and nothing
// else, asked over real UDP.
func TestDNSBL(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z := NewDNSBL("bl.bench.invalid", []netip.Addr{netip.MustParseAddr("127.0.0.200")}, 300)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- z.Serve(ctx, pc) }()
	ask := func(name string, qtype uint16) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		in, err := dns.Exchange(m, pc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	if in := ask("200.0.0.127.bl.bench.invalid.", dns.TypeA); len(in.Answer) != 1 || in.Answer[0].(*dns.A).A.String() != "127.0.0.2" {
		t.Errorf("listed: %v", in)
	}
	if in := ask("200.0.0.127.BL.bench.invalid.", dns.TypeTXT); len(in.Answer) != 1 {
		t.Errorf("listed TXT: %v", in)
	}
	if in := ask("10.0.0.127.bl.bench.invalid.", dns.TypeA); in.Rcode != dns.RcodeNameError || len(in.Ns) != 1 {
		t.Errorf("not listed: %v", in)
	}
	if z.Queries() != 3 {
		t.Errorf("%d queries counted, want 3", z.Queries())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestRunResume: with Resume, every session after a worker's first
// resumes its TLS session; without it, none does.
func TestRunResume(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(&refuser{})
	srv.Domain = "test.invalid"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{certtest.SelfSignedCert(t, "test.invalid")}}
	done := make(chan struct{})
	go func() { _ = srv.Serve(l); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	for _, resume := range []bool{false, true} {
		res, err := Run(context.Background(), Config{
			Addr: l.Addr().String(), Connections: 2, MessagesPerConn: 1, Size: 200, Recipients: 1, StartTLS: true, Resume: resume,
			Sender: "s{c}@example.net", Recipient: "ok{r}@example.com", Messages: 10, Timeout: 5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		want := int64(0)
		if resume {
			want = res.Sessions - 2
		}
		if res.Sessions < 8 || res.Resumed != want {
			t.Errorf("Resume %v: %d sessions, %d resumed; want at least 8, %d resumed", resume, res.Sessions, res.Resumed, want)
		}
	}
}

// smtpSourcePath is Debian's smtp-source (package postfix, which
// scripts/deps --test installs).
const smtpSourcePath = "/usr/sbin/smtp-source"

// TestRunSmtpSource drives the sink with the real smtp-source: every
// message it counts is one the sink received, and a refusal ends the run
// with the server's reply as the error.
func TestRunSmtpSource(t *testing.T) {
	if _, err := os.Stat(smtpSourcePath); err != nil {
		t.Fatalf("smtp-source is missing (scripts/deps --test installs postfix): %v", err)
	}
	s, addr := sink(t)
	res, err := RunSmtpSource(context.Background(), smtpSourcePath, Config{
		Addr: addr, Connections: 8, MessagesPerConn: 1, Size: 1024, Recipients: 2,
		Sender: "s{c}@example.net", Recipient: "r{r}@example.com", Messages: 300, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 300 || s.Messages() != 300 || res.ErrorsTotal != 0 || res.Sessions != 300 {
		t.Errorf("smtp-source counted %d messages (%d sessions), the sink %d, errors %v; want 300, 300, 300, none", res.Messages, res.Sessions, s.Messages(), res.Errors)
	}

	refusing := serve(t, &refuser{})
	res, err = RunSmtpSource(context.Background(), smtpSourcePath, Config{
		Addr: refusing, Connections: 1, MessagesPerConn: 1, Size: 500, Recipients: 2,
		Sender: "s@example.net", Recipient: "r@example.com", Messages: 5, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ErrorsTotal != 1 || !strings.Contains(strings.Join(slices.Collect(maps.Keys(res.Errors)), " "), "Relay access denied") {
		t.Errorf("a refused recipient: errors %v, want one naming the reply", res.Errors)
	}

	for name, cfg := range map[string]Config{
		"tls":     {StartTLS: true},
		"auth":    {User: "john@example.org"},
		"sources": {Sources: []netip.Addr{netip.MustParseAddr("127.0.0.10")}},
	} {
		cfg.Addr, cfg.Connections, cfg.MessagesPerConn, cfg.Recipients, cfg.Messages = addr, 1, 1, 1, 1
		if _, err := RunSmtpSource(context.Background(), smtpSourcePath, cfg); err == nil {
			t.Errorf("%s: smtp-source was run for what it cannot do", name)
		}
	}
}
