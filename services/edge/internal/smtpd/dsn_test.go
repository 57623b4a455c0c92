package smtpd

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"

	"github.com/smtpgate/smtpgate/services/edge/internal/handoff"
	"github.com/smtpgate/smtpgate/services/edge/internal/handoff/handofftest"
)

// TestDSN: DSN is advertised, its parameters are checked with Postfix's
// replies, and the good ones reach an SMTP next hop that offers DSN.
func TestDSN(t *testing.T) {
	hop := handofftest.Start(t, "127.0.0.1:0", true)
	target, err := handoff.Parse("smtp://"+hop.Addr(), nil, handoff.Options{Hostname: "mail.example.org", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, permit, func(l *Listener) { l.NextHop = target })
	c := h.dial()
	c.reply()
	if got := c.do("EHLO client.example.net", "250-"); !slices.Contains(strings.Split(got, "|"), "250-DSN") {
		t.Errorf("EHLO does not advertise DSN: %q", got)
	}
	for cmd, want := range map[string]string{
		"MAIL FROM:<a@example.net> RET=XX":                       "501 5.5.4 Bad RET parameter syntax",
		"MAIL FROM:<a@example.net> RET=FULL RET=HDRS":            "501 5.5.4 Bad RET parameter syntax",
		"MAIL FROM:<a@example.net> ENVID=a+2":                    "501 5.5.4 Bad ENVID parameter syntax",
		"MAIL FROM:<a@example.net> ENVID=a ENVID=b":              "501 5.5.4 Bad ENVID parameter syntax",
		"MAIL FROM:<a@example.net> ENVID":                        "555 5.5.4 Unsupported option: ENVID",
		"MAIL FROM:<a@example.net> RET=HDRS ENVID=QQ+2B314159=x": "250 2.1.0 Ok",
	} {
		if got := c.do(cmd, ""); got != want {
			t.Errorf("%q: got %q, want %q", cmd, got, want)
		}
		c.do("RSET", "250")
	}
	c.do("MAIL FROM:<a@example.net> RET=HDRS ENVID=QQ+2B314159=x", "250 2.1.0 Ok")
	for cmd, want := range map[string]string{
		"RCPT TO:<john@example.org> NOTIFY=NEVER,SUCCESS":                             "501 5.5.4 Error: Bad NOTIFY parameter syntax",
		"RCPT TO:<john@example.org> NOTIFY=SUCCESS NOTIFY=DELAY":                      "501 5.5.4 Error: Bad NOTIFY parameter syntax",
		"RCPT TO:<john@example.org> ORCPT=rfc822":                                     "501 5.5.4 Error: Bad ORCPT parameter syntax",
		"RCPT TO:<john@example.org> ORCPT=rfc822;a+zz":                                "501 5.5.4 Error: Bad ORCPT parameter syntax",
		"RCPT TO:<john@example.org> FOO=bar":                                          "555 5.5.4 Unsupported option: FOO=bar",
		"RCPT TO:<john@example.org> notify=delay,success,success":                     "250 2.1.5 Ok",
		"RCPT TO:<jane@example.org> NOTIFY=NEVER ORCPT=rfc822;Jane+2BDoe@example.org": "250 2.1.5 Ok",
	} {
		if got := c.do(cmd, ""); got != want {
			t.Errorf("%q: got %q, want %q", cmd, got, want)
		}
	}
	c.do("DATA", "354")
	c.send("Subject: dsn\r\n\r\nhi\r\n.\r\n")
	expect(c, "250 2.0.0 Ok: queued as ")
	c.do("QUIT", "221")

	if diff := cmp.Diff([]smtp.MailOptions{{Body: smtp.Body8BitMIME, Return: smtp.DSNReturnHeaders, EnvelopeID: "QQ+314159=x"}}, hop.MailOptions()); diff != "" {
		t.Errorf("next hop's MAIL options (-want +got):\n%s", diff)
	}
	want := map[string]smtp.RcptOptions{
		"john@example.org": {Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyDelayed}},
		"jane@example.org": {Notify: []smtp.DSNNotify{smtp.DSNNotifyNever}, OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "Jane+Doe@example.org"},
	}
	if diff := cmp.Diff(want, hop.RcptOptions()); diff != "" {
		t.Errorf("next hop's RCPT options (-want +got):\n%s", diff)
	}
}
