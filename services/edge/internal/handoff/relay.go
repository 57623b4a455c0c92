package handoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// Relay hands messages to an SMTP (RFC 5321) or LMTP (RFC 2033) server
// with go-smtp's client.
type Relay struct {
	Network, Addr string
	LMTP          bool
	Opts          Options
}

func (r *Relay) String() string {
	scheme := "smtp"
	if r.LMTP {
		scheme = "lmtp"
	}
	if r.Network == "unix" {
		return scheme + "+unix://" + r.Addr
	}
	return scheme + "://" + r.Addr
}

// Begin opens a connection and sends EHLO/LHLO and MAIL FROM.
func (r *Relay) Begin(ctx context.Context, env Envelope) (Tx, error) {
	d := net.Dialer{Timeout: r.Opts.Timeout}
	conn, err := d.DialContext(ctx, r.Network, r.Addr)
	if err != nil {
		return nil, reply.NextHopUnavailable(fmt.Errorf("dial %s: %w", r, err))
	}
	var c *smtp.Client
	if r.LMTP {
		c = smtp.NewClientLMTP(conn)
	} else {
		c = smtp.NewClient(conn)
	}
	if r.Opts.Timeout > 0 {
		c.CommandTimeout, c.SubmissionTimeout = r.Opts.Timeout, r.Opts.Timeout
	}
	tx := &relayTx{r: r, c: c}
	if err := c.Hello(r.Opts.Hostname); err != nil {
		tx.Abort()
		return nil, mapErr(err, r)
	}
	opts := &smtp.MailOptions{Size: env.Size, UTF8: env.SMTPUTF8}
	if env.Body8Bit {
		opts.Body = smtp.Body8BitMIME
	}
	if err := c.Mail(env.Sender, opts); err != nil {
		tx.Abort()
		return nil, mapErr(err, r)
	}
	return tx, nil
}

type relayTx struct {
	r     *Relay
	c     *smtp.Client
	rcpts int
	// inData: DATA was sent; done: the next hop accepted the message.
	inData, done bool
}

func (t *relayTx) Rcpt(_ context.Context, addr string) error {
	if err := t.c.Rcpt(addr, nil); err != nil {
		return mapErr(err, t.r)
	}
	t.rcpts++
	return nil
}

func (t *relayTx) Data(_ context.Context, msg io.Reader) error {
	defer t.Abort()
	t.inData = true
	w, err := t.c.Data()
	if err != nil {
		return mapErr(err, t.r)
	}
	// Streamed with go-smtp's dot-stuffing writer; a failure to read msg
	// is the edge's own (451 4.3.0), one to write the next hop's.
	src := &readErr{r: msg}
	if _, err := io.Copy(w, src); err != nil {
		if src.err != nil {
			return fmt.Errorf("read message for %s: %w", t.r, src.err)
		}
		return reply.NextHopFailed(fmt.Errorf("send to %s: %w", t.r, err))
	}
	err = w.Close()
	var lmtpErr smtp.LMTPDataError
	if errors.As(err, &lmtpErr) {
		return lmtpFailure(lmtpErr, t.rcpts)
	}
	if err != nil {
		return mapErr(err, t.r)
	}
	t.done = true
	return nil
}

// readErr remembers the error its reader returned, so that a failed copy
// can tell reading from writing.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// lmtpFailure picks the reply for an LMTP DATA where some recipients
// failed: a temporary failure if any is temporary, else the first
// permanent one. Recipients that succeeded may see the message again when
// the client retries; the caller logs which they are.
func lmtpFailure(errs smtp.LMTPDataError, total int) error {
	rcpts := make([]string, 0, len(errs))
	for r := range errs {
		rcpts = append(rcpts, r)
	}
	sort.Strings(rcpts)
	pick := errs[rcpts[0]]
	for _, r := range rcpts {
		if errs[r].Temporary() {
			pick = errs[r]
			break
		}
	}
	nh := refused(pick)
	nh.Err = fmt.Errorf("lmtp: %d of %d recipients refused: %w", len(errs), total, errs)
	return nh
}

func (t *relayTx) Abort() {
	if t.c == nil {
		return
	}
	switch {
	case t.done:
		_ = t.c.Quit()
	case !t.inData:
		// Before DATA, RSET ends the next hop's transaction cleanly
		// (RFC 5321 §4.1.1.5). go-smtp greets again before the QUIT.
		if t.c.Reset() == nil {
			_ = t.c.Quit()
		}
	}
	// Closing without a final QUIT after an unfinished DATA makes the
	// next hop discard the message (RFC 5321 §4.1.1.4).
	_ = t.c.Close()
	t.c = nil
}

// mapErr turns a go-smtp client error into the reply for the client.
func mapErr(err error, r *Relay) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return refused(se)
	}
	return reply.NextHopFailed(fmt.Errorf("%s: %w", r, err))
}

func refused(se *smtp.SMTPError) *reply.NextHopError {
	enh := ""
	if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
		parts := make([]string, 3)
		for i, n := range se.EnhancedCode {
			parts[i] = strconv.Itoa(n)
		}
		enh = strings.Join(parts, ".")
	}
	return reply.NextHopRefused(se.Code, enh, se.Message)
}
