package smtpd

import (
	"bufio"
	"bytes"
	"io"
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
