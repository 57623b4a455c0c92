// Package loadgen drives an SMTP server with many concurrent sessions and
// measures it: messages per second, per-message latency percentiles and
// errors by SMTP reply code. It is the engine of smtpgate-bench, which
// compares smtpgate with Postfix (docs/performance.md).
//
// It trusts nothing it connects to: every reply is checked, and a server
// that stops answering costs a timeout, never a hang. Each worker keeps its
// own counters and samples; they are merged only after every worker has
// returned, so a run shares no mutable state between goroutines except the
// message budget (an atomic counter).
//
// It speaks SMTP with the standard library's net/smtp (RFC 5321), STARTTLS
// (RFC 3207) or implicit TLS (RFC 8314), and AUTH PLAIN (RFC 4616). Client
// certificates are never checked (InsecureSkipVerify): it is a benchmark
// on loopback, not a mail client.
package loadgen

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Config describes one load run.
type Config struct {
	// Addr is the server, "host:port".
	Addr string
	// Sources are the local addresses the sessions are bound to, one per
	// session in turn; empty: the kernel picks.
	Sources []netip.Addr
	// Connections is the number of concurrent sessions.
	Connections int
	// MessagesPerConn is how many messages each session sends before QUIT.
	MessagesPerConn int
	// Size is the size of each message in bytes (headers included).
	Size int
	// Recipients is the number of RCPT TO per message.
	Recipients int
	// Sender and Recipient are address templates (see Expand).
	Sender, Recipient string
	// Helo is the EHLO name.
	Helo string
	// User and Password: AUTH PLAIN after EHLO (and STARTTLS) when User
	// is set.
	User, Password string
	// StartTLS sends STARTTLS after EHLO; ImplicitTLS starts TLS on
	// connect.
	StartTLS, ImplicitTLS bool
	// Groups are the TLS key exchange groups offered, in order; empty:
	// Go's defaults (X25519MLKEM768 first).
	Groups []tls.CurveID
	// Resume keeps each session's TLS session (a ticket) for its next
	// connection, as a client that reconnects does: one cache per
	// concurrent session.
	Resume bool
	// Duration bounds the run (warm-up included) when non-zero;
	// Messages bounds it by messages attempted (warm-up included) when
	// non-zero. One of them must be set.
	Duration time.Duration
	Messages int64
	// Warmup is how long after the start results are not counted.
	Warmup time.Duration
	// Timeout bounds each dial and each SMTP command.
	Timeout time.Duration
}

// Check reports the first thing wrong with c.
func (c *Config) Check() error {
	switch {
	case c.Addr == "":
		return errors.New("no target address")
	case c.Connections < 1:
		return errors.New("connections must be at least 1")
	case c.MessagesPerConn < 1:
		return errors.New("messages per connection must be at least 1")
	case c.Recipients < 1:
		return errors.New("recipients per message must be at least 1")
	case c.Size < 0:
		return errors.New("negative message size")
	case c.Duration <= 0 && c.Messages <= 0:
		return errors.New("need a duration or a message count")
	case c.Duration > 0 && c.Warmup >= c.Duration:
		return errors.New("warm-up must be shorter than the duration")
	case c.StartTLS && c.ImplicitTLS:
		return errors.New("STARTTLS and implicit TLS exclude each other")
	case c.Timeout <= 0:
		return errors.New("timeout must be positive")
	}
	return nil
}

// ParseSources parses a comma-separated list of IPv4 or IPv6 addresses and
// ranges "first-last" (the last one may be given as just its last IPv4
// octet: "127.0.0.10-60"), in order. An empty string gives none.
func ParseSources(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		first, last, isRange := strings.Cut(part, "-")
		a, err := netip.ParseAddr(strings.TrimSpace(first))
		if err != nil {
			return nil, fmt.Errorf("source %q: %w", part, err)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		last = strings.TrimSpace(last)
		var b netip.Addr
		if n, err := strconv.Atoi(last); err == nil && a.Is4() {
			if n < 0 || n > 255 {
				return nil, fmt.Errorf("source %q: octet %d out of range", part, n)
			}
			o := a.As4()
			o[3] = byte(n)
			b = netip.AddrFrom4(o)
		} else if b, err = netip.ParseAddr(last); err != nil {
			return nil, fmt.Errorf("source %q: %w", part, err)
		}
		if a.BitLen() != b.BitLen() || b.Less(a) {
			return nil, fmt.Errorf("source %q: not an ascending range", part)
		}
		for x := a; ; x = x.Next() {
			out = append(out, x)
			if len(out) > 1<<16 {
				return nil, fmt.Errorf("source %q: more than 65536 addresses", part)
			}
			if x == b {
				break
			}
		}
	}
	return out, nil
}

// Expand fills an address template: {c} is the session (worker) number,
// {m} the message number within the run of that worker, {r} the recipient
// number within the message, all from 0. Other text is kept as it is.
func Expand(tmpl string, c, m, r int) string {
	if !strings.Contains(tmpl, "{") {
		return tmpl
	}
	return strings.NewReplacer(
		"{c}", strconv.Itoa(c),
		"{m}", strconv.Itoa(m),
		"{r}", strconv.Itoa(r),
	).Replace(tmpl)
}

// Message returns a message of size bytes (one more when that is the only
// way to end on CRLF; its headers alone when they are longer) with CRLF line ends and lines of at most 78
// characters, in the form net/smtp's DATA writer takes (no dot-stuffing:
// no line starts with a dot).
func Message(from string, to []string, size int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: smtpgate-bench\r\n", from, strings.Join(to, ">, <"))
	b.WriteString("Date: Thu, 1 Jan 2026 00:00:00 +0000\r\nMessage-ID: <bench@smtpgate.invalid>\r\n\r\n")
	const line = 76 // + CRLF
	for rest := size - b.Len(); rest > 0; {
		switch {
		case rest <= 2:
			// Too short for a line: an empty one (one byte over at most).
			b.WriteString("\r\n")
			rest = 0
		case rest >= line+2:
			b.WriteString(strings.Repeat("x", line))
			b.WriteString("\r\n")
			rest -= line + 2
		default:
			b.WriteString(strings.Repeat("x", rest-2))
			b.WriteString("\r\n")
			rest = 0
		}
	}
	return []byte(b.String())
}
