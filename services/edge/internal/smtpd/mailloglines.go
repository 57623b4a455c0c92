package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/smtpgate/smtpgate/services/edge/internal/handoff"
	"github.com/smtpgate/smtpgate/services/edge/internal/maillog"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// The lines Postfix's cleanup, qmgr and delivery agents write about a
// message, written by the edge from its synchronous hand-off: what
// pflogsumm counts as delivered, bounced and deferred.

// logHandedOff logs a message the next hop took (err nil) or refused at
// end of data: cleanup's message-id=, qmgr's from=, size=, nrcpt=, one
// delivery line per recipient, and qmgr's removed.
func (s *session) logHandedOff(tx *transaction, head []byte, size int64, handStart, handEnd time.Time, err error) {
	if !s.mlog.On() {
		return
	}
	// The Message-Id is looked for in what memory held of the content.
	s.mlog.MessageID(tx.queueID, messageID(io.MultiReader(bytes.NewReader(head), bytes.NewReader(tx.body.First()))))
	s.mlog.Queued(tx.queueID, tx.sender, size, len(tx.rcpts))
	rep := report(s.l.NextHop, tx.hand)
	for _, rcpt := range tx.rcpts {
		d := delivery(tx, rep, rcpt, handStart, handEnd)
		switch {
		case err != nil:
			refusal(&d, rep, err, "end of DATA")
		case rep.Replies != nil && rep.Replies[rcpt] != "":
			d.Text = rep.Replies[rcpt]
		case rep.Reply != "":
			d.Text = rep.Reply
		default:
			d.Text = "250 Ok"
		}
		if err == nil {
			d.Status, d.DSN = "sent", dsnOf(d.Text, "2.0.0")
		}
		s.mlog.Delivered(d)
	}
	s.mlog.Removed(tx.queueID)
}

// logRcptRefused logs the next hop's refusal of one recipient, as
// Postfix's smtp(8) logs it: status=bounced (5xx) or deferred (4xx, or
// not reached), "host NAME[ADDR] said: ... (in reply to RCPT TO
// command)".
func (s *session) logRcptRefused(tx *transaction, rcpt string, start time.Time, err error) {
	if !s.mlog.On() {
		return
	}
	rep := report(s.l.NextHop, tx.hand)
	d := delivery(tx, rep, rcpt, start, time.Now())
	what := "RCPT TO"
	if tx.hand == nil {
		what = "MAIL FROM"
	}
	refusal(&d, rep, err, what)
	s.mlog.Delivered(d)
}

// endedInContent logs the timeout or lost connection err while the
// client sent cmd's content (the transaction not reset yet), unless the
// drain ended it.
func (s *session) endedInContent(err error, cmd string) {
	if s.srv.Drain.closing() {
		return
	}
	var size int64
	if s.tx != nil && s.tx.body != nil {
		size = s.tx.body.Size()
	}
	reason := maillog.LostConnection
	if isTimeout(err) {
		reason = maillog.Timeout
	}
	s.mlog.EndedInContent(s.peer(), reason, cmd, size)
}

// report is what the transaction's next hop tells of itself, or, before
// it began, what the target does.
func report(target handoff.Target, hand handoff.Tx) handoff.Report {
	if r, ok := hand.(handoff.Reporter); ok {
		return r.Report()
	}
	if r, ok := target.(interface{ Report() handoff.Report }); ok {
		return r.Report()
	}
	return handoff.Report{Agent: "smtp", Relay: "none"}
}

// delivery is the delivery line's frame for rcpt: the message arrived at
// MAIL, the hand-off ran from start to end.
func delivery(tx *transaction, rep handoff.Report, rcpt string, start, end time.Time) maillog.Delivery {
	return maillog.Delivery{QueueID: tx.queueID, Recipient: rcpt, Agent: rep.Agent, Relay: rep.Relay,
		Delay: end.Sub(tx.started), Before: start.Sub(tx.started), Transfer: end.Sub(start)}
}

// refusal fills d for a refusal: the next hop's own reply ("host X said:
// 550 ... (in reply to WHAT command)"), or a failure to reach it.
func refusal(d *maillog.Delivery, rep handoff.Report, err error, what string) {
	r := reply.FromHandoff(err)
	d.Status, d.DSN = "deferred", r.Enhanced
	if r.Code/100 == 5 {
		d.Status = "bounced"
	}
	if d.DSN == "" {
		d.DSN = "4.0.0"
	}
	host := rep.Relay // "name[addr]", without the port
	if i := strings.IndexByte(host, ']'); i >= 0 {
		host = host[:i+1]
	}
	if reply.IsRefusal(err) {
		d.Text = "host " + host + " said: " + oneLine(r.Text()) + " (in reply to " + what + " command)"
		return
	}
	var nh *reply.NextHopError
	if errors.As(err, &nh) && nh.Err != nil {
		err = nh.Err
	}
	d.Text = strings.NewReplacer("(", "[", ")", "]").Replace(oneLine(err.Error()))
}

// oneLine joins a multi-line reply's lines.
func oneLine(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "\r", ""), "\n", " ") }

// dsnOf is the enhanced status code a reply's text starts with after its
// code ("250 2.0.0 Ok" is 2.0.0), or def.
func dsnOf(text, def string) string {
	f := strings.Fields(text)
	if len(f) > 1 && validDSN(f[1]) {
		return f[1]
	}
	return def
}

func validDSN(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

// messageID is the value of the message's Message-Id header field as
// Postfix's cleanup logs it (its folded lines joined, trimmed), or ""
// when it has none within the first maxHeaderScan bytes of the header.
func messageID(msg io.Reader) string {
	br := bufio.NewReader(io.LimitReader(msg, maxHeaderScan))
	var val []byte
	in := false
	for {
		line, err := br.ReadSlice('\n')
		long := err == bufio.ErrBufferFull
		switch {
		case len(line) > 0 && (line[0] == ' ' || line[0] == '\t'):
			if in {
				val = append(val, bytes.TrimRight(line, "\r\n")...)
			}
		case len(line) == 0 || bytes.Equal(line, []byte("\r\n")):
			return string(bytes.TrimSpace(val))
		default:
			if in {
				return string(bytes.TrimSpace(val))
			}
			name, v, ok := bytes.Cut(line, []byte(":"))
			if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t\r\n") {
				return ""
			}
			if strings.EqualFold(string(name), "message-id") {
				in = true
				val = append(val, bytes.TrimRight(v, "\r\n")...)
			}
		}
		for long {
			_, err = br.ReadSlice('\n')
			long = err == bufio.ErrBufferFull
		}
		if err != nil {
			return string(bytes.TrimSpace(val))
		}
	}
}
