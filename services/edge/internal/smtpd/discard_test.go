package smtpd

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

// requests returns the policy requests made so far.
func (h *harness) requests() []*policyv1.CheckRequest {
	h.policy.mu.Lock()
	defer h.policy.mu.Unlock()
	return slices.Clone(h.policy.reqs)
}

// stages names the stages policy was asked about, in order.
func (h *harness) stages() string {
	var out []string
	for _, r := range h.requests() {
		out = append(out, strings.TrimPrefix(r.GetStage().String(), "STAGE_"))
	}
	return strings.Join(out, " ")
}

// forwarded returns the recipients the next hop was given.
func (k *sink) forwardedRcpts() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.forwarded)
}

// counts returns how many next-hop transactions were opened and aborted.
func (k *sink) counts() (begun, aborted int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.begun, k.aborted
}

// subjects returns the Subject of every message the next hop got.
func (k *sink) subjects() []string {
	var out []string
	for _, m := range k.messages() {
		_, rest, _ := strings.Cut(m, "Subject: ")
		subj, _, _ := strings.Cut(rest, "\r\n")
		out = append(out, subj)
	}
	return out
}

var queuedRE = regexp.MustCompile(`^250 2\.0\.0 Ok: queued as [0-9A-F]{12}$`)

// message sends DATA, content with subject, and checks the replies are
// those of a real delivery.
func (c *client) message(subject string) {
	c.t.Helper()
	c.do("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.send("Subject: " + subject + "\r\n\r\nbody\r\n.\r\n")
	if got := c.reply(); !queuedRE.MatchString(got) {
		c.t.Errorf("end of data of %q: %q, want 250 2.0.0 Ok: queued as <id>", subject, got)
	}
}

// transaction sends MAIL FROM sender and RCPT TO john@example.org,
// expecting both accepted, then a message with subject (message).
func (c *client) transaction(sender, subject string) {
	c.t.Helper()
	c.do("MAIL FROM:<"+sender+">", "250 2.1.0 Ok")
	c.do("RCPT TO:<john@example.org>", "250 2.1.5 Ok")
	c.message(subject)
}

func discardVerdict(warning string) *policyv1.Verdict {
	v := &policyv1.Verdict{Action: policyv1.Action_ACTION_DISCARD, Restriction: "check_recipient_access", List: "smtpd_recipient_restrictions"}
	if warning != "" {
		v.Warnings = []string{warning}
	}
	return v
}

// TestDiscardAtRCPT: a DISCARD for one recipient discards its whole
// transaction. The client sees the replies of a delivery, policy is not
// asked again for that transaction, the next hop's transaction that the
// first recipient opened is aborted, and the next transaction of the
// session is delivered.
func TestDiscardAtRCPT(t *testing.T) {
	h := newHarness(t, func(r *policyv1.CheckRequest) (*policyv1.Verdict, error) {
		if r.GetStage() == policyv1.Stage_STAGE_RCPT && r.GetTransaction().GetRecipient() == "spam@example.org" {
			return discardVerdict("discard: <spam@example.org>: Recipient address triggers DISCARD action"), nil
		}
		return relayDenied(r)
	}, nil)
	c := h.ehlo("250-")
	c.do("MAIL FROM:<a@example.net>", "250 2.1.0 Ok")
	c.do("RCPT TO:<john@example.org>", "250 2.1.5 Ok")
	c.do("RCPT TO:<spam@example.org>", "250 2.1.5 Ok")
	// The next hop's transaction, opened for john, ends at once.
	if begun, aborted := h.sink.counts(); begun != 1 || aborted != 1 {
		t.Errorf("after the DISCARD: %d next-hop transactions opened, %d aborted; want 1 and 1", begun, aborted)
	}
	// No more checks: even a recipient policy would refuse is "accepted".
	c.do("RCPT TO:<lisa@example.com>", "250 2.1.5 Ok")
	// Syntax and limits still apply.
	c.do("RCPT TO:<bad address>", "501 5.1.3 Bad recipient address syntax")
	c.do("RCPT TO:<jim@example.org>", "452 4.5.3 Error: too many recipients")
	c.message("discarded")
	stagesDiscarded := h.stages()
	if stagesDiscarded != "CONNECT HELO MAIL RCPT RCPT" {
		t.Errorf("policy asked about %q, want nothing after the DISCARD", stagesDiscarded)
	}

	c.do("MAIL FROM:<a@example.net>", "250 2.1.0 Ok")
	c.do("RCPT TO:<jane@example.org>", "250 2.1.5 Ok")
	c.message("delivered")
	c.do("QUIT", "221")

	if got := h.sink.subjects(); !slices.Equal(got, []string{"delivered"}) {
		t.Errorf("next hop got %q, want only the second message", got)
	}
	if got := h.sink.forwardedRcpts(); !slices.Equal(got, []string{"john@example.org", "jane@example.org"}) {
		t.Errorf("next hop was given recipients %q", got)
	}
	if _, aborted := h.sink.counts(); aborted != 1 {
		t.Errorf("%d next-hop transactions aborted, want 1 (the discarded one)", aborted)
	}
	if got := h.stages(); got != "CONNECT HELO MAIL RCPT RCPT MAIL RCPT DATA END_OF_DATA" {
		t.Errorf("policy asked about %q", got)
	}

	id := h.requests()[0].GetSession().GetId()
	var discard, discarded bool
	for _, rec := range h.logs.records(t) {
		switch {
		case rec["msg"] == "discard: RCPT from unknown[127.0.0.1]: <spam@example.org>: Recipient address triggers DISCARD action; from=<a@example.net> to=<spam@example.org> proto=ESMTP helo=<client.example.net>":
			discard = true
			if rec["level"] != "INFO" || rec["session"] != id || rec["restriction"] != "check_recipient_access" {
				t.Errorf("discard record %v", rec)
			}
		case rec["msg"] == "discarded":
			discarded = true
			if rec["session"] != id || rec["from"] != "a@example.net" || rec["nrcpt"] != float64(3) {
				t.Errorf("discarded record %v", rec)
			}
		case rec["msg"] == "accepted" && !discarded:
			t.Errorf("the discarded message was logged as accepted: %v", rec)
		}
	}
	if !discard || !discarded {
		t.Errorf("discard logged: %v, discarded logged: %v; logs:\n%s", discard, discarded, h.logs.String())
	}
}

// TestDiscardStages: a DISCARD at MAIL, RCPT, DATA or END_OF_DATA discards
// that transaction only; RSET or the next MAIL ends it.
func TestDiscardStages(t *testing.T) {
	for _, stage := range []policyv1.Stage{policyv1.Stage_STAGE_MAIL, policyv1.Stage_STAGE_RCPT, policyv1.Stage_STAGE_DATA, policyv1.Stage_STAGE_END_OF_DATA} {
		t.Run(stage.String(), func(t *testing.T) {
			h := newHarness(t, func(r *policyv1.CheckRequest) (*policyv1.Verdict, error) {
				if r.GetStage() == stage && r.GetTransaction().GetSender() == "bulk@example.net" {
					return discardVerdict(""), nil
				}
				return permit(r)
			}, nil)
			c := h.ehlo("250-")
			c.transaction("bulk@example.net", "discarded")
			// A discarded transaction ended by RSET does not taint the next.
			c.do("MAIL FROM:<bulk@example.net>", "250 2.1.0 Ok")
			c.do("RSET", "250 2.0.0 Ok")
			c.transaction("a@example.net", "delivered")
			c.do("QUIT", "221")
			if got := h.sink.subjects(); !slices.Equal(got, []string{"delivered"}) {
				t.Errorf("next hop got %q, want only the second message", got)
			}
			wantStages := map[policyv1.Stage]string{
				policyv1.Stage_STAGE_MAIL:        "MAIL",
				policyv1.Stage_STAGE_RCPT:        "MAIL RCPT",
				policyv1.Stage_STAGE_DATA:        "MAIL RCPT DATA",
				policyv1.Stage_STAGE_END_OF_DATA: "MAIL RCPT DATA END_OF_DATA",
			}[stage]
			if got, want := h.stages(), "CONNECT HELO "+wantStages+" MAIL MAIL RCPT DATA END_OF_DATA"; got != want {
				t.Errorf("policy asked about %q, want %q", got, want)
			}
			var logged bool
			for _, rec := range h.logs.records(t) {
				if msg, _ := rec["msg"].(string); strings.HasPrefix(msg, "discard: ") {
					logged = true
					if !strings.Contains(msg, " from unknown[127.0.0.1]: triggers DISCARD action; from=<bulk@example.net>") {
						t.Errorf("discard logged as %q", msg)
					}
				}
			}
			if !logged {
				t.Error("discard not logged")
			}
		})
	}
}

// TestDiscardSession: a DISCARD at CONNECT discards every transaction of
// the session; one at HELO/EHLO lasts until a HELO/EHLO policy permits.
func TestDiscardSession(t *testing.T) {
	t.Run("CONNECT", func(t *testing.T) {
		h := newHarness(t, func(r *policyv1.CheckRequest) (*policyv1.Verdict, error) {
			if r.GetStage() == policyv1.Stage_STAGE_CONNECT {
				return discardVerdict("discard: <unknown[127.0.0.1]>: Client host triggers DISCARD action"), nil
			}
			return permit(r)
		}, nil)
		c := h.dial()
		if got := c.reply(); got != "220 mail.example.org ESMTP smtpgate" {
			t.Errorf("greeting %q", got)
		}
		c.do("EHLO client.example.net", "250-")
		for _, subj := range []string{"one", "two"} {
			c.transaction("a@example.net", subj)
		}
		c.do("EHLO other.example.net", "250-")
		c.transaction("a@example.net", "three")
		c.do("QUIT", "221")
		begun, _ := h.sink.counts()
		if n := len(h.sink.messages()); n != 0 || begun != 0 {
			t.Errorf("next hop got %d messages in %d transactions, want none", n, begun)
		}
		if got := h.stages(); got != "CONNECT HELO HELO" {
			t.Errorf("policy asked about %q", got)
		}
	})
	t.Run("HELO", func(t *testing.T) {
		h := newHarness(t, func(r *policyv1.CheckRequest) (*policyv1.Verdict, error) {
			if r.GetStage() == policyv1.Stage_STAGE_HELO && r.GetSession().GetHeloName() == "bad.example.net" {
				return discardVerdict(""), nil
			}
			return permit(r)
		}, nil)
		c := h.dial()
		c.reply()
		c.do("EHLO bad.example.net", "250-")
		c.transaction("a@example.net", "discarded")
		c.do("EHLO good.example.net", "250-")
		c.transaction("a@example.net", "delivered")
		c.do("QUIT", "221")
		if got := h.sink.subjects(); !slices.Equal(got, []string{"delivered"}) {
			t.Errorf("next hop got %q", got)
		}
	})
}

// TestVerdictWarnings: every warning of a verdict is logged at warn level
// with the session, stage and envelope, whatever the action.
func TestVerdictWarnings(t *testing.T) {
	h := newHarness(t, func(r *policyv1.CheckRequest) (*policyv1.Verdict, error) {
		switch r.GetStage() {
		case policyv1.Stage_STAGE_MAIL:
			return &policyv1.Verdict{Action: policyv1.Action_ACTION_PERMIT, Warnings: []string{"warn: sender from a test network"}}, nil
		case policyv1.Stage_STAGE_RCPT:
			v, _ := relayDenied(r)
			v.Warnings = []string{
				"reject_warning: 554 5.7.1 <" + r.GetTransaction().GetRecipient() + ">: Recipient address rejected: Access denied",
				"warn: second",
			}
			return v, nil
		}
		return permit(r)
	}, nil)
	c := h.ehlo("250-")
	c.do("MAIL FROM:<a@example.net>", "250 ")
	c.do("RCPT TO:<john@example.org>", "250 ")
	c.do("RCPT TO:<lisa@example.com>", "554 5.7.1 <lisa@example.com>: Relay access denied")
	c.do("QUIT", "221")
	id := h.requests()[0].GetSession().GetId()
	type warning struct{ msg, stage, from, to string }
	var got []warning
	for _, rec := range h.logs.records(t) {
		if rec["level"] != "WARN" {
			continue
		}
		if rec["session"] != id || rec["client"] != "127.0.0.1" || rec["client_name"] != "unknown[127.0.0.1]" || rec["helo"] != "client.example.net" {
			t.Errorf("warning record %v", rec)
		}
		w := warning{}
		w.msg, _ = rec["msg"].(string)
		w.stage, _ = rec["stage"].(string)
		w.from, _ = rec["from"].(string)
		w.to, _ = rec["to"].(string)
		got = append(got, w)
	}
	want := []warning{
		{"warn: sender from a test network", "MAIL", "a@example.net", ""},
		{"reject_warning: 554 5.7.1 <john@example.org>: Recipient address rejected: Access denied", "RCPT", "a@example.net", "john@example.org"},
		{"warn: second", "RCPT", "a@example.net", "john@example.org"},
		{"reject_warning: 554 5.7.1 <lisa@example.com>: Recipient address rejected: Access denied", "RCPT", "a@example.net", "lisa@example.com"},
		{"warn: second", "RCPT", "a@example.net", "lisa@example.com"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("warnings logged:\n%q\nwant\n%q", got, want)
	}
}

func deferred(text string) *policyv1.DeferredReply {
	return &policyv1.DeferredReply{Code: 450, EnhancedCode: "4.7.1", Text: text}
}

// TestDeferIfPermitCarried follows Postfix's smtpd_check.c with
// smtpd_delay_reject = no: CONNECT's defer_if_permit goes with HELO/EHLO,
// HELO's (or, without a HELO, CONNECT's) with every MAIL, and each MAIL's
// with the RCPTs of its transaction; DATA and END_OF_DATA get none.
func TestDeferIfPermitCarried(t *testing.T) {
	connect := deferred("<unknown[127.0.0.1]>: Client host rejected: cannot find your hostname")
	// The fake policy raises one at CONNECT, passes what it gets on at
	// HELO (adding its own for one name), and at MAIL returns one naming
	// the sender, or none for none@.
	decide := func(r *policyv1.CheckRequest) (*policyv1.Verdict, error) {
		v := &policyv1.Verdict{Action: policyv1.Action_ACTION_PERMIT}
		switch r.GetStage() {
		case policyv1.Stage_STAGE_CONNECT:
			v.DeferIfPermit = connect
		case policyv1.Stage_STAGE_HELO:
			v.DeferIfPermit = r.GetDeferIfPermit()
			if r.GetSession().GetHeloName() == "raise.example.net" {
				v.DeferIfPermit = deferred("<raise.example.net>: Helo command rejected: Host not found")
			}
		case policyv1.Stage_STAGE_MAIL:
			if s := r.GetTransaction().GetSender(); s != "none@example.net" {
				v.DeferIfPermit = deferred("<" + s + ">: Sender address rejected: Domain not found")
			}
		}
		return v, nil
	}
	type step struct {
		stage policyv1.Stage
		want  *policyv1.DeferredReply
	}
	check := func(t *testing.T, h *harness, want []step) {
		t.Helper()
		reqs := h.requests()
		if len(reqs) != len(want) {
			t.Fatalf("policy asked about %q, want %d requests", h.stages(), len(want))
		}
		for i, w := range want {
			if reqs[i].GetStage() != w.stage || !proto.Equal(reqs[i].GetDeferIfPermit(), w.want) {
				t.Errorf("request %d: %v with defer_if_permit %v; want %v with %v", i, reqs[i].GetStage(), reqs[i].GetDeferIfPermit(), w.stage, w.want)
			}
		}
	}
	mailA := deferred("<a@example.net>: Sender address rejected: Domain not found")
	mailB := deferred("<b@example.net>: Sender address rejected: Domain not found")
	helo := deferred("<raise.example.net>: Helo command rejected: Host not found")

	t.Run("session", func(t *testing.T) {
		h := newHarness(t, decide, nil)
		c := h.ehlo("250-")
		c.do("MAIL FROM:<a@example.net>", "250 ")
		c.do("RCPT TO:<john@example.org>", "250 ")
		c.do("RCPT TO:<jane@example.org>", "250 ")
		c.message("one")
		// A new MAIL starts again from the session's value, not from the
		// last MAIL's.
		c.do("MAIL FROM:<b@example.net>", "250 ")
		c.do("RCPT TO:<john@example.org>", "250 ")
		c.do("RSET", "250 ")
		c.do("MAIL FROM:<none@example.net>", "250 ")
		c.do("RCPT TO:<john@example.org>", "250 ")
		c.do("RSET", "250 ")
		// A new EHLO starts from CONNECT's and replaces the session's.
		c.do("EHLO raise.example.net", "250-")
		c.do("MAIL FROM:<a@example.net>", "250 ")
		c.do("QUIT", "221")
		check(t, h, []step{
			{CONNECT, nil}, {HELO, connect},
			{MAIL, connect}, {RCPT, mailA}, {RCPT, mailA}, {DATA, nil}, {EOD, nil},
			{MAIL, connect}, {RCPT, mailB},
			{MAIL, connect}, {RCPT, nil},
			{HELO, connect}, {MAIL, helo},
		})
	})
	t.Run("no HELO", func(t *testing.T) {
		h := newHarness(t, decide, nil)
		c := h.dial()
		c.reply()
		c.do("MAIL FROM:<b@example.net>", "250 ")
		c.do("RCPT TO:<john@example.org>", "250 ")
		c.do("QUIT", "221")
		check(t, h, []step{{CONNECT, nil}, {MAIL, connect}, {RCPT, mailB}})
	})
	t.Run("STARTTLS forgets HELO", func(t *testing.T) {
		h := newHarness(t, decide, nil)
		c := h.dial()
		c.reply()
		c.do("EHLO raise.example.net", "250-")
		c = startTLS(t, c)
		c.do("MAIL FROM:<a@example.net>", "250 ")
		c.do("QUIT", "221")
		check(t, h, []step{{CONNECT, nil}, {HELO, connect}, {MAIL, connect}})
	})
}
