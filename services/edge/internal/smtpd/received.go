package smtpd

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

// assemble returns the headers the edge prepends to the content: any
// policy headers, the Received header (RFC 5321 §4.4, with the protocol
// names of RFC 3848), and after it the added lines (each ending in CRLF).
func (s *session) assemble(tx *transaction, headers []*policyv1.Header, added []string) []byte {
	b := make([]byte, 0, 256)
	for _, h := range headers {
		b = fmt.Appendf(b, "%s: %s\r\n", h.GetName(), strings.NewReplacer("\r", " ", "\n", " ").Replace(h.GetValue()))
	}
	b = append(b, "Received: from "...)
	b = appendHeaderSafe(b, s.helo.name)
	b = append(b, " ("...)
	b = appendHeaderSafe(b, s.name())
	b = append(b, " ["...)
	b = append(b, s.client.addr...)
	b = append(b, "])\r\n"...)
	if st := s.tls.state; st != nil {
		b = fmt.Appendf(b, "\t(using %s with cipher %s (%d/%d bits))\r\n", tlsVersion(st.Version), tls.CipherSuiteName(st.CipherSuite), cipherBits(st.CipherSuite), cipherBits(st.CipherSuite))
	}
	b = append(b, "\tby "...)
	b = append(b, s.l.Hostname...)
	b = append(b, " (smtpgate) with "...)
	// The protocol names of RFC 3848.
	if s.helo.esmtp {
		b = append(b, "ESMTP"...)
		if s.tls.state != nil {
			b = append(b, 'S')
		}
		if s.sasl.user != "" {
			b = append(b, 'A')
		}
	} else {
		b = append(b, "SMTP"...)
	}
	b = append(b, " id "...)
	b = append(b, tx.queueID...)
	if len(tx.rcpts) == 1 {
		b = append(b, "\r\n\tfor <"...)
		b = appendHeaderSafe(b, tx.rcpts[0])
		b = append(b, '>')
	}
	b = append(b, "; "...)
	b = time.Now().AppendFormat(b, "Mon, 2 Jan 2006 15:04:05 -0700 (MST)")
	b = append(b, "\r\n"...)
	for _, a := range added {
		b = append(b, a...)
	}
	return b
}

// appendHeaderSafe appends s to b with what could break the header
// (control characters, parentheses) made '?'.
func appendHeaderSafe(b []byte, s string) []byte {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '(' || r == ')' {
			r = '?'
		}
		b = utf8.AppendRune(b, r)
	}
	return b
}
