package maillog

import (
	"strconv"
	"time"
)

// SASLFailed logs a failed SASL exchange as Postfix's smtpd warns of it:
// "warning: name[addr]: SASL PLAIN authentication failed: reason" (the
// line fail2ban's postfix[mode=auth] filter counts); escaped as
// printable text.
func (l *Log) SASLFailed(client Peer, mechanism, reason string) {
	l.line(progSmtpd, severityWarning, true, func(b []byte) []byte {
		b = client.appendTo(append(b, "warning: "...))
		b = append(append(b, ": SASL "...), mechanism...)
		return append(append(b, " authentication failed: "...), reason...)
	})
}

// SASLAborted logs a SASL exchange the client cancelled ("*"):
// "warning: name[addr]: SASL LOGIN authentication aborted".
func (l *Log) SASLAborted(client Peer, mechanism string) {
	l.line(progSmtpd, severityWarning, true, func(b []byte) []byte {
		b = client.appendTo(append(b, "warning: "...))
		return append(append(append(b, ": SASL "...), mechanism...), " authentication aborted"...)
	})
}

// Reasons a session ended abnormally, in Postfix smtpd's words.
const (
	LostConnection = "lost connection"
	Timeout        = "timeout"
	TooManyErrors  = "too many errors"
)

// Ended logs a session that ended abnormally, as Postfix 3.7's smtpd
// does: "lost connection after RCPT from name[addr]", with reason one of
// LostConnection, Timeout, TooManyErrors and where the last command's
// verb ("CONNECT" before any).
func (l *Log) Ended(client Peer, reason, where string) {
	l.line(progSmtpd, severityInfo, true, func(b []byte) []byte {
		b = append(append(append(append(b, reason...), " after "...), where...), " from "...)
		return client.appendTo(b)
	})
}

// EndedInContent logs a session that ended abnormally while the client
// sent a message's content, as Postfix's smtpd does: "lost connection
// after DATA (1234 bytes) from name[addr]", cmd being "DATA" or "BDAT"
// and size the bytes of content received.
func (l *Log) EndedInContent(client Peer, reason, cmd string, size int64) {
	l.line(progSmtpd, severityInfo, true, func(b []byte) []byte {
		b = append(append(append(append(b, reason...), " after "...), cmd...), " ("...)
		b = strconv.AppendInt(b, size, 10)
		return client.appendTo(append(b, " bytes) from "...))
	})
}

// Pipelining logs a client that sent commands ahead of a reply where
// that is not allowed: "improper command pipelining after EHLO from
// name[addr]: MAIL FROM:<a@example.org>\r\n", with up to 100 bytes of
// what was pending, escaped as printable text.
func (l *Log) Pipelining(client Peer, where string, pending []byte) {
	l.line(progSmtpd, severityInfo, false, func(b []byte) []byte {
		b = append(append(append(b, "improper command pipelining after "...), where...), " from "...)
		b = append(client.appendTo(b), ": "...)
		if len(pending) > 100 {
			pending = pending[:100]
		}
		return escape(append(b, pending...), len(b))
	})
}

// MessageID logs the message's Message-ID as Postfix's cleanup does:
// "QUEUEID: message-id=<id@example.org>" (the header's value as it is;
// "<>" when the message has none), escaped as printable text.
func (l *Log) MessageID(queueID, messageID string) {
	l.line(progCleanup, severityInfo, true, func(b []byte) []byte {
		b = append(append(b, queueID...), ": message-id="...)
		if messageID == "" {
			return append(b, "<>"...)
		}
		return append(b, messageID...)
	})
}

// Removed logs the end of a message's life, as Postfix's qmgr does when
// it deletes the queue file: "QUEUEID: removed".
func (l *Log) Removed(queueID string) {
	l.line(progQmgr, severityInfo, false, func(b []byte) []byte { return append(append(b, queueID...), ": removed"...) })
}

// Delivery is one recipient's outcome at the next hop, for the line
// Postfix's delivery agents write (log_adhoc): "QUEUEID: to=<rcpt>,
// relay=host[addr]:port, delay=0.12, delays=0.1/0/0/0.02, dsn=2.0.0,
// status=sent (250 2.0.0 Ok)".
type Delivery struct {
	QueueID   string
	Recipient string
	// Agent is the Postfix program the next hop stands for: "smtp",
	// "lmtp" or "virtual".
	Agent string
	// Relay is the relay= value: "host[addr]:port", or "virtual".
	Relay string
	// Delay is the whole time since the message arrived; Before the part
	// before the hand-off began, Setup the next hop's connection set-up,
	// Transfer the rest (Postfix's delays=a/b/c/d with b, the time in the
	// queue manager, always 0: the edge has no queue).
	Delay, Before, Setup, Transfer time.Duration
	// DSN is the enhanced status code ("2.0.0"); Status "sent",
	// "deferred" or "bounced"; Text what is in the parentheses.
	DSN, Status, Text string
}

// Delivered logs d, escaped as printable text.
func (l *Log) Delivered(d Delivery) {
	l.line(d.Agent, severityInfo, true, func(b []byte) []byte {
		b = append(append(append(b, d.QueueID...), ": to=<"...), d.Recipient...)
		b = append(append(b, ">, relay="...), d.Relay...)
		b = appendDelay(append(b, ", delay="...), d.Delay)
		b = appendDelay(append(b, ", delays="...), d.Before)
		b = appendDelay(append(b, "/0/"...), d.Setup)
		b = appendDelay(append(b, '/'), d.Transfer)
		b = append(append(b, ", dsn="...), d.DSN...)
		b = append(append(b, ", status="...), d.Status...)
		return append(append(append(b, " ("...), d.Text...), ')')
	})
}

// appendDelay formats a delay as Postfix's format_tv does with its
// defaults (two significant digits, 10ms resolution): "0", "0.05",
// "0.12", "1.2", "12", "123".
func appendDelay(b []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	hundredths := int64((d + 5*time.Millisecond) / (10 * time.Millisecond))
	switch {
	case hundredths >= 1000: // 10s and more: whole seconds
		return strconv.AppendInt(b, int64((d+500*time.Millisecond)/time.Second), 10)
	case hundredths >= 100: // 1s to 10s: one decimal
		tenths := (hundredths + 5) / 10
		b = strconv.AppendInt(b, tenths/10, 10)
		if tenths%10 != 0 {
			b = strconv.AppendInt(append(b, '.'), tenths%10, 10)
		}
		return b
	case hundredths == 0:
		return append(b, '0')
	}
	b = append(b, "0."...)
	if hundredths < 10 {
		return strconv.AppendInt(append(b, '0'), hundredths, 10)
	}
	if hundredths%10 == 0 {
		return strconv.AppendInt(b, hundredths/10, 10)
	}
	return strconv.AppendInt(b, hundredths, 10)
}

// Forged logs a client whose PTR name does not resolve back to its
// address, as Postfix's smtpd_peer.c warns of it: "warning: hostname
// mail.example.net does not resolve to address 192.0.2.10"; escaped as
// printable text.
func (l *Log) Forged(hostname, addr string) {
	l.line(progSmtpd, severityWarning, true, func(b []byte) []byte {
		b = append(append(b, "warning: hostname "...), hostname...)
		return append(append(b, " does not resolve to address "...), addr...)
	})
}
