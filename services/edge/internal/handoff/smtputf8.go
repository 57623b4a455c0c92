package handoff

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-smtp"

	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// SMTPUTF8 to a relay next hop, as Postfix's smtp(8) does it
// (smtp_proto.c, DELIVERY_REQUIRES_SMTPUTF8): a message whose sender
// asked for SMTPUTF8 is sent with SMTPUTF8 to a next hop that offers it.
// To one that does not, it goes without SMTPUTF8 as long as nothing in it
// needs it; it needs it when it has a non-ASCII envelope sender,
// recipient or header. Postfix then gives up on the message ("5.6.7
// message requires SMTPUTF8, but no server was found that supports
// SMTPUTF8") and bounces it; the edge has no queue, and refuses what
// needs SMTPUTF8 to the client instead, before any 250: the sender or a
// recipient at its RCPT TO, a header at the end of data. Mail without
// SMTPUTF8 is passed on as it came (8-bit headers included), as Postfix
// does with its default smtputf8_autodetect_classes.

// smtputf8 is what a relay transaction knows about SMTPUTF8.
type smtputf8 struct {
	// requested: the client's MAIL FROM had SMTPUTF8; offered: the next
	// hop advertised it.
	requested, offered bool
}

// mustRefuse reports whether s, an address or header text of an SMTPUTF8
// message, cannot go to this next hop.
func (u smtputf8) mustRefuse(s []byte) bool {
	return u.requested && !u.offered && !ascii(s)
}

func ascii(s []byte) bool {
	for _, c := range s {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// mailOptionsUTF8 are the SMTPUTF8 parts of MAIL FROM for env on c (its
// EHLO done): SMTPUTF8 is asked for only where it is offered, and a
// non-ASCII sender that needs it is refused.
func mailOptionsUTF8(c *smtp.Client, env Envelope, opts *smtp.MailOptions) (smtputf8, error) {
	offered, _ := c.Extension("SMTPUTF8")
	u := smtputf8{requested: env.SMTPUTF8, offered: offered}
	opts.UTF8 = u.requested && u.offered
	if u.mustRefuse([]byte(env.Sender)) {
		return u, reply.NeedsSMTPUTF8("<"+env.Sender+">", 553)
	}
	return u, nil
}

// headerLimit is how much of the header is read to find non-ASCII text
// (Postfix's header_size_limit).
const headerLimit = 102400

// checkHeader reads the header of msg (to its empty line, or the first
// line that is not a header field, or headerLimit bytes) when the message
// must not have a non-ASCII header for this next hop, and returns the
// message to send (the header read, then the rest).
func (u smtputf8) checkHeader(msg io.Reader) (io.Reader, error) {
	if !u.requested || u.offered {
		return msg, nil
	}
	br := bufio.NewReader(msg)
	var head bytes.Buffer
	for head.Len() < headerLimit {
		line, err := br.ReadSlice('\n')
		head.Write(line)
		if !ascii(line) {
			return nil, reply.NeedsSMTPUTF8("", 550)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read message header: %w", err)
		}
		if bytes.Equal(line, []byte("\r\n")) || line[0] != ' ' && line[0] != '\t' && bytes.IndexByte(line, ':') < 0 {
			break
		}
	}
	return io.MultiReader(&head, br), nil
}
