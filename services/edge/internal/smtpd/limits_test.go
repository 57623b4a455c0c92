package smtpd

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/services/edge/internal/listener"
)

func TestErrorLimits(t *testing.T) {
	t.Run("hard limit", func(t *testing.T) {
		h := newHarness(t, permit, func(l *Listener) { l.HardErrorLimit = 4; l.SoftErrorLimit = 2 })
		c := h.dial()
		c.reply()
		for range 4 {
			c.do("MAIL", "501 5.5.4")
		}
		if got := c.reply(); got != "421 4.7.0 mail.example.org Error: too many errors" {
			t.Errorf("after the limit: %q", got)
		}
	})
	t.Run("soft limit delays every reply", func(t *testing.T) {
		const sleep = 150 * time.Millisecond
		h := newHarness(t, permit, func(l *Listener) { l.SoftErrorLimit = 2; l.ErrorSleep = sleep })
		c := h.dial()
		c.reply()
		for _, tc := range []struct {
			cmd, want string
			slow      bool
		}{
			{"MAIL", "501", false},
			{"MAIL", "501", false}, // the second error: now at the limit
			{"NOOP", "250", true},  // so even a good reply waits
			{"EHLO client.example.net", "250", true},
		} {
			start := time.Now()
			c.do(tc.cmd, tc.want)
			if took := time.Since(start); (took >= sleep) != tc.slow {
				t.Errorf("%s took %v, want slow=%v", tc.cmd, took, tc.slow)
			}
		}
	})
	t.Run("junk commands", func(t *testing.T) {
		// Postfix counts an error for each limited command once more
		// than the limit were already seen: with 2, the fourth.
		h := newHarness(t, permit, func(l *Listener) { l.HardErrorLimit = 2; l.JunkCommandLimit = 2 })
		c := h.dial()
		c.reply()
		c.do("NOOP", "250")
		c.do("RSET", "250")
		c.do("EHLO client.example.net", "250")
		c.do("NOOP", "250") // error 1
		c.do("MAIL FROM:<a@example.net>", "250")
		c.do("VRFY x", "502") // error 2 (the refusal), and 3 (junk)
		if got := c.reply(); !strings.HasPrefix(got, "421 4.7.0 mail.example.org Error: too many errors") {
			t.Errorf("after the limit: %q", got)
		}
	})
}

func TestPipelining(t *testing.T) {
	stagesSeen := func(h *harness) []bool {
		var out []bool
		for _, r := range h.requests() {
			out = append(out, r.GetSession().GetUnauthPipelining())
		}
		return out
	}
	t.Run("after EHLO, a group is fine", func(t *testing.T) {
		h := newHarness(t, permit, func(l *Listener) { l.ForbidUnauthPipelining = true })
		c := h.ehlo("250")
		c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
		for _, want := range []string{"250 2.1.0", "250 2.1.5", "354"} {
			if got := c.reply(); !strings.HasPrefix(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		}
		c.send("Subject: grouped\r\n\r\nbody\r\n.\r\n")
		if got := c.reply(); !queuedRE.MatchString(got) {
			t.Errorf("end of data: %q", got)
		}
		for i, p := range stagesSeen(h) {
			if p {
				t.Errorf("request %d reported unauthorized pipelining", i)
			}
		}
	})
	for _, tc := range []struct{ name, before, group string }{
		{"after HELO", "HELO client.example.net", "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\n"},
		{"EHLO with more", "", "EHLO client.example.net\r\nMAIL FROM:<a@example.net>\r\n"},
		{"ahead of the 354", "EHLO client.example.net|MAIL FROM:<a@example.net>|RCPT TO:<b@example.org>", "DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n"},
	} {
		// sendAhead greets, says the commands before (in lock-step)
		// and then sends the group in one write.
		sendAhead := func(h *harness) *client {
			c := h.dial()
			c.reply()
			for _, cmd := range strings.Split(tc.before, "|") {
				if cmd != "" {
					c.do(cmd, "250")
				}
			}
			c.send(tc.group)
			return c
		}
		t.Run(tc.name+", reported", func(t *testing.T) {
			h := newHarness(t, permit, nil)
			c := sendAhead(h)
			c.reply()
			c.reply()
			c.do("QUIT", "221")
			if seen := stagesSeen(h); len(seen) == 0 || !seen[len(seen)-1] {
				t.Errorf("policy was not told: %v", seen)
			}
		})
		t.Run(tc.name+", forbidden", func(t *testing.T) {
			h := newHarness(t, permit, func(l *Listener) { l.ForbidUnauthPipelining = true })
			c := sendAhead(h)
			if got := c.reply(); got != "554 5.5.0 Error: SMTP protocol synchronization" {
				t.Errorf("got %q", got)
			}
			closed(t, c)
		})
	}
	t.Run("pregreet", func(t *testing.T) {
		for _, forbid := range []bool{false, true} {
			h := newHarness(t, permit, func(l *Listener) { l.GreetPause = 200 * time.Millisecond; l.ForbidUnauthPipelining = forbid })
			c := h.dial()
			c.send("EHLO client.example.net\r\n")
			if forbid {
				if got := c.reply(); got != "554 5.5.0 Error: SMTP protocol synchronization" {
					t.Errorf("got %q", got)
				}
				continue
			}
			c.reply()
			c.reply()
			if seen := stagesSeen(h); len(seen) != 2 || !seen[1] {
				t.Errorf("policy was not told: %v", seen)
			}
			// A patient client is not reported.
			h.ehlo("250")
			if seen := stagesSeen(h); seen[len(seen)-1] {
				t.Errorf("patient client reported: %v", seen)
			}
		}
	})
}

func TestConnLimits(t *testing.T) {
	now := time.Unix(1e9, 0)
	c := &ConnLimits{Max: 4, now: func() time.Time { return now }}
	l := &Listener{Name: "smtp", Hostname: "mx.example", ConnectionCountLimit: 2, ConnectionRateLimit: 3, RateTimeUnit: time.Minute}
	admit := func(addr string, exempt bool) (string, func()) {
		a := c.admit(context.Background(), l, addr, exempt)
		if a.ok {
			return "ok", a.release
		}
		return a.r.Text(), a.release
	}
	got, r1 := admit("192.0.2.1", false)
	got2, r2 := admit("192.0.2.1", false)
	got3, r3 := admit("192.0.2.1", false)
	if got != "ok" || got2 != "ok" || got3 != "421 4.7.0 mx.example Error: too many connections from 192.0.2.1" {
		t.Errorf("count limit: %q %q %q", got, got2, got3)
	}
	r3()
	r3() // twice is harmless
	r2()
	// Three connections in this minute: the fourth is over the rate.
	if got, r := admit("192.0.2.1", false); got != "421 4.7.0 mx.example Error: too many connections from 192.0.2.1" {
		t.Errorf("rate limit: %q", got)
	} else {
		r()
	}
	now = now.Add(time.Minute)
	got, r4 := admit("192.0.2.1", false)
	if got != "ok" {
		t.Errorf("next minute: %q", got)
	}
	// Exempt clients count only towards the total.
	var exempt []func()
	for range 2 {
		got, r := admit("192.0.2.9", true)
		if got != "ok" {
			t.Errorf("exempt: %q", got)
		}
		exempt = append(exempt, r)
	}
	if got, r := admit("192.0.2.10", true); got != "421 4.3.2 All server ports are busy" {
		t.Errorf("total cap: %q", got)
	} else {
		r()
	}
	for _, r := range append(exempt, r1, r4) {
		r()
	}
	if c.total != 0 {
		t.Errorf("total %d after every release", c.total)
	}
}

// TestConnLimitsSession: the limit reply is the whole session, and
// mynetworks (smtpd_client_event_limit_exceptions) is exempt.
func TestConnLimitsSession(t *testing.T) {
	for _, exempt := range []bool{false, true} {
		h := newHarness(t, permit, func(l *Listener) {
			l.ConnectionCountLimit = 1
			if exempt {
				l.EventLimitExceptions, _ = listener.ParseNetworks([]string{"127.0.0.0/8"})
			}
		})
		srv := &Server{Config: Config{Policy: h.policy, Auth: h.auth, Limits: &ConnLimits{}}}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		h.addr = ln.Addr().String()
		stop := serveAll(t, srv, ln, h.l)
		first := h.dial()
		first.reply()
		second := h.dial()
		want := "421 4.7.0 mail.example.org Error: too many connections from 127.0.0.1"
		if exempt {
			want = "220 "
		}
		if got := second.reply(); !strings.HasPrefix(got, want) {
			t.Errorf("exempt=%v: second connection got %q", exempt, got)
		}
		if exempt {
			second.do("QUIT", "221")
		}
		first.do("QUIT", "221")
		stop()
	}
}
