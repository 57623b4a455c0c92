package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"
)

// TestSMTPNextHop runs the real stack with a go-smtp server (offering
// DSN) as its next hop, which records what it gets.
func TestSMTPNextHop(t *testing.T) {
	hop := startNextHop(t, true)
	s := newStack(t, "smtpgate_next_hop = smtp://"+hop.addr+"\n")
	t.Run("DSN", func(t *testing.T) { testDSN(t, s, hop) })
	t.Run("submission adds Message-Id and Date", func(t *testing.T) { testSubmissionHeaders(t, s, hop) })
}

// testDSN: swaks sees DSN in the EHLO reply and gets Postfix's 501 for a
// bad RET; Python's smtplib sends RET, ENVID, NOTIFY and ORCPT, and the
// next hop gets them as sent.
func testDSN(t *testing.T, s *stack, hop *nextHop) {
	swaks := swaksPath(t)
	mx := []string{"--server", "127.0.0.1", "--port", itoa(s.port["mx"]), "--local-interface", Stranger, "--timeout", "20"}

	out, err := exec.Command(swaks, append(mx, "--to", "john@example.org", "--quit-after", "EHLO")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "<-  250-DSN\n") {
		t.Errorf("swaks --quit-after EHLO: DSN not advertised: %v\n%s", err, out)
	}
	// swaks has no DSN options; a parameter rides on --from.
	out, _ = exec.Command(swaks, append(mx, "--from", "someone@example.net> RET=BOGUS", "--to", "john@example.org")...).CombinedOutput()
	if !strings.Contains(string(out), "<** 501 5.5.4 Bad RET parameter syntax") {
		t.Errorf("swaks MAIL with RET=BOGUS:\n%s", out)
	}

	token := newToken("dsn")
	script := `
import smtplib, sys
port, token = int(sys.argv[1]), sys.argv[2]
with smtplib.SMTP("127.0.0.1", port, timeout=20, source_address=("127.0.0.66", 0)) as s:
    s.ehlo("client.example.net")
    if not s.has_extn("dsn"):
        sys.exit("no DSN in the EHLO reply")
    s.sendmail("someone@example.net", ["john@example.org"], "Subject: %s\r\n\r\nhello\r\n" % token,
               mail_options=["RET=HDRS", "ENVID=QQ+2B314159"],
               rcpt_options=["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;John+2BDoe@example.org"])
`
	if out, err := exec.Command("python3", "-c", script, itoa(s.port["mx"]), token).CombinedOutput(); err != nil {
		t.Fatalf("smtplib with DSN parameters: %v\n%s", err, out)
	}
	m := hop.message(t, token)
	if m.mail.Return != smtp.DSNReturnHeaders || m.mail.EnvelopeID != "QQ+314159" {
		t.Errorf("next hop's MAIL: RET=%q ENVID=%q, want HDRS and QQ+314159", m.mail.Return, m.mail.EnvelopeID)
	}
	want := map[string]smtp.RcptOptions{"john@example.org": {
		Notify:                []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyDelayed},
		OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "John+Doe@example.org",
	}}
	if diff := cmp.Diff(want, m.rcpts); diff != "" {
		t.Errorf("next hop's RCPT options (-want +got):\n%s", diff)
	}
}
