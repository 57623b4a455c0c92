package smtpd

import (
	"testing"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

// TestSpokeFirst: a client whose EHLO is there before the 220 is about
// to go out talked first, as Postfix's smtpd sees it without any greet
// pause: policy hears of it (reject_unauth_pipelining), and with
// smtpd_forbid_unauth_pipelining the session ends.
func TestSpokeFirst(t *testing.T) {
	for _, forbid := range []bool{false, true} {
		written := make(chan struct{})
		h := newHarness(t, func(req *policyv1.CheckRequest) (*policyv1.Verdict, error) {
			if req.GetStage() == policyv1.Stage_STAGE_CONNECT {
				<-written // the client's bytes are there before the greeting
			}
			return permit(req)
		}, func(l *Listener) { l.ForbidUnauthPipelining = forbid })
		c := h.dial()
		c.send("EHLO client.example.net\r\n")
		close(written)
		if forbid {
			if got := c.reply(); got != "554 5.5.0 Error: SMTP protocol synchronization" {
				t.Errorf("forbid: greeting %q", got)
			}
			continue
		}
		c.reply()
		c.reply()
		c.do("MAIL FROM:<a@example.net>", "250")
		if reqs := h.requests(); !reqs[len(reqs)-1].GetSession().GetUnauthPipelining() {
			t.Errorf("policy was not told of the early talker: %v", reqs[len(reqs)-1].GetSession())
		}
	}
	// A client that waits for the greeting is not flagged.
	h := newHarness(t, permit, nil)
	c := h.ehlo("250")
	c.do("MAIL FROM:<a@example.net>", "250")
	for _, r := range h.requests() {
		if r.GetSession().GetUnauthPipelining() {
			t.Errorf("%s: flagged a client that waited", r.GetStage())
		}
	}
}
