package smtpd

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// maxHeaderScan bounds how much of the content is read to find the end of
// the message header (Postfix's header_size_limit is 102400).
const maxHeaderScan = 1 << 20

// resentHeaders are the headers that make a message "resent" (Postfix's
// HDR_OPT_RR): its missing Message-Id and Date are then
// Resent-Message-Id and Resent-Date (RFC 5322 §3.6.6).
var resentHeaders = map[string]bool{
	"resent-bcc": true, "resent-cc": true, "resent-date": true, "resent-from": true,
	"resent-message-id": true, "resent-reply-to": true, "resent-sender": true, "resent-to": true,
}

// headerNames returns the lower-cased names of the fields in the message
// header at the start of content: up to the empty line, or the first line
// that is neither a field nor the continuation of one (where Postfix's
// cleanup also takes the body to start), or the end of content.
func headerNames(content []byte) map[string]bool {
	names := map[string]bool{}
	for len(content) > 0 {
		line := content
		if i := bytes.IndexByte(content, '\n'); i >= 0 {
			line = content[:i+1]
		}
		content = content[len(line):]
		switch {
		case line[0] == ' ' || line[0] == '\t':
			// A continuation.
		case bytes.Equal(line, []byte("\r\n")):
			return names
		default:
			name, _, ok := bytes.Cut(line, []byte(":"))
			if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t\r\n") {
				return names // not a header field: the body starts
			}
			names[strings.ToLower(string(name))] = true
		}
	}
	return names
}

// missingHeaders returns the Message-Id and Date fields to add to a
// message whose header fields are names, as Postfix's cleanup writes them
// (cleanup_message.c): "Message-Id: <YYYYMMDDhhmmss.QUEUEID@myhostname>"
// with the time in UTC, and "Date:" in RFC 5322 form with the local zone
// ("Fri,  4 Dec 2026 17:05:00 +0100 (CET)", the day of month padded with
// a space as strftime's %e does). In a resent message they are
// Resent-Message-Id and Resent-Date. at is the time of the transaction's
// MAIL. Each line ends in CRLF.
func missingHeaders(names map[string]bool, queueID, hostname string, at time.Time) []string {
	prefix, msgID, date := "", "message-id", "date"
	for n := range names {
		if resentHeaders[n] {
			prefix, msgID, date = "Resent-", "resent-message-id", "resent-date"
			break
		}
	}
	var out []string
	if !names[msgID] {
		out = append(out, fmt.Sprintf("%sMessage-Id: <%s.%s@%s>\r\n", prefix, at.UTC().Format("20060102150405"), queueID, hostname))
	}
	if !names[date] {
		out = append(out, prefix+"Date: "+at.Local().Format("Mon, _2 Jan 2006 15:04:05 -0700 (MST)")+"\r\n")
	}
	return out
}
