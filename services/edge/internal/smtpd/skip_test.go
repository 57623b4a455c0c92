package smtpd

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

// Short names of the stages, for the tables of expected policy requests.
const (
	CONNECT = policyv1.Stage_STAGE_CONNECT
	HELO    = policyv1.Stage_STAGE_HELO
	MAIL    = policyv1.Stage_STAGE_MAIL
	RCPT    = policyv1.Stage_STAGE_RCPT
	DATA    = policyv1.Stage_STAGE_DATA
	EOD     = policyv1.Stage_STAGE_END_OF_DATA
)

// TestPolicySkipsPermitStages: stages policy says it always permits are
// answered without asking it, as it would answer them: the client sees
// the same replies, and the defer_if_permit raised at CONNECT still
// reaches RCPT through the HELO and MAIL that were not asked about.
func TestPolicySkipsPermitStages(t *testing.T) {
	connect := deferred("<unknown[127.0.0.1]>: Client host rejected: cannot find your hostname")
	// As smtpgate-policy with smtpd_delay_reject = no, a client list
	// that raises defer_if_permit, and nothing else but the recipient
	// list: HELO, MAIL, DATA and END-OF-DATA always permit, carrying the
	// defer_if_permit they got; RCPT turns it into the deferral.
	decide := func(r *policyv1.CheckRequest) (*policyv1.Verdict, error) {
		v := &policyv1.Verdict{Action: policyv1.Action_ACTION_PERMIT, DeferIfPermit: r.GetDeferIfPermit()}
		switch r.GetStage() {
		case CONNECT:
			v.DeferIfPermit = connect
		case RCPT:
			if d := r.GetDeferIfPermit(); d != nil {
				return &policyv1.Verdict{Action: policyv1.Action_ACTION_DEFER, Code: d.GetCode(), EnhancedCode: d.GetEnhancedCode(), Text: d.GetText()}, nil
			}
		}
		return v, nil
	}
	dialogue := func(t *testing.T, h *harness) {
		t.Helper()
		c := h.ehlo("250")
		c.do("MAIL FROM:<a@example.net>", "250 2.1.0")
		c.do("RCPT TO:<john@example.org>", "450 4.7.1 <unknown[127.0.0.1]>: Client host rejected: cannot find your hostname")
		c.do("QUIT", "221")
	}
	for _, tc := range []struct {
		name         string
		permitStages []policyv1.Stage
		want         []policyv1.Stage // what policy is asked, two sessions
	}{
		{"policy names none", nil, []policyv1.Stage{CONNECT, HELO, MAIL, RCPT, CONNECT, HELO, MAIL, RCPT}},
		{"policy names HELO MAIL DATA EOD", []policyv1.Stage{HELO, MAIL, DATA, EOD}, []policyv1.Stage{CONNECT, RCPT, CONNECT, RCPT}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, decide, nil)
			h.policy.setPermitStages(tc.permitStages...)
			dialogue(t, h)
			dialogue(t, h)
			reqs := h.requests()
			var got []policyv1.Stage
			for _, r := range reqs {
				got = append(got, r.GetStage())
				if r.GetStage() == RCPT && !proto.Equal(r.GetDeferIfPermit(), connect) {
					t.Errorf("RCPT carried %v, want CONNECT's %v", r.GetDeferIfPermit(), connect)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("policy asked about %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("policy asked about %v, want %v", got, tc.want)
				}
			}
		})
	}

	// A transaction through to the end: DATA and END-OF-DATA skipped,
	// the message delivered.
	h := newHarness(t, permit, nil)
	h.policy.setPermitStages(CONNECT, HELO, MAIL, DATA, EOD)
	for range 2 {
		c := h.ehlo("250")
		c.do("MAIL FROM:<a@example.net>", "250")
		c.do("RCPT TO:<john@example.org>", "250")
		c.do("DATA", "354")
		c.do("Subject: x\r\n\r\nhi\r\n.", "250 2.0.0")
		c.do("QUIT", "221")
	}
	// CONNECT is asked in every session all the same: that check
	// resolves the client's names (smtpd_peername_lookup).
	if got := h.stages(); got != "CONNECT RCPT CONNECT RCPT" {
		t.Errorf("policy asked about %v, want CONNECT RCPT CONNECT RCPT (the first answer names the stages; CONNECT resolves the names)", got)
	}
}

// TestNamesRememberedForSkipTime: a client that reconnects within
// PolicySkipTime gets the names policy resolved for its last session
// without a connect check of its own when policy always permits that
// stage; its later requests carry them. A temporary failure is not
// remembered: the next session asks again.
func TestNamesRememberedForSkipTime(t *testing.T) {
	session := func(h *harness) {
		t.Helper()
		c := h.ehlo("250")
		c.do("MAIL FROM:<a@example.net>", "250")
		c.do("RCPT TO:<john@example.org>", "250")
		c.do("QUIT", "221")
	}
	for _, tc := range []struct {
		name   string
		status policyv1.NameStatus
		want   string
	}{
		{"verified", policyv1.NameStatus_NAME_STATUS_OK, "CONNECT RCPT RCPT"},
		{"temporary failure", policyv1.NameStatus_NAME_STATUS_TEMPORARY, "CONNECT RCPT CONNECT RCPT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, permit, nil)
			h.policy.setPermitStages(CONNECT, HELO, MAIL, DATA, EOD)
			h.policy.mu.Lock()
			h.policy.names = &policyv1.ClientNames{Name: "mail.example.net", ReverseName: "mail.example.net",
				NameStatus: tc.status, ReverseNameStatus: tc.status}
			h.policy.mu.Unlock()
			session(h)
			session(h)
			if got := h.stages(); got != tc.want {
				t.Fatalf("policy asked about %v, want %v", got, tc.want)
			}
			for _, r := range h.requests() {
				if r.GetStage() == RCPT && (r.GetSession().GetClientName() != "mail.example.net" || r.GetSession().GetClientNameStatus() != tc.status) {
					t.Errorf("RCPT carried the name %q (%v), want mail.example.net (%v)", r.GetSession().GetClientName(), r.GetSession().GetClientNameStatus(), tc.status)
				}
			}
		})
	}
}

// TestKnownNamesBounds: entries expire, temporary failures are not
// kept, and the map never holds more than maxKnownNames.
func TestKnownNamesBounds(t *testing.T) {
	var k knownNames
	now := time.Unix(1_800_000_000, 0)
	ok := &policyv1.ClientNames{Name: "a.example", NameStatus: policyv1.NameStatus_NAME_STATUS_OK}
	k.put("l", "192.0.2.1", ok, now, 5*time.Second)
	if k.get("l", "192.0.2.1", now.Add(4*time.Second)) == nil {
		t.Error("names forgotten within the time")
	}
	if k.get("other", "192.0.2.1", now) != nil {
		t.Error("names of one listener given to another")
	}
	if k.get("l", "192.0.2.1", now.Add(5*time.Second)) != nil {
		t.Error("names kept past the time")
	}
	k.put("l", "192.0.2.2", &policyv1.ClientNames{NameStatus: policyv1.NameStatus_NAME_STATUS_OK, ReverseNameStatus: policyv1.NameStatus_NAME_STATUS_TEMPORARY}, now, time.Minute)
	if k.get("l", "192.0.2.2", now) != nil {
		t.Error("a temporary failure was remembered")
	}
	for i := range maxKnownNames + 10 {
		k.put("l", fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), ok, now, time.Minute)
	}
	if n := len(k.m); n > maxKnownNames {
		t.Errorf("%d entries, more than %d", n, maxKnownNames)
	}
}
