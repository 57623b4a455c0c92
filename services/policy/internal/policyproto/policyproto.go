// Package policyproto reads and writes Postfix's SMTP access policy
// delegation protocol (SMTPD_POLICY_README): a request is "name=value"
// lines ended by an empty line, a reply is "action=..." and an empty line.
//
// The peer is a Postfix smtpd (or any client) on a connection the
// operator chose to open; its attribute values come from SMTP clients and
// are untrusted. Every request is bounded (line length, attribute count)
// and a malformed one is an error: the caller closes the connection
// without answering, which Postfix treats as a failed policy service.
package policyproto

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits on one request.
const (
	MaxLine       = 8192
	MaxAttributes = 256
)

// ErrMalformed is wrapped by the errors of Read for bad input.
var ErrMalformed = errors.New("malformed policy request")

// Request is one request's attributes. A repeated name keeps its last
// value; names are compared as sent (Postfix sends them in lower case).
type Request map[string]string

// Read reads one request. It returns io.EOF when the peer closed the
// connection cleanly between requests.
func Read(r *bufio.Reader) (Request, error) {
	req := Request{}
	for n := 0; ; n++ {
		line, err := readLine(r)
		if err != nil {
			if errors.Is(err, io.EOF) && n == 0 {
				return nil, io.EOF
			}
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%w: connection closed inside a request", ErrMalformed)
			}
			return nil, err
		}
		if line == "" {
			if len(req) == 0 {
				return nil, fmt.Errorf("%w: empty request", ErrMalformed)
			}
			if req["request"] != "smtpd_access_policy" {
				return nil, fmt.Errorf("%w: request=%q, want smtpd_access_policy", ErrMalformed, req["request"])
			}
			return req, nil
		}
		if n >= MaxAttributes {
			return nil, fmt.Errorf("%w: more than %d attributes", ErrMalformed, MaxAttributes)
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("%w: line %q is not name=value", ErrMalformed, clip(line))
		}
		if strings.ContainsRune(line, 0) {
			return nil, fmt.Errorf("%w: NUL in attribute %q", ErrMalformed, clip(name))
		}
		req[name] = value
	}
}

// readLine reads one LF-terminated line of at most MaxLine bytes; a CR
// before the LF is dropped.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > MaxLine {
			return "", fmt.Errorf("%w: line longer than %d bytes", ErrMalformed, MaxLine)
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Write writes the reply "action=ACTION" and the empty line. The action
// must be one line.
func Write(w io.Writer, action string) error {
	if strings.ContainsAny(action, "\r\n\x00") {
		return fmt.Errorf("policy reply action %q: control characters", clip(action))
	}
	_, err := io.WriteString(w, "action="+action+"\n\n")
	return err
}
