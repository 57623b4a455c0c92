package e2e

import (
	"bufio"
	"bytes"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// recordingSink is the next hop several edges hand off to: a go-smtp
// server on loopback that keeps every message it answered 250 to, by the
// e2e token in its Subject.
type recordingSink struct {
	addr string
	mu   sync.Mutex
	msgs map[string][]string // token → the copies received
}

// startSink serves a recording sink until the test ends.
func startSink(t *testing.T) *recordingSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &recordingSink{addr: ln.Addr().String(), msgs: map[string][]string{}}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sinkSession{k}, nil
	}))
	srv.Domain = "sink.example.net"
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	srv.MaxMessageBytes = 10 << 20
	// A killed edge leaves its sessions reset: expected, not news.
	srv.ErrorLog = log.New(io.Discard, "", 0)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return k
}

// counts returns how many copies of each token the sink holds.
func (k *recordingSink) counts() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := make(map[string]int, len(k.msgs))
	for tok, m := range k.msgs {
		c[tok] = len(m)
	}
	return c
}

// message returns the first copy of the message with token, or "".
func (k *recordingSink) message(token string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if m := k.msgs[token]; len(m) > 0 {
		return m[0]
	}
	return ""
}

type sinkSession struct{ k *recordingSink }

func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }
func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }

// Data keeps the message under its token; one without a token is kept
// under "".
func (x *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	token := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Subject: "); ok {
			token = strings.TrimSpace(v)
			break
		}
	}
	x.k.mu.Lock()
	x.k.msgs[token] = append(x.k.msgs[token], string(b))
	x.k.mu.Unlock()
	return nil
}
