package e2e

import (
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestMailLogNextHop: the real stack hands off to a real SMTP next hop
// (go-smtp) that takes one recipient, refuses one for good and one for
// now; the mail log has Postfix smtp(8)'s delivery lines for the three,
// with the next hop's own replies, and pflogsumm counts one delivered,
// one bounced and one deferred.
func TestMailLogNextHop(t *testing.T) {
	pflogsumm, err := exec.LookPath("pflogsumm")
	if err != nil {
		t.Fatal("pflogsumm is not installed: run scripts/deps --test")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return refusingHop{}, nil }))
	srv.Domain = "hop.example.net"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	file := filepath.Join(t.TempDir(), "mail.log")
	s := newStack(t, "maillog_file = "+file+"\nsmtpgate_next_hop = smtp://"+ln.Addr().String()+"\n")
	c, err := s.dial(Trusted, "mx", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("client.example.net"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("john@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("ok@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("gone@example.com"); codeOf(err) != 550 {
		t.Errorf("RCPT gone@: %q, want the next hop's 550", replyOf(err))
	}
	if err := c.Rcpt("later@example.com"); codeOf(err) != 450 {
		t.Errorf("RCPT later@: %q, want the next hop's 450", replyOf(err))
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(w, "Subject: hop\r\nMessage-ID: <hop1@client.example.net>\r\n\r\nhi\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.Quit()
	relay := `relay=127\.0\.0\.1\[127\.0\.0\.1\]:` + port + `, delay=[0-9.]+, delays=[0-9.]+/0/0/[0-9.]+, `
	var data []byte
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		data, _ = os.ReadFile(file)
		if strings.Contains(string(data), ": removed") || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{
		`postfix/smtp\[\d+\]: [0-9A-F]{12}: to=<gone@example\.com>, ` + relay + `dsn=5\.1\.1, status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 <gone@example\.com>: no such user \(in reply to RCPT TO command\)\)$`,
		`postfix/smtp\[\d+\]: [0-9A-F]{12}: to=<later@example\.com>, ` + relay + `dsn=4\.2\.0, status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 450 4\.2\.0 <later@example\.com>: try again \(in reply to RCPT TO command\)\)$`,
		`postfix/cleanup\[\d+\]: [0-9A-F]{12}: message-id=<hop1@client\.example\.net>$`,
		`postfix/qmgr\[\d+\]: [0-9A-F]{12}: from=<john@example\.org>, size=\d+, nrcpt=1 \(queue active\)$`,
		`postfix/smtp\[\d+\]: [0-9A-F]{12}: to=<ok@example\.com>, ` + relay + `dsn=2\.0\.0, status=sent \(250 2\.0\.0 OK: queued\)$`,
		`postfix/qmgr\[\d+\]: [0-9A-F]{12}: removed$`,
	} {
		if !regexp.MustCompile(`(?m)` + want).Match(data) {
			t.Errorf("no line %s in\n%s", want, data)
		}
	}
	out, err := exec.Command(pflogsumm, file).CombinedOutput()
	if err != nil {
		t.Fatalf("pflogsumm: %v\n%s", err, out)
	}
	for label, want := range map[string]int{"received": 1, "delivered": 1, "bounced": 1, "deferred": 1} {
		m := regexp.MustCompile(`(?m)^\s+(\d+)\s+` + label + `\b`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("pflogsumm: no %q in\n%s", label, out)
		}
		if got, _ := strconv.Atoi(string(m[1])); got != want {
			t.Errorf("pflogsumm %s: %d, want %d\n%s", label, got, want, out)
		}
	}
}

// refusingHop is a next hop that refuses gone@ for good and later@ for
// now, and takes every other recipient.
type refusingHop struct{}

func (refusingHop) Reset()                               {}
func (refusingHop) Logout() error                        { return nil }
func (refusingHop) Mail(string, *smtp.MailOptions) error { return nil }
func (refusingHop) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "gone@"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: no such user"}
	case strings.HasPrefix(to, "later@"):
		return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "<" + to + ">: try again"}
	}
	return nil
}
func (refusingHop) Data(r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }
