package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"time"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// dataPiece is the most of one line of content held at a time: a longer
// line is read, checked and stored in pieces of this size, as Postfix's
// smtpd chops it into records of line_length_limit (2048) bytes and
// rebuilds it on delivery. A line may be as long as message_size_limit
// allows (RFC 5321 §4.5.3.1.6's 1000 octets are the next hop's concern:
// handoff folds longer lines for an SMTP or LMTP next hop, as Postfix's
// smtp_line_length_limit).
const dataPiece = 2048

// readData reads message content after the 354 until the end-of-data
// sequence <CRLF>.<CRLF> (RFC 5321 §4.1.1.4), removes dot-stuffing
// (§4.5.2), and writes the content to w with every line ended by CRLF,
// piece by piece: at most dataPiece bytes of a line are held at a time,
// however long the line.
//
// Only a "." line that ends in CRLF and follows a line that ended in CRLF
// (or starts the content) ends the message. A bare LF or a bare CR ends a
// content line, is normalised to CRLF and never ends the message, so that
// the "\n.\n", "\r\n.\n", "\n.\r\n" and "\r.\r\n" variants of SMTP
// smuggling stay inside the one message; since the next hop gets the
// content dot-stuffed again, it sees the same single message. That is
// smtpd_forbid_bare_newline = normalize; with reject, content after the
// first bare LF or CR is read to the end and dropped (bare says which it
// was, and the caller refuses the message and drops what w got); with no (Postfix's old
// behaviour), a bare LF also counts as CRLF for the end of the message.
//
// Content beyond limit bytes is read and dropped; tooBig reports it.
// size counts the bytes written to w. bare is 0, or '\n' or '\r' for the
// first line that ended in a bare LF or a bare CR. w's errors are not
// checked: a w that fails must keep the error itself (as body does) so
// that the stream stays in step. touch runs before each read from the
// connection (readDataLine).
func readData(br *bufio.Reader, w io.Writer, limit int64, mode BareNewline, touch func()) (size int64, tooBig bool, bare byte, err error) {
	return readDataPieces(br, w, limit, mode, touch, dataPiece)
}

// readDataPieces is readData with lines read in pieces of at most piece
// bytes: 3 or more, so that a "." line with its CRLF is one piece.
func readDataPieces(br *bufio.Reader, w io.Writer, limit int64, mode BareNewline, touch func(), piece int) (size int64, tooBig bool, bare byte, err error) {
	// prevEnd: the last line ended where a "." line can end the
	// message; the 354 reply counts as such a line end. start: the
	// next piece starts a line.
	prevEnd, start := true, true
	line := make([]byte, 0, piece)
	for {
		var whole bool
		line, whole, err = readDataLine(br, line[:0], piece, touch)
		if err != nil {
			return size, false, bare, err
		}
		body := line
		if whole {
			// line ends in "\r\n", "\n" or "\r" (a bare CR not
			// followed by LF).
			ending := "\n"
			body = line[:len(line)-1]
			switch {
			case bytes.HasSuffix(line, []byte("\r\n")):
				ending, body = "\r\n", line[:len(line)-2]
			case line[len(line)-1] == '\r':
				ending = "\r"
			}
			ends := ending == "\r\n" || (mode == BareNewlineNo && ending == "\n")
			if start && prevEnd && ends && len(body) == 1 && body[0] == '.' {
				return size, tooBig, bare, nil
			}
			prevEnd = ends
			if ending != "\r\n" && bare == 0 {
				bare = ending[0]
			}
		}
		first := start
		start = whole
		if bare != 0 && mode == BareNewlineReject {
			continue // refused: read to the end, keep nothing
		}
		if first && len(body) > 0 && body[0] == '.' {
			body = body[1:]
		}
		n := int64(len(body))
		if whole {
			n += 2
		}
		if tooBig || size+n > limit {
			tooBig = true
			continue
		}
		size += n
		if whole {
			body = append(body, '\r', '\n') // over the old ending: line's own array
		}
		_, _ = w.Write(body)
	}
}

// readDataLine appends the next line including its terminator to line:
// LF, or a CR that is not followed by LF; whole is true. A line longer
// than max comes in pieces of at most max bytes, whole false for all but
// the last; a piece never ends between a CR and the LF after it. touch,
// when not nil, runs before each read from the connection (it renews the
// read deadline), not for what is buffered: a deadline per line would
// cost a timer update per line.
func readDataLine(br *bufio.Reader, line []byte, max int, touch func()) (_ []byte, whole bool, _ error) {
	for {
		if br.Buffered() == 0 {
			if touch != nil {
				touch()
			}
			if _, err := br.Peek(1); err != nil {
				return nil, false, err
			}
		}
		buf, _ := br.Peek(br.Buffered())
		room := max - len(line)
		end := bytes.IndexByte(buf, '\n')
		scan := buf
		if end >= 0 {
			scan = buf[:end]
		}
		crLast := false
		if cr := bytes.IndexByte(scan, '\r'); cr >= 0 {
			switch {
			case cr+1 < len(buf) && buf[cr+1] == '\n':
				end = cr + 1
			case cr+1 < len(buf):
				end = cr // a bare CR ends the line
			default:
				end, crLast = -1, true
			}
		}
		if end >= 0 && end < room {
			line = append(line, buf[:end+1]...)
			_, _ = br.Discard(end + 1)
			return line, true, nil
		}
		if crLast && len(buf) <= room {
			// The CR is the last byte buffered: what follows decides.
			line = append(line, buf...)
			_, _ = br.Discard(len(buf))
			if touch != nil {
				touch()
			}
			next, err := br.Peek(1)
			if err != nil {
				return nil, false, err
			}
			if next[0] == '\n' {
				line = append(line, '\n')
				_, _ = br.Discard(1)
			}
			return line, true, nil
		}
		// No line end that fits: take what does, but not a CR whose LF
		// may come next.
		take := min(len(buf), room)
		if take > 0 && buf[take-1] == '\r' {
			take--
		}
		line = append(line, buf[:take]...)
		_, _ = br.Discard(take)
		if len(line) > 0 && (take == 0 || len(line) >= max) {
			return line, false, nil
		}
	}
}

// data handles DATA (RFC 5321 §4.1.1.4): policy before the 354, the
// content, policy at end of data, the hand-off, then the reply.
func (s *session) data(ctx context.Context, arg string) reply.Reply {
	switch {
	case s.tx == nil:
		return reply.NeedMail
	case s.tx.chunks != nil:
		return reply.DataAfterBDAT
	case len(s.tx.rcpts) == 0:
		return reply.NoValidRcpts
	case arg != "":
		return reply.Syntax("DATA")
	}
	one := ""
	if len(s.tx.rcpts) == 1 {
		one = s.tx.rcpts[0]
	}
	if !s.tx.discard {
		if r, _, ok := s.askPolicy(ctx, policyv1.Stage_STAGE_DATA, s.txFacts(one), "<DATA>"); !ok {
			return r
		}
	}
	s.send(reply.StartData)
	if err := s.flush(); err != nil {
		return reply.Reply{Close: true}
	}
	s.tx.body = newBody(s.l, s.srv.Memory, s.deliverer(ctx, s.tx))
	mode := s.bareNewline()
	s.wire.widen()
	_, tooBig, bare, err := readData(s.wire.br, s.tx.body, s.sizeLimit(), mode, s.touch)
	s.wire.narrow()
	if err != nil {
		s.endedInContent(err, "DATA")
		s.resetTx()
		if isTimeout(err) {
			return reply.Timeout(s.l.Hostname)
		}
		s.log.Info("connection lost in DATA", "err", err)
		return reply.Reply{Code: 421, Close: true, Lines: []string{s.l.Hostname + " Error: connection lost"}}
	}
	if bare != 0 {
		if mode == BareNewlineReject {
			// The content was read to <CR><LF>.<CR><LF>: nothing of it
			// is taken for commands, and nothing reaches the next hop.
			r := s.refuseBareNewline(bareName(bare), false)
			s.resetTx()
			return r
		}
		s.log.Info("bare newline in message content, normalised", "queue_id", s.tx.queueID)
	}
	return s.endOfData(ctx, tooBig)
}

// bareName names a bare line end for the reply: "LF" or "CR".
func bareName(b byte) string {
	if b == '\r' {
		return "CR"
	}
	return "LF"
}

// sizeLimit is message_size_limit; 0 means none.
func (s *session) sizeLimit() int64 {
	if s.l.MaxMessageSize <= 0 {
		return 1 << 62
	}
	return s.l.MaxMessageSize
}

// endOfData finishes a transaction whose content (DATA's, or BDAT's
// chunks) is in s.tx.body: policy at end of data, then the hand-off's
// end (the next hop has the content, or its start when it streamed, and
// now sees it end), then the reply. The transaction ends here whatever
// happens; a hand-off under way that is not delivered is abandoned.
func (s *session) endOfData(ctx context.Context, tooBig bool) reply.Reply {
	tx := s.tx
	defer s.resetTx()
	if tooBig {
		return reply.TooBig
	}
	one := ""
	if len(tx.rcpts) == 1 {
		one = tx.rcpts[0]
	}
	size := tx.body.Size()
	if !tx.discard {
		eod := s.txFacts(one)
		eod.Size = uint64(size)
		r, v, ok := s.askPolicy(ctx, policyv1.Stage_STAGE_END_OF_DATA, eod, "<END-OF-MESSAGE>")
		if !ok {
			return r
		}
		if len(v.GetPrepend()) > 0 {
			// access(5): PREPEND "cannot execute in the context of
			// smtpd_end_of_data_restrictions"; policy sends none there.
			s.log.WarnContext(ctx, "headers to prepend at end of data ignored", "queue_id", tx.queueID)
		}
	}
	if tx.discard { // before this stage, or by its verdict
		// access(5) DISCARD: "claim successful delivery and silently
		// discard the message"; the reply is the one a delivery gets.
		s.log.InfoContext(ctx, "discarded", "queue_id", tx.queueID, "from", tx.sender, "nrcpt", len(tx.rcpts), "size", size)
		return reply.Queued(tx.queueID)
	}
	err := tx.body.Deliver()
	h := &tx.handing
	s.srv.Metrics.handedOff(s.l.NextHop.String(), h.end.Sub(h.start), err)
	total := int64(len(h.head)) + size
	s.traceHandoff(ctx, tx.queueID, total, h.start, h.end, err)
	s.logHandedOff(tx, h.head, total, h.start, h.end, err)
	if err != nil {
		if reply.IsRefusal(err) {
			s.log.InfoContext(ctx, "next hop refused the message", "queue_id", tx.queueID, "next_hop", s.l.NextHop.String(), "err", err)
		} else {
			s.log.ErrorContext(ctx, "hand-off failed", "queue_id", tx.queueID, "next_hop", s.l.NextHop.String(), "err", err)
		}
		return reply.FromHandoff(err)
	}
	if s.log.Enabled(ctx, slog.LevelInfo) {
		attrs := make([]slog.Attr, 0, 10)
		attrs = append(attrs, slog.String("queue_id", tx.queueID), slog.String("client", s.namaddr()))
		if s.sasl.user != "" {
			// As Postfix logs them on the queue id's client= line.
			attrs = append(attrs, slog.String("sasl_method", s.sasl.mech), slog.String("sasl_username", s.sasl.user))
		}
		attrs = append(attrs, slog.String("from", tx.sender), slog.Int("nrcpt", len(tx.rcpts)), slog.Int64("size", total),
			slog.Bool("streamed", tx.body.Streamed()), slog.String("next_hop", s.l.NextHop.String()))
		s.log.LogAttrs(ctx, slog.LevelInfo, "accepted", attrs...)
	}
	return reply.Queued(tx.queueID)
}

// handing is what the hand-off of a transaction's content did, for the
// logs, the metrics and the trace once it is over.
type handing struct {
	// head is what the edge put before the client's content: policy's
	// headers, Received, a submission's missing Message-Id and Date.
	head       []byte
	start, end time.Time
}

// deliverer returns what hands tx's content to the next hop (body calls
// it at the end of data, or when the content outgrows memory and
// streams): the edge's header fields, made from the session's state
// there and then, first, then the client's content, sent by what it
// returns (on a goroutine of its own when the content streams; it
// writes tx.handing, read after body.Deliver). Nil for a transaction
// whose content goes nowhere (DISCARD).
func (s *session) deliverer(ctx context.Context, tx *transaction) deliverFunc {
	if tx.discard || tx.hand == nil {
		return nil
	}
	return func(first []byte) func(io.Reader) error {
		var added []string
		if s.l.Submission {
			// Postfix's cleanup adds a missing Message-Id and Date to
			// mail from its local clients; smtpgate to what comes
			// through a submission listener, never to what comes from
			// the Internet. The header is looked at in what memory
			// held of the content (smtpgate_memory_message_limit).
			added = missingHeaders(headerNames(first), tx.queueID, s.l.Hostname, tx.started)
			if len(added) > 0 {
				s.log.DebugContext(ctx, "added missing headers", "queue_id", tx.queueID, "headers", strings.TrimSpace(strings.ReplaceAll(strings.Join(added, ""), "\r\n", "; ")))
			}
		}
		h := &tx.handing
		h.head = s.assemble(tx, append(append([]*policyv1.Header{}, s.verdicts.prepend...), tx.prepend...), added)
		hand, head := tx.hand, h.head
		ctx := context.WithoutCancel(ctx)
		return func(rest io.Reader) error {
			h.start = time.Now()
			err := hand.Data(ctx, io.MultiReader(bytes.NewReader(head), bytes.NewReader(first), rest))
			h.end = time.Now()
			return err
		}
	}
}
