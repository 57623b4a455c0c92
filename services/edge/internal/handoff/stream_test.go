package handoff

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// lines is a reader of CRLF lines, some starting with a dot, until at
// least left bytes; made as it is read, so the test holds no whole
// message.
type lines struct {
	left int64
	i    int
	cur  []byte
}

func (l *lines) Read(p []byte) (int, error) {
	if len(l.cur) == 0 {
		if l.left <= 0 {
			return 0, io.EOF
		}
		l.i++
		l.cur = []byte(strings.Repeat(string(rune('a'+l.i%26)), l.i%97) + "\r\n")
		if l.i%13 == 0 {
			l.cur = append([]byte("."), l.cur...)
		}
	}
	n := copy(p, l.cur)
	l.cur = l.cur[n:]
	l.left -= int64(n)
	return n, nil
}

func sumOf(r io.Reader) ([32]byte, int64) {
	h := sha256.New()
	n, _ := io.Copy(h, r)
	return [32]byte(h.Sum(nil)), n
}

func TestUnixLines(t *testing.T) {
	for _, in := range []string{"a\r\nb\r\n", "a\r", "\r\r\n\n", "a\rb\r\n", "\r\n\r\n", ""} {
		want := strings.ReplaceAll(in, "\r\n", "\n")
		// One byte at a time: every CR ends a Write.
		var b bytes.Buffer
		u := &unixLines{w: &b}
		if _, err := io.Copy(u, iotest.OneByteReader(strings.NewReader(in))); err != nil {
			t.Fatal(err)
		}
		if err := u.Close(); err != nil {
			t.Fatal(err)
		}
		if b.String() != want || u.n != int64(len(want)) {
			t.Errorf("unixLines(%q) = %q (n=%d), want %q", in, b.String(), u.n, want)
		}
	}
}

// TestMaildirStreams: a 5 MiB message read from a stream lands in new/
// byte for byte (CRLF as LF), named with its size; tmp/ is empty.
func TestMaildirStreams(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	m := &Maildir{Dir: dir, Hostname: "mail.example.org"}
	const size = 5 << 20
	tx, _ := m.Begin(context.Background(), Envelope{Sender: "a@example.net"})
	_ = tx.Rcpt(context.Background(), "john@example.org", RecipientDSN{})
	if err := tx.Data(context.Background(), &lines{left: size}); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "new"))
	if len(entries) != 1 {
		t.Fatalf("new/ holds %d files", len(entries))
	}
	f, err := os.Open(filepath.Join(dir, "new", entries[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := "Return-Path: <a@example.net>\nX-Original-To: <john@example.org>\n"
	got, n := sumOf(f)
	pr, pw := io.Pipe()
	go func() {
		_, _ = io.WriteString(pw, head)
		_, _ = io.Copy(&unixLines{w: pw}, &lines{left: size})
		pw.Close()
	}()
	want, wn := sumOf(pr)
	if got != want || n != wn {
		t.Errorf("file has %d bytes, sha256 %x; want %d, %x", n, got, wn, want)
	}
	if !strings.HasSuffix(entries[0].Name(), ",S="+strconv.FormatInt(wn, 10)) {
		t.Errorf("file name %q does not end in ,S=%d", entries[0].Name(), wn)
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp/ holds %d files", len(tmp))
	}
}

// hashBackend is a go-smtp next hop that hashes the message.
type hashBackend struct{ sums chan [32]byte }

func (b *hashBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return &hashSession{b: b}, nil }

type hashSession struct{ b *hashBackend }

func (s *hashSession) Reset()                                         {}
func (s *hashSession) Logout() error                                  { return nil }
func (s *hashSession) Mail(string, *smtp.MailOptions) error           { return nil }
func (s *hashSession) Rcpt(string, *smtp.RcptOptions) error           { return nil }
func (s *hashSession) Data(r io.Reader) error                         { sum, _ := sumOf(r); s.b.sums <- sum; return nil }
func (s *hashSession) LMTPData(io.Reader, smtp.StatusCollector) error { return nil }

// TestRelayStreams: 5 MiB through the SMTP relay arrive unchanged; a
// next hop that goes away before the content gives a 4xx.
func TestRelayStreams(t *testing.T) {
	be := &hashBackend{sums: make(chan [32]byte, 1)}
	srv := smtp.NewServer(be)
	srv.Domain = "next.example"
	srv.MaxMessageBytes = 64 << 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	target, _ := Parse("smtp://"+ln.Addr().String(), nil, Options{Hostname: "mail.example.org", Timeout: 10 * time.Second})
	ctx := context.Background()
	tx := beginToJohn(ctx, t, target)
	const size = 5 << 20
	if err := tx.Data(ctx, &lines{left: size}); err != nil {
		t.Fatal(err)
	}
	want, _ := sumOf(&lines{left: size})
	if got := <-be.sums; got != want {
		t.Errorf("next hop got sha256 %x, want %x", got, want)
	}

	// The next hop goes away between RCPT and the content.
	tx = beginToJohn(ctx, t, target)
	srv.Close()
	r := reply.FromHandoff(tx.Data(ctx, &lines{left: size}))
	if !r.Temporary() || !strings.HasPrefix(r.Enhanced, "4.4.") {
		t.Errorf("next hop gone at DATA: %q, want 451 4.4.x", r.Text())
	}
}
