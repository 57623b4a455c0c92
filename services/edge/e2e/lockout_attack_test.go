package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
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
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port["submission"]))
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	r := &rawSession{conn: conn, tp: textproto.NewConn(conn)}
	if _, _, err := r.tp.ReadResponse(220); err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if _, err := r.expect(250, "EHLO client.example.net"); err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := r.expect(220, "STARTTLS"); err != nil {
		conn.Close()
		return nil, err
	}
	tc := tls.Client(conn, tlsConfig())
	if err := tc.Handshake(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS: %w", err)
	}
	r.conn, r.tp = tc, textproto.NewConn(tc)
	if _, err := r.expect(250, "EHLO client.example.net"); err != nil {
		tc.Close()
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
