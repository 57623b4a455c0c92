package e2e

import (
	"crypto/tls"
	"errors"
	"net/smtp"
	"os/exec"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
)

// The users of deploy/local/passwd and what each can do.
const (
	CarolPassword = "carol-example-password" // stored {CRAM-MD5}
	MaryPassword  = "mary-example-password"  // stored {SCRAM-SHA-256}
)

// scramAuth is SCRAM-SHA-256 and SCRAM-SHA-256-PLUS for net/smtp, the
// binding taken from the client's own TLS connection (RFC 9266).
type scramAuth struct {
	mech, user, pass string
	cb               scram.ChannelBinding
	conv             *scram.ClientConversation
}

func (a *scramAuth) Start(*smtp.ServerInfo) (string, []byte, error) {
	c, err := scram.SHA256.NewClient(a.user, a.pass, "")
	if err != nil {
		return "", nil, err
	}
	if strings.HasSuffix(a.mech, "-PLUS") {
		a.conv = c.NewConversationWithChannelBinding(a.cb)
	} else {
		a.conv = c.NewConversation()
	}
	first, err := a.conv.Step("")
	return a.mech, []byte(first), err
}

func (a *scramAuth) Next(from []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	if a.conv.Done() {
		return []byte{}, nil
	}
	out, err := a.conv.Step(string(from))
	if err != nil {
		return nil, err
	}
	if a.conv.Done() && !a.conv.Valid() {
		return nil, errors.New("the server's signature is not valid")
	}
	return []byte(out), nil
}

// TestSASLMechanisms authenticates with every mechanism smtpgate offers,
// on the submission port after STARTTLS and on the submissions port with
// implicit TLS, with net/smtp (PLAIN, CRAM-MD5, SCRAM-SHA-256 and
// SCRAM-SHA-256-PLUS), swaks (PLAIN, LOGIN, CRAM-MD5) and Python's smtplib
// (CRAM-MD5, PLAIN, LOGIN): the right secret relays, a wrong one gets
// 535 5.7.8, and a user stored in a form a mechanism cannot use fails the
// same way.
func TestSASLMechanisms(t *testing.T) {
	s := newStack(t, "")
	for _, l := range []struct {
		name     string
		implicit bool
	}{{"submission", false}, {"submissions", true}} {
		t.Run(l.name, func(t *testing.T) {
			relay := func(auth func(*smtp.Client) smtp.Auth) error {
				c, err := s.dial(Trusted, l.name, l.implicit)
				if err != nil {
					return err
				}
				defer c.Close()
				if err := c.Hello("client.example.net"); err != nil {
					return err
				}
				if !l.implicit {
					if err := c.StartTLS(&tls.Config{ServerName: "mail.example.org", InsecureSkipVerify: true}); err != nil {
						return err
					}
				}
				if ok, mechs := c.Extension("AUTH"); !ok || mechs != "SCRAM-SHA-256-PLUS SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN" {
					t.Errorf("AUTH %q advertised, want every mechanism of deploy/local", mechs)
				}
				if err := c.Auth(auth(c)); err != nil {
					return err
				}
				if err := c.Mail("someone@example.org"); err != nil {
					return err
				}
				if err := c.Rcpt("lisa@example.com"); err != nil {
					return err
				}
				return c.Reset()
			}
			exporter := func(c *smtp.Client) scram.ChannelBinding {
				st, ok := c.TLSConnectionState()
				if !ok {
					t.Fatal("no TLS state")
				}
				cb, err := scram.NewTLSExporterBinding(&st)
				if err != nil {
					t.Fatal(err)
				}
				return cb
			}
			for _, tc := range []struct {
				name string
				auth func(*smtp.Client) smtp.Auth
				want string // "" for success, else the reply's start
			}{
				{"PLAIN", func(*smtp.Client) smtp.Auth { return plain(JohnPassword) }, ""},
				{"PLAIN wrong password", func(*smtp.Client) smtp.Auth { return plain("wrong-password") }, "535 5.7.8"},
				{"CRAM-MD5", func(*smtp.Client) smtp.Auth { return smtp.CRAMMD5Auth("carol@example.org", CarolPassword) }, ""},
				{"CRAM-MD5 wrong password", func(*smtp.Client) smtp.Auth { return smtp.CRAMMD5Auth("carol@example.org", "wrong") }, "535 5.7.8"},
				{"CRAM-MD5 for a user stored as a one-way hash", func(*smtp.Client) smtp.Auth { return smtp.CRAMMD5Auth("john@example.org", JohnPassword) }, "535 5.7.8"},
				{"SCRAM-SHA-256", func(*smtp.Client) smtp.Auth {
					return &scramAuth{mech: "SCRAM-SHA-256", user: "mary@example.org", pass: MaryPassword}
				}, ""},
				{"SCRAM-SHA-256 wrong password", func(*smtp.Client) smtp.Auth {
					return &scramAuth{mech: "SCRAM-SHA-256", user: "mary@example.org", pass: "wrong"}
				}, "535 5.7.8"},
				{"SCRAM-SHA-256-PLUS", func(c *smtp.Client) smtp.Auth {
					return &scramAuth{mech: "SCRAM-SHA-256-PLUS", user: "mary@example.org", pass: MaryPassword, cb: exporter(c)}
				}, ""},
				{"SCRAM-SHA-256-PLUS with another channel's binding", func(*smtp.Client) smtp.Auth {
					return &scramAuth{mech: "SCRAM-SHA-256-PLUS", user: "mary@example.org", pass: MaryPassword,
						cb: scram.ChannelBinding{Type: scram.ChannelBindingTLSExporter, Data: make([]byte, 32)}}
				}, "535 5.7.8"},
			} {
				err := relay(tc.auth)
				switch {
				case tc.want == "" && err != nil:
					t.Errorf("%s: %v", tc.name, err)
				case tc.want != "" && !strings.HasPrefix(replyOf(err), tc.want):
					t.Errorf("%s: got %q, want %s", tc.name, replyOf(err), tc.want)
				}
			}

			swaks := swaksPath(t)
			tlsFlag := "--tls"
			if l.implicit {
				tlsFlag = "--tlsc"
			}
			for _, tc := range []struct{ mech, user, pass string }{
				{"PLAIN", "john@example.org", JohnPassword},
				{"LOGIN", "john@example.org", JohnPassword},
				{"CRAM-MD5", "carol@example.org", CarolPassword},
			} {
				out, err := exec.Command(swaks, "--server", "127.0.0.1", "--port", itoa(s.port[l.name]), tlsFlag,
					"--auth", tc.mech, "--auth-user", tc.user, "--auth-password", tc.pass,
					"--from", tc.user, "--to", "lisa@example.com", "--quit-after", "RCPT", "--timeout", "20").CombinedOutput()
				if err != nil || !strings.Contains(string(out), "235 2.7.0 Authentication successful") || !strings.Contains(string(out), "250 2.1.5 Ok") {
					t.Errorf("swaks AUTH %s: %v\n%s", tc.mech, err, out)
				}
				out, err = exec.Command(swaks, "--server", "127.0.0.1", "--port", itoa(s.port[l.name]), tlsFlag,
					"--auth", tc.mech, "--auth-user", tc.user, "--auth-password", "wrong-password",
					"--from", tc.user, "--to", "lisa@example.com", "--quit-after", "RCPT", "--timeout", "20").CombinedOutput()
				if err == nil || !strings.Contains(string(out), "535 5.7.8") {
					t.Errorf("swaks AUTH %s with a wrong password: want 535 5.7.8\n%s", tc.mech, out)
				}
			}

			script := `
import smtplib, ssl, sys
port, implicit = int(sys.argv[1]), sys.argv[2] == "1"
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
for mech, user, password in (("CRAM-MD5", "carol@example.org", sys.argv[3]), ("PLAIN", "john@example.org", sys.argv[4]), ("LOGIN", "john@example.org", sys.argv[4])):
    s = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=20) if implicit else smtplib.SMTP("127.0.0.1", port, timeout=20)
    if not implicit:
        s.starttls(context=ctx)
    s.ehlo()
    s.user, s.password = user, password
    code, _ = s.auth(mech, getattr(s, "auth_" + mech.lower().replace("-", "_")), initial_response_ok=False)
    assert code == 235, (mech, code)
    s.mail(user)
    code, _ = s.rcpt("lisa@example.com")
    assert code == 250, (mech, code)
    s.quit()
    print(mech, "ok")
`
			implicit := "0"
			if l.implicit {
				implicit = "1"
			}
			out, err := exec.Command("python3", "-c", script, itoa(s.port[l.name]), implicit, CarolPassword, JohnPassword).CombinedOutput()
			if err != nil || strings.Count(string(out), " ok") != 3 {
				t.Errorf("smtplib: %v\n%s", err, out)
			}
		})
	}
}
