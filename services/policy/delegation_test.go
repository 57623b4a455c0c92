package policy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/logtest"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/postfixtest"
)

// startDelegation runs a policy Server's delegation listener with mainCF
// plus extra, and returns its address.
func startDelegation(t *testing.T, extra string) (string, *logtest.Buffer) {
	t.Helper()
	f, err := maincf.Parse("main.cf", strings.NewReader(mainCF+extra))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Buffer{}
	srv := newServer(t, serverSetup{Main: maincf.New(Catalogue(), f, t.TempDir()), Config: Config{Logger: slog.New(slog.NewTextHandler(logs, nil))}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeDelegation(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeDelegation: %v", err)
		}
	})
	return ln.Addr().String(), logs
}

const senderBlock = `smtpd_sender_restrictions = check_sender_access inline:{ {spammer.example = REJECT go away} }
`

func TestDelegationProtocol(t *testing.T) {
	addr, logs := startDelegation(t, senderBlock)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	ask := func(attrs string) string {
		t.Helper()
		fmt.Fprintf(c, "request=smtpd_access_policy\nprotocol_name=ESMTP\nhelo_name=client.example.net\n%s\n", attrs)
		var out []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading the reply: %v", err)
			}
			if line == "\n" {
				return strings.Join(out, "|")
			}
			out = append(out, strings.TrimSuffix(line, "\n"))
		}
	}
	// Several requests on one connection, as Postfix reuses it.
	for _, tc := range []struct{ attrs, want string }{
		{"protocol_state=RCPT\nclient_address=203.0.113.5\nsender=a@example.net\nrecipient=lisa@example.com\n", "action=554 5.7.1 Relay access denied"},
		{"protocol_state=RCPT\nclient_address=127.0.0.1\nsender=a@example.net\nrecipient=lisa@example.com\n", "action=DUNNO"},
		{"protocol_state=RCPT\nclient_address=203.0.113.5\nsender=a@example.net\nrecipient=john@example.org\n", "action=DUNNO"},
		{"protocol_state=RCPT\nclient_address=203.0.113.5\nsender=x@spammer.example\nrecipient=john@example.org\n", "action=554 5.7.1 go away"},
		{"protocol_state=CONNECT\nclient_address=203.0.113.5\n", "action=DUNNO"},
		{"protocol_state=RCPT\nclient_address=2001:db8::1\nsender=\nrecipient=lisa@example.com\nunknown_attribute=x\n", "action=554 5.7.1 Relay access denied"},
	} {
		if got := ask(tc.attrs); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.attrs, got, tc.want)
		}
	}
	// A malformed request closes the connection without an answer.
	fmt.Fprintf(c, "request=smtpd_access_policy\nprotocol_state=NONSENSE\n\n")
	if _, err := r.ReadString('\n'); err != io.EOF {
		t.Errorf("after a malformed request: %v, want the connection closed", err)
	}
	if !strings.Contains(logs.String(), "policy delegation request not evaluated") {
		t.Errorf("the malformed request was not logged:\n%s", logs)
	}
}

// TestPostfixAsksSmtpgate: a real Postfix with check_policy_service
// pointed at smtpgate-policy applies smtpgate's verdicts.
func TestPostfixAsksSmtpgate(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Fatal("swaks is not installed: run scripts/deps --test")
	}
	addr, _ := startDelegation(t, senderBlock)
	pf := postfixtest.Start(t, postfixtest.Options{Main: "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n" +
		"smtpd_recipient_restrictions = check_policy_service inet:" + addr + "\n"})
	run := func(from string) string {
		out, _ := exec.Command(swaks, "--server", pf.Addr(), "--from", from, "--to", "john@example.org",
			"--quit-after", "RCPT", "--timeout", "20").CombinedOutput()
		return string(out)
	}
	if out := run("x@spammer.example"); !strings.Contains(out, "554 5.7.1 <john@example.org>: Recipient address rejected: go away") {
		t.Errorf("Postfix did not apply smtpgate's refusal:\n%s", out)
	}
	if out := run("friend@example.net"); !strings.Contains(out, "250 2.1.5 Ok") {
		t.Errorf("Postfix refused what smtpgate permits:\n%s", out)
	}
}
