package restriction

import (
	"fmt"
	"strconv"
	"strings"
)

// Action is the outcome of a check.
type Action int

// The actions: the edge proceeds, refuses permanently (5xx) or refuses
// temporarily (4xx).
const (
	ActionPermit Action = iota + 1
	ActionReject
	ActionDefer
	// ActionDiscard: claim success and drop the message (access(5)
	// DISCARD).
	ActionDiscard
)

func (a Action) String() string {
	switch a {
	case ActionPermit:
		return "PERMIT"
	case ActionReject:
		return "REJECT"
	case ActionDefer:
		return "DEFER"
	case ActionDiscard:
		return "DISCARD"
	}
	return "UNSPECIFIED"
}

// Reply is an SMTP reply to a refused command: "Code DSN Text".
type Reply struct {
	Code int
	// DSN is the RFC 3463 enhanced status code, e.g. "5.7.1".
	DSN  string
	Text string
}

func (r Reply) String() string { return fmt.Sprintf("%d %s %s", r.Code, r.DSN, r.Text) }

// Verdict is the decision for one stage.
type Verdict struct {
	Action Action
	// Reply is set unless Action is ActionPermit.
	Reply Reply
	// Restriction is the restriction that decided, e.g.
	// "reject_unauth_destination"; empty when no restriction decided.
	Restriction string
	// List is the restriction list (or class) it belongs to.
	List string
	// Disconnect asks the edge to close the connection after the reply
	// (421 and 521, as Postfix's smtpd does).
	Disconnect bool
	// Prepend are header fields for the edge to prepend (access(5)
	// PREPEND), "Name: value".
	Prepend []string
	// Warnings are what warn_if_reject and WARN turned into log lines,
	// e.g. "reject_warning: 554 5.7.1 <...>: ...".
	Warnings []string
	// DeferIfPermit is an active defer_if_permit for the edge to carry to
	// later stages (smtpd_delay_reject = no).
	DeferIfPermit *Reply
}

// Codes are the reply codes and reply policy from main.cf.
type Codes struct {
	// Reject is reject_code (default 554), for "reject".
	Reject int
	// Defer is defer_code (default 450), for "defer".
	Defer int
	// Relay is relay_domains_reject_code (default 554), for
	// reject_unauth_destination; defer_unauth_destination uses it minus 100.
	Relay int
	// AccessReject and AccessDefer are access_map_reject_code (554) and
	// access_map_defer_code (450), for REJECT and DEFER in access tables.
	AccessReject int
	AccessDefer  int
	// InvalidHostname is invalid_hostname_reject_code (501); NonFQDN is
	// non_fqdn_reject_code (504).
	InvalidHostname int
	NonFQDN         int
	// The unknown_*_reject_code of reject_unlisted_recipient and
	// reject_unlisted_sender (550 each).
	UnknownLocal, UnknownVirtualMailbox, UnknownVirtualAlias, UnknownRelay int
	// SoftBounce is soft_bounce: every 5xx becomes 4xx.
	SoftBounce bool
}

// maxReply is the longest reply line Postfix sends (RFC 5321 section
// 4.5.3.1.5 allows 512 octets including CRLF).
const maxReply = 510

// reply formats a refusal the way Postfix's smtpd_check_reject() does:
// an out-of-range code or malformed DSN becomes "450 4.7.1 Service
// unavailable"; soft_bounce turns 5xx into 4xx; the DSN class always
// follows the reply code's first digit; the line is cut at 510 octets, and
// control characters and invalid UTF-8 become spaces.
func (c Codes) reply(code int, dsn, format string, args ...any) Reply {
	r := Reply{Code: code, DSN: dsn, Text: fmt.Sprintf(format, args...)}
	if code < 400 || code > 599 || !validDSN(dsn) {
		r = Reply{Code: 450, DSN: "4.7.1", Text: "Service unavailable"}
	}
	if c.SoftBounce && r.Code >= 500 {
		r.Code -= 100
	}
	r.DSN = strconv.Itoa(r.Code/100) + r.DSN[1:]
	if max := maxReply - len("nnn ") - len(r.DSN) - 1; len(r.Text) > max {
		r.Text = r.Text[:max]
	}
	r.Text = strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f {
			return ' '
		}
		return c
	}, strings.ToValidUTF8(r.Text, " "))
	return r
}

// validDSN checks an RFC 3463 status code: class "." subject "." detail
// with a class of 2, 4 or 5, a subject of at most three digits and a
// detail of at most three digits.
func validDSN(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}
