package maillog

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestEvents: each event's line, byte for byte as Postfix's smtpd (and
// qmgr, for Queued) writes it, with what the client sent made printable.
func TestEvents(t *testing.T) {
	client := Peer{Name: "unknown", Addr: "192.0.2.1"}
	var cmds Commands
	for _, v := range []string{"EHLO", "MAIL", "RCPT", "QUIT"} {
		cmds.Count(v, v != "RCPT")
	}
	for _, tc := range []struct {
		name string
		log  func(*Log)
		want string
		prog string // "smtpd" when empty
	}{
		{"connect", func(l *Log) { l.Connect(client) }, "connect from unknown[192.0.2.1]", ""},
		{"disconnect", func(l *Log) { l.Disconnect(client, &cmds) }, "disconnect from unknown[192.0.2.1] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4", ""},
		{"reject rcpt", func(l *Log) {
			l.Reject(Reject{Stage: "RCPT", Client: client, Reason: "554 5.7.1 <x@example.net>: Relay access denied",
				Envelope: true, From: "a@example.org", To: "x@example.net", Proto: "ESMTP", Helo: "client.example.net"})
		}, "NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <x@example.net>: Relay access denied; from=<a@example.org> to=<x@example.net> proto=ESMTP helo=<client.example.net>", ""},
		{"reject null sender, no helo", func(l *Log) {
			l.Reject(Reject{QueueID: "0123456789AB", Stage: "MAIL", Client: client, Reason: "450 4.1.8 <>: Sender address rejected", Envelope: true, Proto: "SMTP"})
		}, "0123456789AB: reject: MAIL from unknown[192.0.2.1]: 450 4.1.8 <>: Sender address rejected; from=<> proto=SMTP", ""},
		{"reject without envelope", func(l *Log) {
			l.Reject(Reject{Stage: "CONNECT", Client: client, Reason: "bare <LF> received", Proto: "SMTP"})
		}, "NOQUEUE: reject: CONNECT from unknown[192.0.2.1]: bare <LF> received; proto=SMTP", ""},
		{"reject escaped", func(l *Log) {
			l.Reject(Reject{Stage: "EHLO", Client: client, Reason: "550 no", Proto: "ESMTP", Helo: "a\tb\"ü"})
		}, `NOQUEUE: reject: EHLO from unknown[192.0.2.1]: 550 no; proto=ESMTP helo=<a\tb\"ü>`, ""},
		{"client", func(l *Log) { l.Client("0123456789AB", client, "", "") }, "0123456789AB: client=unknown[192.0.2.1]", ""},
		{"client sasl", func(l *Log) { l.Client("0123456789AB", client, "PLAIN", "jo\x01") },
			`0123456789AB: client=unknown[192.0.2.1], sasl_method=PLAIN, sasl_username=jo\x01`, ""},
		{"queued", func(l *Log) { l.Queued("0123456789AB", "a\"b@example.org", 1234, 2) },
			`0123456789AB: from=<a\"b@example.org>, size=1234, nrcpt=2 (queue active)`, "qmgr"},
		{"reject_warning", func(l *Log) {
			l.Reject(Reject{Action: "reject_warning", Stage: "RCPT", Client: client, Reason: "554 5.7.1 <x@example.net>: Relay access denied",
				Envelope: true, From: "a@example.org", To: "x@example.net", Proto: "ESMTP", Helo: "h"})
		}, "NOQUEUE: reject_warning: RCPT from unknown[192.0.2.1]: 554 5.7.1 <x@example.net>: Relay access denied; from=<a@example.org> to=<x@example.net> proto=ESMTP helo=<h>", ""},
		{"sasl failed", func(l *Log) { l.SASLFailed(client, "LOGIN", "authentication failure") },
			"warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: authentication failure", ""},
		{"sasl aborted", func(l *Log) { l.SASLAborted(client, "PLAIN") },
			"warning: unknown[192.0.2.1]: SASL PLAIN authentication aborted", ""},
		{"lost connection", func(l *Log) { l.Ended(client, LostConnection, "RCPT") }, "lost connection after RCPT from unknown[192.0.2.1]", ""},
		{"timeout", func(l *Log) { l.Ended(client, Timeout, "CONNECT") }, "timeout after CONNECT from unknown[192.0.2.1]", ""},
		{"lost in DATA", func(l *Log) { l.EndedInContent(client, LostConnection, "DATA", 1234) },
			"lost connection after DATA (1234 bytes) from unknown[192.0.2.1]", ""},
		{"timeout in BDAT", func(l *Log) { l.EndedInContent(client, Timeout, "BDAT", 0) },
			"timeout after BDAT (0 bytes) from unknown[192.0.2.1]", ""},
		{"too many errors", func(l *Log) { l.Ended(client, TooManyErrors, "UNKNOWN") }, "too many errors after UNKNOWN from unknown[192.0.2.1]", ""},
		{"pipelining", func(l *Log) { l.Pipelining(client, "EHLO", []byte("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")) },
			`improper command pipelining after EHLO from unknown[192.0.2.1]: MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n`, ""},
		{"pipelining cut", func(l *Log) { l.Pipelining(client, "CONNECT", bytes.Repeat([]byte("x"), 150)) },
			"improper command pipelining after CONNECT from unknown[192.0.2.1]: " + strings.Repeat("x", 100), ""},
		{"message-id", func(l *Log) { l.MessageID("0123456789AB", "<1@example.org>") }, "0123456789AB: message-id=<1@example.org>", "cleanup"},
		{"no message-id", func(l *Log) { l.MessageID("0123456789AB", "") }, "0123456789AB: message-id=<>", "cleanup"},
		{"removed", func(l *Log) { l.Removed("0123456789AB") }, "0123456789AB: removed", "qmgr"},
		{"sent", func(l *Log) {
			l.Delivered(Delivery{QueueID: "0123456789AB", Recipient: "x@example.org", Agent: "smtp", Relay: "192.0.2.9[192.0.2.9]:25",
				Delay: 1234 * time.Millisecond, Before: 1100 * time.Millisecond, Transfer: 134 * time.Millisecond,
				DSN: "2.0.0", Status: "sent", Text: "250 2.0.0 Ok: queued as 4XYZ"})
		}, "0123456789AB: to=<x@example.org>, relay=192.0.2.9[192.0.2.9]:25, delay=1.2, delays=1.1/0/0/0.13, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4XYZ)", "smtp"},
		{"bounced", func(l *Log) {
			l.Delivered(Delivery{QueueID: "0123456789AB", Recipient: "x@example.org", Agent: "lmtp", Relay: "mail[/run/lmtp]",
				Delay: 20 * time.Millisecond, Transfer: 20 * time.Millisecond,
				DSN: "5.1.1", Status: "bounced", Text: "host mail[/run/lmtp] said: 550 5.1.1 <x@example.org>: no such user (in reply to RCPT TO command)"})
		}, "0123456789AB: to=<x@example.org>, relay=mail[/run/lmtp], delay=0.02, delays=0/0/0/0.02, dsn=5.1.1, status=bounced (host mail[/run/lmtp] said: 550 5.1.1 <x@example.org>: no such user (in reply to RCPT TO command))", "lmtp"},
	} {
		var b bytes.Buffer
		l := New(&b, "mail", "")
		l.Now = func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC) }
		tc.log(l)
		prog := tc.prog
		if prog == "" {
			prog = "smtpd"
		}
		want := "Mar  4 05:06:07 mail postfix/" + prog + "[" + strconv.Itoa(os.Getpid()) + "]: " + tc.want + "\n"
		if b.String() != want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, b.String(), want)
		}
		var off *Log
		tc.log(off) // a nil log writes nothing and does not panic
	}
}

// TestDelayFormat: delays as Postfix's format_tv writes them with its
// defaults (two significant digits, 10ms resolution).
func TestDelayFormat(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0"}, {-time.Second, "0"}, {4 * time.Millisecond, "0"}, {5 * time.Millisecond, "0.01"}, {50 * time.Millisecond, "0.05"},
		{120 * time.Millisecond, "0.12"}, {500 * time.Millisecond, "0.5"}, {time.Second, "1"}, {1230 * time.Millisecond, "1.2"},
		{9960 * time.Millisecond, "10"}, {12300 * time.Millisecond, "12"}, {123 * time.Second, "123"},
	} {
		if got := string(appendDelay(nil, tc.d)); got != tc.want {
			t.Errorf("%v: got %q, want %q", tc.d, got, tc.want)
		}
	}
}

// TestNamed: a listener's syslog_name (master.cf -o
// syslog_name=postfix/submission) names its lines, on the same output.
func TestNamed(t *testing.T) {
	var b bytes.Buffer
	l := New(&b, "mx", "")
	l.Now = func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC) }
	if l.Named("") != l || l.Named("postfix") != l {
		t.Error("Named with the log's own name or none made a new log")
	}
	sub := l.Named("postfix/submission")
	sub.Connect(Peer{Name: "unknown", Addr: "192.0.2.1"})
	sub.Removed("0123456789AB") // qmgr keeps main.cf's name
	pid := strconv.Itoa(os.Getpid())
	want := "Mar  4 05:06:07 mx postfix/submission/smtpd[" + pid + "]: connect from unknown[192.0.2.1]\n" +
		"Mar  4 05:06:07 mx postfix/qmgr[" + pid + "]: 0123456789AB: removed\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	var zero Log
	zero.Named("x").Connect(Peer{}) // a zero log writes nothing
	if zero.On() || zero.Reopen() != nil || zero.Close() != nil {
		t.Error("a zero log is on")
	}
}
