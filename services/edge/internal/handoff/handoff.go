// Package handoff delivers the messages smtpgate-edge accepts to the next
// hop before the edge answers 250: a before-queue hand-off with no queue of
// its own. A transaction follows the SMTP one: Begin at the first accepted
// recipient, Rcpt per recipient (forwarded live to an SMTP or LMTP next hop,
// so its refusal reaches the client at RCPT, as with Postfix's
// smtpd_proxy_filter), Data at end-of-data, Abort when the client resets or
// goes away, so that nothing is delivered that the client was not told was
// accepted. Errors are *reply.NextHopError values carrying the reply to give.
//
// Trust: the envelope and the content come from the SMTP client through
// the engine and are passed on as they came, streamed; they are read only
// to fold over-long lines (as Postfix's smtp(8) does) and to see whether
// the message needs SMTPUTF8. The next hop and
// the Maildir directory are the operator's (main.cf). A next hop's own
// 4xx or 5xx reply reaches the client (reply.NextHopRefused checks its
// code); any other failure to hand a message off is a temporary refusal,
// never a 250.
package handoff

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Envelope is what Begin needs to know about a message.
type Envelope struct {
	// Sender is the MAIL FROM address; empty for the null sender.
	Sender string
	// Size is the SIZE= value, or 0.
	Size int64
	// Body8Bit is BODY=8BITMIME.
	Body8Bit bool
	// SMTPUTF8 was requested.
	SMTPUTF8 bool
	// QueueID is the edge's id for the message.
	QueueID string
	// Return is the DSN RET= value (RFC 3461 §4.3), "FULL" or "HDRS";
	// EnvelopeID is ENVID= (§4.4), decoded from xtext. Empty when the
	// client gave none. A relay passes them on only to a next hop that
	// advertises DSN; the Maildir ignores them.
	Return     string
	EnvelopeID string
}

// RecipientDSN are one recipient's DSN parameters (RFC 3461 §4.1, §4.2).
type RecipientDSN struct {
	// Notify is NOTIFY=: "NEVER", or some of "SUCCESS", "FAILURE" and
	// "DELAY"; nil when the client gave none.
	Notify []string
	// OriginalType and Original are ORCPT=: the address type ("rfc822",
	// "utf-8", ...) and the address decoded from xtext; empty when the
	// client gave none.
	OriginalType, Original string
}

// Empty reports whether the client gave no DSN parameter.
func (d RecipientDSN) Empty() bool { return d.Notify == nil && d.OriginalType == "" }

// Target is a next hop.
type Target interface {
	Begin(ctx context.Context, env Envelope) (Tx, error)
	// String names the target for logs.
	String() string
}

// Tx is one message on its way to the next hop.
type Tx interface {
	// Rcpt adds a recipient with its DSN parameters (a target without
	// DSN ignores them); a refusal is the next hop's own reply.
	Rcpt(ctx context.Context, addr string, dsn RecipientDSN) error
	// Data sends the message read from msg (CRLF line ends, not
	// dot-stuffed) and returns nil only when the next hop has accepted it
	// for every recipient. msg is read once, in order, and may be the
	// client's content while it arrives: a target must not hold the
	// whole message in memory, and must fail, without the next hop
	// taking the message, when reading msg fails.
	Data(ctx context.Context, msg io.Reader) error
	// Abort ends the transaction without delivering; it is safe to call
	// after Data and more than once.
	Abort()
}

// Options are the settings every target shares.
type Options struct {
	// Hostname is sent in EHLO/LHLO and written into Maildir file names.
	Hostname string
	// Timeout bounds each exchange with the next hop.
	Timeout time.Duration
	// IdleConnections is how many connections to an SMTP or LMTP next
	// hop are kept open between messages for the next ones
	// (smtpgate_next_hop_idle_connections); zero: a connection per
	// message, closed with QUIT after it.
	IdleConnections int
	// IdleTimeout closes a kept connection nobody took for this long
	// (smtpgate_next_hop_idle_timeout); zero: 10s.
	IdleTimeout time.Duration
	// LineLengthLimit is smtp_line_length_limit, LMTPLineLengthLimit
	// lmtp_line_length_limit (Postfix's, both 998 by default): a line of
	// content longer than this many bytes (its CRLF not counted) is
	// broken with "<CR><LF><SPACE>" on its way to an SMTP or LMTP next
	// hop, as Postfix's smtp(8) breaks it (fold.go). Zero: not broken.
	// A Maildir gets every line whole, as Postfix's local(8) and
	// virtual(8) write them.
	LineLengthLimit, LMTPLineLengthLimit int
	// Logger gets what Postfix's smtp(8) logs about a message (a line
	// broken for the line length limit); nil: nothing.
	Logger *slog.Logger
}

// Parse reads smtpgate_next_hop: "maildir:PATH", "smtp://host:port",
// "lmtp://host:port" or "lmtp+unix:///path". resolve turns a relative
// Maildir path into an absolute one (the configuration directory).
func Parse(spec string, resolve func(string) string, opts Options) (Target, error) {
	if p, ok := strings.CutPrefix(spec, "maildir:"); ok {
		if p == "" {
			return nil, fmt.Errorf("next hop %q: empty Maildir path", spec)
		}
		return &Maildir{Dir: resolve(p), Hostname: opts.Hostname}, nil
	}
	u, err := url.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("next hop %q: %w", spec, err)
	}
	switch u.Scheme {
	case "smtp", "lmtp":
		if u.Host == "" || u.Port() == "" || u.Path != "" || u.User != nil || u.RawQuery != "" {
			return nil, fmt.Errorf("next hop %q: want %s://host:port", spec, u.Scheme)
		}
		return &Relay{Network: "tcp", Addr: u.Host, LMTP: u.Scheme == "lmtp", Opts: opts}, nil
	case "lmtp+unix":
		if u.Path == "" || u.Host != "" {
			return nil, fmt.Errorf("next hop %q: want lmtp+unix:///path/to/socket", spec)
		}
		return &Relay{Network: "unix", Addr: u.Path, LMTP: true, Opts: opts}, nil
	}
	return nil, fmt.Errorf("next hop %q: want maildir:PATH, smtp://host:port, lmtp://host:port or lmtp+unix:///path", spec)
}
