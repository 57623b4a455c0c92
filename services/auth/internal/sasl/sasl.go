// Package sasl implements the server side of SASL mechanisms as small
// state machines that the gRPC stream of smtpgate.auth.v1 drives: PLAIN
// (RFC 4616), LOGIN (draft-murchison-sasl-login), CRAM-MD5 (RFC 2195) and
// SCRAM-SHA-256 (RFC 7677). Client data arrives already base64-decoded.
//
// Trust: everything the client sends is hostile: a response that does not
// parse ends the exchange with ErrMalformed, a wrong password and an
// unknown user end it alike with ErrFailed, and the package never logs
// client data. It trusts the Verifier and the stored credentials it is
// given (the operator's password file).
package sasl

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/xdg-go/scram"
	"strings"
	"time"
)

// Errors an exchange ends with.
var (
	// ErrMalformed: the client's data does not parse (501 5.5.2).
	ErrMalformed = errors.New("malformed SASL response")
	// ErrFailed: wrong credentials or unknown user, never told apart
	// (535 5.7.8).
	ErrFailed = errors.New("authentication failed")
)

// Verifier checks a user name and password. A non-nil error means the
// check could not be made (a temporary failure), not a wrong password.
type Verifier interface {
	Verify(ctx context.Context, user string, password []byte) (bool, error)
}

// Exchange is one server-side SASL exchange.
type Exchange interface {
	// Next takes the client's next response (the initial response first,
	// when the client sent one) and returns the next challenge, or done.
	// When done, err is nil on success, or ErrMalformed, ErrFailed or a
	// temporary failure.
	Next(ctx context.Context, response []byte) (challenge []byte, done bool, err error)
	// Username is the authenticated (or attempted) user name.
	Username() string
}

// Flags are the security properties of a mechanism, as Postfix's
// smtpd_sasl_security_options speak of them.
type Flags uint8

// The properties.
const (
	// Plaintext: the password crosses the wire (noplaintext removes it).
	Plaintext Flags = 1 << iota
	// Anonymous: no credentials (noanonymous removes it).
	Anonymous
	// Dictionary: open to passive dictionary attack (nodictionary).
	Dictionary
	// Active: open to active, non-dictionary attack (noactive).
	Active
	// MutualAuth: the server proves itself too (required by mutual_auth).
	MutualAuth
	// ForwardSecrecy: required by forward_secrecy.
	ForwardSecrecy
)

// Secrets gives challenge-response mechanisms what they compute with. A
// user the mechanism cannot serve (unknown, or stored in a form it cannot
// use) is reported as ok == false, and the exchange fails exactly as with a
// wrong password. A non-nil error is a temporary failure.
type Secrets interface {
	// CRAMMD5 returns HMAC-MD5(password, challenge) for user.
	CRAMMD5(ctx context.Context, user string, challenge []byte) (digest []byte, ok bool, err error)
}

// Backend is what the mechanisms check credentials against.
type Backend interface {
	Verifier
	Secrets
}

// Mechanism describes one mechanism.
type Mechanism struct {
	Name  string
	Flags Flags
	// Plus marks a channel-binding (-PLUS) mechanism: offered only where
	// the connection has a channel binding.
	Plus  bool
	start func(b Backend, p Params) Exchange
}

// Params are what an exchange starts with besides the backend.
type Params struct {
	// Hostname goes into challenges that name the server.
	Hostname string
	// ChannelBinding is the TLS channel binding of the connection (zero
	// when there is none), for SCRAM.
	ChannelBinding scram.ChannelBinding
	// nonce replaces the server nonce generator (RFC test vectors).
	nonce scram.NonceGeneratorFcn
}

// Mechanisms lists the known mechanisms by name. SCRAM-SHA-1 and the
// -PLUS variants are known, to be named in smtpgate_sasl_mechanisms; none
// is offered by default.
func Mechanisms() map[string]Mechanism {
	scramMech := func(name, hash string, plus bool) Mechanism {
		return Mechanism{Name: name, Flags: MutualAuth, Plus: plus, start: func(b Backend, p Params) Exchange {
			return &scramSHA256{b: b, hash: hash, plus: plus, cb: p.ChannelBinding, nonce: p.nonce}
		}}
	}
	return map[string]Mechanism{
		"PLAIN":              {Name: "PLAIN", Flags: Plaintext, start: func(b Backend, _ Params) Exchange { return &plain{v: b} }},
		"LOGIN":              {Name: "LOGIN", Flags: Plaintext, start: func(b Backend, _ Params) Exchange { return &login{v: b} }},
		"CRAM-MD5":           {Name: "CRAM-MD5", Flags: Dictionary, start: func(b Backend, p Params) Exchange { return &cramMD5{b: b, hostname: p.Hostname} }},
		"SCRAM-SHA-256":      scramMech("SCRAM-SHA-256", "SHA-256", false),
		"SCRAM-SHA-256-PLUS": scramMech("SCRAM-SHA-256-PLUS", "SHA-256", true),
		"SCRAM-SHA-1":        scramMech("SCRAM-SHA-1", "SHA-1", false),
		"SCRAM-SHA-1-PLUS":   scramMech("SCRAM-SHA-1-PLUS", "SHA-1", true),
	}
}

// Start begins an exchange of m; hostname goes into challenges that name
// the server.
func (m Mechanism) Start(b Backend, hostname string) Exchange {
	return m.start(b, Params{Hostname: hostname})
}

// StartWith begins an exchange of m with p.
func (m Mechanism) StartWith(b Backend, p Params) Exchange { return m.start(b, p) }

// SecurityOptions is a parsed smtpd_sasl_security_options value.
type SecurityOptions struct {
	forbid  Flags
	require Flags
}

// ParseSecurityOptions reads a Postfix security options list:
// noanonymous, noplaintext, noactive, nodictionary, mutual_auth,
// forward_secrecy (postconf(5) smtpd_sasl_security_options).
func ParseSecurityOptions(words []string) (SecurityOptions, error) {
	var o SecurityOptions
	for _, w := range words {
		switch strings.ToLower(w) {
		case "noanonymous":
			o.forbid |= Anonymous
		case "noplaintext":
			o.forbid |= Plaintext
		case "nodictionary":
			o.forbid |= Dictionary
		case "noactive":
			o.forbid |= Active
		case "mutual_auth":
			o.require |= MutualAuth
		case "forward_secrecy":
			o.require |= ForwardSecrecy
		default:
			return SecurityOptions{}, fmt.Errorf("unknown SASL security option %q", w)
		}
	}
	return o, nil
}

// Allows reports whether m passes the options.
func (o SecurityOptions) Allows(m Mechanism) bool {
	return m.Flags&o.forbid == 0 && m.Flags&o.require == o.require
}

// verify runs v and maps its answer to the exchange's end.
func verify(ctx context.Context, v Verifier, user string, password []byte) error {
	ok, err := v.Verify(ctx, user, password)
	if err != nil {
		return fmt.Errorf("verify %s: %w", user, err)
	}
	if !ok {
		return ErrFailed
	}
	return nil
}

// plain is RFC 4616: message = [authzid] NUL authcid NUL passwd.
type plain struct {
	v       Verifier
	started bool
	user    string
}

func (p *plain) Username() string { return p.user }

func (p *plain) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	if resp == nil && !p.started {
		// No initial response: ask for it with an empty challenge.
		p.started = true
		return []byte{}, false, nil
	}
	parts := strings.Split(string(resp), "\x00")
	if len(parts) != 3 || parts[1] == "" {
		return nil, true, ErrMalformed
	}
	authz, authc, pass := parts[0], parts[1], parts[2]
	p.user = authc
	if authz != "" && authz != authc {
		// Acting as another user is not supported (RFC 4616 §2).
		return nil, true, ErrFailed
	}
	return nil, true, verify(ctx, p.v, authc, []byte(pass))
}

// login is the LOGIN mechanism: "Username:" then "Password:" challenges;
// an initial response, when sent, is the user name.
type login struct {
	v    Verifier
	step int
	user string
}

func (l *login) Username() string { return l.user }

func (l *login) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		if len(resp) == 0 || strings.ContainsAny(string(resp), "\x00\r\n") {
			return nil, true, ErrMalformed
		}
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	default:
		if strings.ContainsAny(string(resp), "\x00") {
			return nil, true, ErrMalformed
		}
		return nil, true, verify(ctx, l.v, l.user, resp)
	}
}

// cramMD5 is RFC 2195: the server sends "<unique@hostname>", the client
// answers "user SP hex(HMAC-MD5(password, challenge))".
type cramMD5 struct {
	b         Backend
	hostname  string
	challenge []byte
	user      string
}

func (c *cramMD5) Username() string { return c.user }

func (c *cramMD5) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	if c.challenge == nil {
		if resp != nil {
			// RFC 2195 has no initial response.
			return nil, true, ErrMalformed
		}
		var r [8]byte
		if _, err := rand.Read(r[:]); err != nil {
			return nil, true, fmt.Errorf("challenge: %w", err)
		}
		c.challenge = fmt.Appendf(nil, "<%d.%d@%s>", binary.BigEndian.Uint64(r[:])>>1, time.Now().Unix(), c.hostname)
		return c.challenge, false, nil
	}
	i := bytes.LastIndexByte(resp, ' ')
	if i <= 0 || len(resp)-i-1 != 2*md5.Size {
		return nil, true, ErrMalformed
	}
	got, err := hex.DecodeString(strings.ToLower(string(resp[i+1:])))
	if err != nil {
		return nil, true, ErrMalformed
	}
	c.user = string(resp[:i])
	want, ok, err := c.b.CRAMMD5(ctx, c.user, c.challenge)
	if err != nil {
		return nil, true, fmt.Errorf("cram-md5 %s: %w", c.user, err)
	}
	if !ok || !hmac.Equal(got, want) {
		return nil, true, ErrFailed
	}
	return nil, true, nil
}
