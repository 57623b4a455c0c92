package e2e

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net/smtp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// The addresses of the lockout attacks, each in a /24 of its own so that
// no network count is shared: john's home (where he logged in before the
// attack), the attacker, and a new address of john's.
const (
	johnHome   = "127.0.1.5"
	attackerIP = "127.0.2.66"
	johnTravel = "127.0.3.7"
)

// lockoutMain keeps the default maximums (10 per client and per user, 30
// per network) and makes the failure delay short.
const lockoutMain = `smtpgate_auth_failure_delay = 10ms
smtpgate_auth_max_failure_delay = 10ms
`

// submissionOn opens a raw session on the submission listener from the
// source address from, past EHLO, STARTTLS and the second EHLO.
func (s *stack) submissionOn(from string) (*rawSession, error) {
	raw, err := s.dialListener(from, "submission", 60*time.Second)
	if err != nil {
		return nil, err
	}
	r := &rawSession{rawSMTP: raw}
	if _, _, err := r.response(220); err != nil {
		r.conn.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if err := r.ehlo(true); err != nil {
		return nil, err
	}
	return r, nil
}

// authOnce runs one AUTH PLAIN for user from the address from in a
// session of its own and returns the reply.
func (s *stack) authOnce(t *testing.T, from, user, password string) string {
	t.Helper()
	r, err := s.submissionOn(from)
	if err != nil {
		t.Fatalf("session from %s: %v", from, err)
	}
	defer r.close()
	got, err := r.cmd(authPlain(user, password))
	if err != nil {
		t.Fatalf("AUTH from %s: %v", from, err)
	}
	return got
}

// replyClass names a reply to AUTH: "535" (checked, wrong), "454"
// (refused unchecked, locked out), "235", or the reply itself.
func replyClass(got string) string {
	for _, want := range []string{"235 2.7.0 Authentication successful", "535 5.7.8 Error: authentication failed", "454 4.7.0 Temporary authentication failure"} {
		if strings.HasPrefix(got, want) {
			return got[:3]
		}
	}
	return got
}

// TestLockoutAttackSparesKnownSource is issue 16's attack on submission:
// an attacker at one address sends 30 wrong passwords for john (STARTTLS,
// then AUTH PLAIN, five per session). Exactly 10 are checked, then the
// attacker's address is locked out; john, with his password, still gets
// in and relays from the address he logged in from before the attack,
// while from a new address he gets 454 4.7.0 until the attack ends (the
// documented price of the per-user limit, services/auth/README.md).
func TestLockoutAttackSparesKnownSource(t *testing.T) {
	s := newStack(t, lockoutMain)
	if got := s.authOnce(t, johnHome, "john@example.org", JohnPassword); replyClass(got) != "235" {
		t.Fatalf("john from home before the attack: %q, want 235", got)
	}

	replies := map[string]int{}
	for range 6 {
		r, err := s.submissionOn(attackerIP)
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			got, err := r.cmd(authPlain("john@example.org", "guess-"+newToken("pw")))
			if err != nil {
				t.Fatalf("the attacker's AUTH: %v", err)
			}
			replies[replyClass(got)]++
		}
		r.close()
	}
	if replies["535"] != 10 || replies["454"] != 20 || len(replies) != 2 {
		t.Errorf("the attacker's 30 guesses got %v, want 10 × 535 (checked) and 20 × 454 (locked out)", replies)
	}

	if got := s.authOnce(t, johnHome, "john@example.org", JohnPassword); replyClass(got) != "235" {
		t.Errorf("john from home after the attack: %q, want 235", got)
	}
	token := newToken("lockout-home")
	err := s.send(message{from: johnHome, listener: "submission", startTLS: true,
		auth:   smtp.PlainAuth("", "john@example.org", JohnPassword, "mail.example.org"),
		sender: "john@example.org", rcpts: []string{"lisa@example.com"}, token: token})
	if err != nil {
		t.Errorf("john relays from home after the attack: %s", replyOf(err))
	} else if n := s.maildirTokens()[token]; n != 1 {
		t.Errorf("john's message is in the Maildir %d times, want once", n)
	}
	if got := s.authOnce(t, johnTravel, "john@example.org", JohnPassword); replyClass(got) != "454" {
		t.Errorf("john from a new address during the attack: %q, want 454 4.7.0 (documented)", got)
	}
	if got := s.authOnce(t, attackerIP, "john@example.org", JohnPassword); replyClass(got) != "454" {
		t.Errorf("john's password from the attacker's address: %q, want 454 4.7.0", got)
	}
	if got := s.authOnce(t, johnTravel, "carol@example.org", CarolPassword); replyClass(got) != "235" {
		t.Errorf("another user from a new address: %q, want 235", got)
	}
}

// TestLockoutAttackConcurrent: 60 sessions from one address, ready after
// STARTTLS, send a wrong AUTH for john at the same moment. With a maximum
// of 10 per client exactly 10 passwords are checked (535) and 50 refused
// unchecked (454), with the in-process counts and with Redis.
func TestLockoutAttackConcurrent(t *testing.T) {
	rs := redistest.Start(t)
	for name, extra := range map[string]string{
		"in-process": "",
		"redis":      "smtpgate_auth_redis = " + rs.URL() + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			// One client may hold 60 connections at once.
			s := newStack(t, lockoutMain+"smtpd_client_connection_count_limit = 100\n"+extra)
			const from = "127.0.4.9"
			sessions := make([]*rawSession, 60)
			for i := range sessions {
				r, err := s.submissionOn(from)
				if err != nil {
					t.Fatalf("session %d: %v", i+1, err)
				}
				defer r.close()
				sessions[i] = r
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			replies := map[string]int{}
			start := make(chan struct{})
			for i, r := range sessions {
				wg.Go(func() {
					<-start
					got, err := r.cmd(authPlain("john@example.org", fmt.Sprintf("guess-%d", i)))
					if err != nil {
						got = err.Error()
					}
					mu.Lock()
					replies[replyClass(got)]++
					mu.Unlock()
				})
			}
			close(start)
			wg.Wait()
			if replies["535"] != 10 || replies["454"] != 50 || len(replies) != 2 {
				t.Errorf("60 guesses at once got %v, want exactly 10 × 535 (checked) and 50 × 454", replies)
			}
		})
	}
}

// dovecotGuesses connects to the stack's Dovecot-protocol port from the
// source address from and sends 30 AUTH PLAINs with wrong passwords for
// john, each claiming another SMTP client (rip=) in another network. It
// returns the FAIL/OK answers it got before the server closed or all 30
// were answered.
func (s *stack) dovecotGuesses(t *testing.T, from string) []string {
	t.Helper()
	c, err := dialConn(from, fmt.Sprintf("127.0.0.1:%d", s.port["dovecot"]), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b strings.Builder
	b.WriteString("VERSION\t1\t2\nCPID\t4242\n")
	for i := range 30 {
		resp := base64.StdEncoding.EncodeToString([]byte("\x00john@example.org\x00guess-" + strconv.Itoa(i)))
		fmt.Fprintf(&b, "AUTH\t%d\tPLAIN\tservice=smtp\tsecured\tlip=127.0.0.1\trip=10.%d.0.1\tresp=%s\n", i+1, i, resp)
	}
	_, _ = c.Write([]byte(b.String()))
	var answers []string
	br := bufio.NewReader(c)
	for len(answers) < 30 {
		l, err := br.ReadString('\n')
		if err != nil {
			break
		}
		if strings.HasPrefix(l, "FAIL\t") || strings.HasPrefix(l, "OK\t") {
			answers = append(answers, strings.TrimSuffix(l, "\n"))
		}
	}
	return answers
}

// TestDovecotRipRotationAttack: on the Dovecot-protocol port, a caller
// that is not in smtpgate_dovecot_auth_clients and claims a new SMTP
// client address (rip=) for each guess gets no guess at all: it is
// disconnected before the handshake, and the refusal is logged. The
// trusted caller (the Postfix at 127.0.0.1) is believed about rip=, and
// rotating it gets exactly john's 10 checks.
func TestDovecotRipRotationAttack(t *testing.T) {
	s := newStack(t, lockoutMain+"smtpgate_dovecot_auth_clients = 127.0.0.1\n")
	if got := s.dovecotGuesses(t, attackerIP); len(got) != 0 {
		t.Errorf("an untrusted caller rotating rip= got %d of 30 guesses answered (%q …), want none", len(got), got[0])
	}
	if l := s.log("auth"); !strings.Contains(l, "dovecot auth connection refused") || !strings.Contains(l, attackerIP) {
		t.Errorf("the refused caller is not logged with its address:\n%s", l)
	}
	checked, refused := 0, 0
	for _, a := range s.dovecotGuesses(t, Trusted) {
		switch {
		case strings.Contains(a, "reason=authentication failure"):
			checked++
		case strings.Contains(a, "code=temp_fail"):
			refused++
		}
	}
	if checked != 10 || refused != 20 {
		t.Errorf("the trusted caller's 30 guesses with 30 rip= networks: %d checked, %d refused, want 10 and 20 (john's maximum)", checked, refused)
	}
}
