package maillog

import (
	"bytes"
	"os"
	"strconv"
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
	}{
		{"connect", func(l *Log) { l.Connect(client) }, "connect from unknown[192.0.2.1]"},
		{"disconnect", func(l *Log) { l.Disconnect(client, &cmds) }, "disconnect from unknown[192.0.2.1] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4"},
		{"reject rcpt", func(l *Log) {
			l.Reject(Reject{Stage: "RCPT", Client: client, Reason: "554 5.7.1 <x@example.net>: Relay access denied",
				Envelope: true, From: "a@example.org", To: "x@example.net", Proto: "ESMTP", Helo: "client.example.net"})
		}, "NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <x@example.net>: Relay access denied; from=<a@example.org> to=<x@example.net> proto=ESMTP helo=<client.example.net>"},
		{"reject null sender, no helo", func(l *Log) {
			l.Reject(Reject{QueueID: "0123456789AB", Stage: "MAIL", Client: client, Reason: "450 4.1.8 <>: Sender address rejected", Envelope: true, Proto: "SMTP"})
		}, "0123456789AB: reject: MAIL from unknown[192.0.2.1]: 450 4.1.8 <>: Sender address rejected; from=<> proto=SMTP"},
		{"reject without envelope", func(l *Log) {
			l.Reject(Reject{Stage: "CONNECT", Client: client, Reason: "bare <LF> received", Proto: "SMTP"})
		}, "NOQUEUE: reject: CONNECT from unknown[192.0.2.1]: bare <LF> received; proto=SMTP"},
		{"reject escaped", func(l *Log) {
			l.Reject(Reject{Stage: "EHLO", Client: client, Reason: "550 no", Proto: "ESMTP", Helo: "a\tb\"ü"})
		}, `NOQUEUE: reject: EHLO from unknown[192.0.2.1]: 550 no; proto=ESMTP helo=<a\tb\"ü>`},
		{"client", func(l *Log) { l.Client("0123456789AB", client, "", "") }, "0123456789AB: client=unknown[192.0.2.1]"},
		{"client sasl", func(l *Log) { l.Client("0123456789AB", client, "PLAIN", "jo\x01") },
			`0123456789AB: client=unknown[192.0.2.1], sasl_method=PLAIN, sasl_username=jo\x01`},
		{"queued", func(l *Log) { l.Queued("0123456789AB", "a\"b@example.org", 1234, 2) },
			`0123456789AB: from=<a\"b@example.org>, size=1234, nrcpt=2 (queue active)`},
	} {
		var b bytes.Buffer
		l := New(&b, "mail")
		l.Now = func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC) }
		tc.log(l)
		want := "Mar  4 05:06:07 mail smtpgate/smtpd[" + strconv.Itoa(os.Getpid()) + "]: " + tc.want + "\n"
		if b.String() != want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, b.String(), want)
		}
		var off *Log
		tc.log(off) // a nil log writes nothing and does not panic
	}
}
