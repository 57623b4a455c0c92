package smtpd

import (
	"context"
	"io"
	"strconv"
	"strings"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// parseBDAT reads "count [LAST]" (RFC 3030 §2).
func parseBDAT(arg string) (n int64, last, ok bool) {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 || strings.TrimLeft(f[0], "0123456789") != "" {
		return 0, false, false
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, false, false
	}
	if len(f) == 2 {
		if !strings.EqualFold(f[1], "LAST") {
			return 0, false, false
		}
		last = true
	}
	return n, last, true
}

// bdat handles BDAT (RFC 3030): the chunk of exactly n octets that
// follows the command is read whatever the reply, so that the session
// stays in step with the client. As in Postfix 3.7: policy's DATA stage
// (smtpd_data_restrictions) is asked at the first chunk, END_OF_DATA
// after the last; after a refused chunk every chunk up to the last is
// discarded with 551; a chunk larger than message_size_limit is refused
// at once, a message whose chunks together pass it after its last chunk.
//
// The content goes as DATA's does (held in memory, or streamed to the
// next hop past smtpgate_memory_message_limit), with every bare CR or LF made a CRLF
// and a CRLF added at the end if missing: CHUNKING without BINARYMIME
// carries text lines, and normalised lines are what keeps the next hop
// from seeing a message end that the edge did not see. With
// smtpd_forbid_bare_newline = reject, a chunk with a bare CR or LF is
// refused instead (550, as Postfix), and the chunks after it discarded.
func (s *session) bdat(ctx context.Context, arg string) reply.Reply {
	n, last, ok := parseBDAT(arg)
	if !ok {
		s.log.Warn("malformed BDAT command", "command", "BDAT "+arg)
		return reply.BDATSyntax
	}
	if s.bdatFailed {
		return s.refuseChunk(n, last, reply.ChunkDiscarded(n))
	}
	switch {
	case s.tx == nil:
		return s.refuseChunk(n, last, reply.NeedRcpt)
	case len(s.tx.rcpts) == 0:
		return s.refuseChunk(n, last, reply.NoValidRcpts)
	}
	tx := s.tx
	if tx.chunks == nil {
		// The first chunk: what DATA asks before its 354.
		if !tx.discard {
			one := ""
			if len(tx.rcpts) == 1 {
				one = tx.rcpts[0]
			}
			if r, _, ok := s.askPolicy(ctx, policyv1.Stage_STAGE_DATA, s.txFacts(one), "<DATA>"); !ok {
				return s.refuseChunk(n, last, r)
			}
		}
		tx.body = newBody(s.l, s.srv.Memory, s.deliverer(ctx, tx))
		tx.chunks = &crlfLines{w: tx.body, limit: s.sizeLimit()}
	}
	if n > s.sizeLimit() {
		return s.refuseChunk(n, last, reply.ChunkTooBig)
	}
	if r, ok := s.readChunk(n, tx.chunks); !ok {
		return r
	}
	if last {
		if err := tx.chunks.Close(); err != nil {
			s.log.Error("message content could not be stored", "queue_id", tx.queueID, "err", err)
		}
	}
	if tx.chunks.bare != 0 && s.bareNewline() == BareNewlineReject {
		// As Postfix: the chunk with the bare newline is refused, the
		// chunks after it up to the last are discarded.
		r := s.refuseBareNewline(bareName(tx.chunks.bare), false)
		s.resetTx()
		s.bdatFailed = !last
		return r
	}
	if !last {
		return reply.ChunkOK(n)
	}
	if tx.chunks.bare != 0 {
		s.log.Info("bare newline in message content, normalised", "queue_id", tx.queueID)
	}
	r := s.endOfData(ctx, tx.chunks.tooBig)
	if r.Code == 250 {
		r = reply.QueuedBytes(tx.chunks.n, tx.queueID)
	}
	return r
}

// refuseChunk reads and drops the chunk, then gives r. The transaction
// ends; later chunks up to the last are discarded (Postfix's "551 5.0.0
// Discarded N bytes after earlier error").
func (s *session) refuseChunk(n int64, last bool, r reply.Reply) reply.Reply {
	if rr, ok := s.readChunk(n, io.Discard); !ok {
		return rr
	}
	s.resetTx()
	s.bdatFailed = !last
	return r
}

// readChunk copies exactly n octets of the client's to w, in pieces, with
// the read deadline renewed for each. A lost connection or a timeout ends
// the transaction (and removes its spool file) and the session.
func (s *session) readChunk(n int64, w io.Writer) (reply.Reply, bool) {
	if s.chunkBuf == nil {
		s.chunkBuf = make([]byte, 32<<10)
	}
	for n > 0 {
		s.touch()
		k := int(min(n, int64(len(s.chunkBuf))))
		got, err := io.ReadFull(s.wire.br, s.chunkBuf[:k])
		_, _ = w.Write(s.chunkBuf[:got])
		n -= int64(got)
		if err != nil {
			s.endedInContent(err, "BDAT")
			s.resetTx()
			if isTimeout(err) {
				return reply.Timeout(s.l.Hostname), false
			}
			s.log.Info("connection lost in BDAT", "err", err)
			return reply.Reply{Code: 421, Close: true, Lines: []string{s.l.Hostname + " Error: connection lost"}}, false
		}
	}
	return reply.Reply{}, true
}

// crlfLines writes BDAT content with every bare CR and bare LF made a
// CRLF, across chunk boundaries (a CR ending one chunk waits for the
// next). Past limit bytes it drops the rest and sets tooBig.
type crlfLines struct {
	w      io.Writer
	limit  int64
	n      int64 // bytes kept
	cr     bool  // a CR is held back
	last   byte  // the last byte kept
	tooBig bool
	bare   byte // the first bare line end seen, '\r' or '\n'; 0: none
	buf    []byte
}

func (c *crlfLines) Write(p []byte) (int, error) {
	for _, b := range p {
		if c.cr {
			c.cr = false
			c.put('\r', '\n')
			if b == '\n' {
				continue
			}
			c.sawBare('\r')
		}
		switch b {
		case '\r':
			c.cr = true
		case '\n':
			c.sawBare('\n')
			c.put('\r', '\n')
		default:
			c.put(b)
		}
	}
	c.flush()
	return len(p), nil
}

// Close ends the content: a held-back CR, and a CRLF if the last line
// has none.
func (c *crlfLines) Close() error {
	if c.cr {
		c.cr = false
		c.sawBare('\r')
		c.put('\r', '\n')
	}
	if c.n > 0 && c.last != '\n' {
		c.put('\r', '\n')
	}
	c.flush()
	return nil
}

func (c *crlfLines) sawBare(b byte) {
	if c.bare == 0 {
		c.bare = b
	}
}

func (c *crlfLines) put(b ...byte) {
	if c.tooBig || c.n+int64(len(b)) > c.limit {
		c.tooBig = true
		return
	}
	c.buf = append(c.buf, b...)
	c.n += int64(len(b))
	c.last = b[len(b)-1]
	if len(c.buf) >= 32<<10 {
		c.flush()
	}
}

func (c *crlfLines) flush() {
	if len(c.buf) > 0 {
		_, _ = c.w.Write(c.buf)
		c.buf = c.buf[:0]
	}
}
