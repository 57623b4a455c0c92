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
	"sync"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// Relay hands messages to an SMTP (RFC 5321) or LMTP (RFC 2033) server
// with go-smtp's client. With Opts.IdleConnections it keeps up to that
// many connections open between messages (the pool in pool.go), as
// Postfix's smtp(8) caches its connections to a relayhost.
type Relay struct {
	Network, Addr string
	LMTP          bool
	Opts          Options

	pool pool
	// bufs keeps Data's buffers (*dataBufs): io.Copy would make one of
	// 32 KiB per message, and the content's writer another.
	bufs sync.Pool
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

// Begin sends MAIL FROM on a kept connection, or on a new one after
// EHLO/LHLO. A kept connection that turns out broken at that MAIL (the
// next hop closed it, or says 421) is closed and MAIL sent again on a
// new connection: nothing of the message has been accepted on either.
// Nothing is ever retried once the next hop accepted MAIL.
func (r *Relay) Begin(ctx context.Context, env Envelope) (Tx, error) {
	if c := r.pool.get(); c != nil {
		opts, dsn := mailOptions(c.Client, env)
		u, err := mailOptionsUTF8(c.Client, env, opts)
		if err != nil {
			(&relayTx{r: r, c: c}).Abort()
			return nil, err
		}
		err = c.Mail(env.Sender, opts)
		if err == nil {
			return &relayTx{r: r, c: c, dsn: dsn, utf8: u, queueID: env.QueueID}, nil
		}
		if !broken(err) {
			// The next hop's own refusal: the client gets it. Abort
			// sends RSET and keeps the connection, or closes it if
			// go-smtp's EHLO before the MAIL failed.
			(&relayTx{r: r, c: c}).Abort()
			return nil, mapErr(err, r)
		}
		// The newest kept connection is dead: the older ones most
		// likely too (the next hop restarted, or closes idle ones).
		_ = c.Close()
		r.pool.closeAll()
	}
	c, err := r.dial(ctx)
	if err != nil {
		return nil, err
	}
	tx := &relayTx{r: r, c: c, queueID: env.QueueID}
	if err := c.Hello(r.Opts.Hostname); err != nil {
		tx.Abort()
		return nil, mapErr(err, r)
	}
	var opts *smtp.MailOptions
	opts, tx.dsn = mailOptions(c.Client, env)
	if tx.utf8, err = mailOptionsUTF8(c.Client, env, opts); err != nil {
		tx.Abort()
		return nil, err
	}
	if err := c.Mail(env.Sender, opts); err != nil {
		tx.dead = broken(err)
		tx.Abort()
		return nil, mapErr(err, r)
	}
	return tx, nil
}

// mailOptions are MAIL's parameters for env on c, whose EHLO/LHLO is
// done; dsn reports whether the next hop advertised DSN. DSN parameters
// go only to a next hop that advertises DSN; to one that does not they
// are dropped, as Postfix's smtp(8) drops them (Postfix then sends a
// "relayed" notice itself where NOTIFY asked for SUCCESS; the edge has no
// queue to send one from).
func mailOptions(c *smtp.Client, env Envelope) (opts *smtp.MailOptions, dsn bool) {
	opts = &smtp.MailOptions{Size: env.Size}
	if env.Body8Bit {
		opts.Body = smtp.Body8BitMIME
	}
	dsn, _ = c.Extension("DSN")
	if dsn {
		opts.Return = smtp.DSNReturn(env.Return)
		if printableASCII(env.EnvelopeID) {
			opts.EnvelopeID = env.EnvelopeID
		}
	}
	return opts, dsn
}

// lineLimit is smtp_line_length_limit, or lmtp_line_length_limit for
// an LMTP next hop; 0: lines go as they are.
func (r *Relay) lineLimit() int {
	if r.LMTP {
		return r.Opts.LMTPLineLengthLimit
	}
	return r.Opts.LineLengthLimit
}

// hopConn is a connection to the next hop: go-smtp's client, and the
// connection under it, to which the content is written directly
// (content.go).
type hopConn struct {
	*smtp.Client
	conn net.Conn
}

// dial opens a connection and reads the greeting; EHLO/LHLO is the
// caller's.
func (r *Relay) dial(ctx context.Context) (*hopConn, error) {
	d := net.Dialer{Timeout: r.Opts.Timeout}
	conn, err := d.DialContext(ctx, r.Network, r.Addr)
	if err != nil {
		return nil, reply.NextHopUnavailable(fmt.Errorf("dial %s: %w", r, err))
	}
	if r.Opts.Timeout > 0 {
		conn = &writeDeadline{Conn: conn, timeout: r.Opts.Timeout}
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
	return &hopConn{Client: c, conn: conn}, nil
}

// writeDeadline bounds each write to the next hop by timeout: go-smtp
// sets deadlines for commands and replies, none while it writes the
// content, which streams while the client sends it (a next hop that
// stops reading would otherwise hold the session, and its client, for
// good).
type writeDeadline struct {
	net.Conn
	timeout time.Duration
}

func (w *writeDeadline) Write(p []byte) (int, error) {
	if err := w.Conn.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		return 0, err
	}
	return w.Conn.Write(p)
}

// Close closes the connections kept for later messages (with QUIT).
// Transactions in progress are not affected; their connections are
// closed when they end.
func (r *Relay) Close() error {
	r.pool.close()
	return nil
}

// broken reports whether err leaves the connection unusable: anything
// but a reply of the next hop, or its 421 (RFC 5321 §3.8: it is closing
// the channel).
func broken(err error) bool {
	var se *smtp.SMTPError
	return !errors.As(err, &se) || se.Code == 421
}

type relayTx struct {
	r       *Relay
	queueID string
	c       *hopConn
	rcpts   int
	// dsn: the next hop advertised DSN.
	dsn  bool
	utf8 smtputf8
	// inData: DATA was sent and the next hop's final reply to the
	// content is not in; ended: that reply came (the transaction is
	// over, RFC 5321 §4.1.1.4), whatever it was; dead: the connection
	// is not to be used again.
	inData, ended, dead bool
	// reply and replies are the next hop's replies to the content
	// (Report): an SMTP next hop's one, an LMTP one's per recipient.
	reply   string
	replies map[string]string
}

// Rcpt passes the DSN parameters on only to a next hop that advertised
// DSN.
func (t *relayTx) Rcpt(_ context.Context, addr string, dsn RecipientDSN) error {
	if t.utf8.mustRefuse([]byte(addr)) {
		return reply.NeedsSMTPUTF8("<"+addr+">", 553)
	}
	var opts *smtp.RcptOptions
	if t.dsn && !dsn.Empty() {
		opts = &smtp.RcptOptions{}
		for _, n := range dsn.Notify {
			opts.Notify = append(opts.Notify, smtp.DSNNotify(n))
		}
		opts.OriginalRecipientType, opts.OriginalRecipient = originalRecipient(dsn)
	}
	if err := t.c.Rcpt(addr, opts); err != nil {
		t.dead = t.dead || broken(err)
		return mapErr(err, t.r)
	}
	t.rcpts++
	return nil
}

// originalRecipient is ORCPT as go-smtp's client sends it: an rfc822
// address in printable ASCII, or a utf-8 one (RFC 6533, its \x{HEX}
// escapes undone). go-smtp sends no other address type, so any other
// ORCPT is dropped.
func originalRecipient(dsn RecipientDSN) (smtp.DSNAddressType, string) {
	switch {
	case dsn.Original == "":
	case strings.EqualFold(dsn.OriginalType, "rfc822") && printableASCII(dsn.Original):
		return smtp.DSNAddressTypeRFC822, dsn.Original
	case strings.EqualFold(dsn.OriginalType, "utf-8"):
		if a, ok := unescapeUTF8Addr(dsn.Original); ok {
			return smtp.DSNAddressTypeUTF8, a
		}
	}
	return "", ""
}

// unescapeUTF8Addr undoes the \x{HEX} escapes of an RFC 6533
// utf-8-addr-xtext; the result must be printable and valid UTF-8.
func unescapeUTF8Addr(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.HasPrefix(s[i:], `\x{`) {
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", false
			}
			n, err := strconv.ParseUint(s[i+3:i+end], 16, 32)
			if err != nil || !utf8.ValidRune(rune(n)) || n < 0x20 {
				return "", false
			}
			b.WriteRune(rune(n))
			i += end
			continue
		}
		if s[i] < 0x20 || s[i] >= 0x7f {
			return "", false
		}
		b.WriteByte(s[i])
	}
	return b.String(), true
}

// printableASCII reports whether s is printable US-ASCII, as go-smtp's
// client wants ENVID and an rfc822 ORCPT.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func (t *relayTx) Data(_ context.Context, msg io.Reader) error {
	defer t.Abort()
	msg, err := t.utf8.checkHeader(msg)
	if err != nil {
		return err
	}
	w, err := t.c.Data()
	if err != nil {
		// DATA refused: the transaction is still open (Abort sends RSET).
		t.dead = broken(err)
		return mapErr(err, t.r)
	}
	t.inData = true
	// Streamed, dot-stuffed, straight to the connection (content.go); a
	// failure to read msg is the edge's own (451 4.3.0), one to write
	// the next hop's.
	src := &readErr{r: msg}
	bufs := t.r.buffers()
	stuffed := newStuffer(t.c.conn, w, bufs.out)
	var out io.Writer = stuffed
	var fold *foldLines
	if limit := t.r.lineLimit(); limit > 0 {
		fold = &foldLines{w: stuffed, limit: limit}
		out = fold
	}
	_, err = io.CopyBuffer(out, src, bufs.in)
	if err == nil {
		err = stuffed.Close()
	}
	t.r.bufs.Put(bufs)
	if fold != nil && fold.broke && t.r.Opts.Logger != nil {
		// Postfix's smtp(8) logs this once per message.
		t.r.Opts.Logger.Info(fmt.Sprintf("%s: breaking line > %d bytes with <CR><LF>SPACE", t.queueID, fold.limit), "queue_id", t.queueID, "next_hop", t.r.String())
	}
	if err != nil {
		if src.err != nil {
			return fmt.Errorf("read message for %s: %w", t.r, src.err)
		}
		return reply.NextHopFailed(fmt.Errorf("send to %s: %w", t.r, err))
	}
	if err := t.closeData(w); err != nil {
		var lmtpErr smtp.LMTPDataError
		if errors.As(err, &lmtpErr) {
			t.inData, t.ended = false, true
			return lmtpFailure(lmtpErr, t.rcpts)
		}
		if !broken(err) {
			t.inData, t.ended = false, true
		}
		return mapErr(err, t.r)
	}
	t.inData, t.ended = false, true
	return nil
}

// closeData ends the content and keeps the next hop's replies for
// Report.
func (t *relayTx) closeData(w *smtp.DataCommand) error {
	if t.r.LMTP {
		resp, err := w.CloseWithLMTPResponse()
		t.replies = make(map[string]string, len(resp))
		for rcpt, r := range resp {
			t.replies[rcpt] = "250 " + r.StatusText
		}
		return err
	}
	resp, err := w.CloseWithResponse()
	if err == nil {
		t.reply = "250 " + resp.StatusText
	}
	return err
}

// copyBufSize is the size of Data's copy buffers, io.Copy's own, and of
// the content's write buffer: the next hop gets the content in writes of
// this size (go-smtp's writer would make them 4 KiB).
const copyBufSize = 32 << 10

// dataBufs are the buffers of one Data.
type dataBufs struct{ in, out []byte }

func (r *Relay) buffers() *dataBufs {
	if b, ok := r.bufs.Get().(*dataBufs); ok {
		return b
	}
	return &dataBufs{in: make([]byte, copyBufSize), out: make([]byte, 0, copyBufSize)}
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
	c := t.c
	t.c = nil
	switch {
	case t.dead || t.inData:
		// Closing without a final QUIT after an unfinished DATA makes
		// the next hop discard the message (RFC 5321 §4.1.1.4).
		_ = c.Close()
	case t.ended:
		// End of data ended the transaction at the next hop; the
		// connection is ready for the next MAIL as it is.
		t.r.pool.put(c, t.r.Opts)
	default:
		// Before DATA, RSET ends the next hop's transaction cleanly
		// (RFC 5321 §4.1.1.5). go-smtp sends EHLO again before the
		// next MAIL on this connection.
		if c.Reset() != nil {
			_ = c.Close()
			return
		}
		t.r.pool.put(c, t.r.Opts)
	}
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
