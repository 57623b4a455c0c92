package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/smtpgate/smtpgate/services/auth/internal/dovecotclient"
	"github.com/smtpgate/smtpgate/services/auth/internal/sasl"
)

// This file is smtpd_sasl_type = dovecot: a listener's SASL exchanges are
// relayed to Dovecot's auth-client socket, which offers the mechanisms and
// gives the verdicts, and smtpgate's throttle stands in front of it as in
// front of its own users. The user of each exchange is read from the
// client's data before the credentials go to Dovecot, so that a locked
// client, network or user is refused without Dovecot seeing a password.

// relayable are the mechanisms smtpgate relays to Dovecot: those whose
// user name it can read from the client's data. The -PLUS ones need a
// channel binding the 2.3 protocol cannot carry.
var relayable = map[string]bool{"PLAIN": true, "LOGIN": true, "CRAM-MD5": true, "SCRAM-SHA-1": true, "SCRAM-SHA-256": true}

// session is what a Dovecot request says about the SMTP connection.
type session struct {
	client, server         string // IP addresses
	clientPort, serverPort int
	tls                    bool
}

// offeredBy returns the mechanisms listener l offers in the session's TLS
// state: for a Dovecot listener, those of Dovecot's (with Dovecot's
// flags, as Postfix takes them) that smtpgate can relay and the security
// options allow; otherwise smtpgate's own. When Dovecot cannot be
// reached, the list of its last handshake is used, so that AUTH stays
// advertised and is answered 454; with none, the error is returned.
func (a *authority) offeredBy(ctx context.Context, l listener, tls, binding bool) ([]sasl.Mechanism, error) {
	if l.dovecot == "" {
		return l.offeredWith(tls, binding), nil
	}
	ms, err := a.dovecot[l.dovecot].Mechanisms(ctx)
	if err != nil {
		if len(ms) == 0 {
			return nil, fmt.Errorf("dovecot mechanisms: %w", err)
		}
		a.log.WarnContext(ctx, "Dovecot unreachable; offering the mechanisms of its last handshake", "err", err)
	}
	opts := l.plain
	if tls {
		opts = l.tls
	}
	known := sasl.Mechanisms()
	var out []sasl.Mechanism
	for _, dm := range ms {
		m, ok := known[dm.Name]
		if !ok || !relayable[dm.Name] {
			continue
		}
		m.Flags = dm.Flags
		if opts.Allows(m) {
			out = append(out, m)
		}
	}
	return out, nil
}

// dovecotErrors sums the requests to Dovecot that got no answer, over
// its sockets.
func (a *authority) dovecotErrors() uint64 {
	var n uint64
	for _, c := range a.dovecot {
		n += c.Errors()
	}
	if a.userdb != nil {
		n += a.userdb.Errors()
	}
	return n
}

// relay is one SASL exchange relayed to Dovecot. It implements
// sasl.Exchange under an attempt, whose bookkeeping (the throttle's
// reservation, failure counts and delays) wraps it as it wraps
// smtpgate's own mechanisms.
type relay struct {
	at      *attempt
	client  *dovecotclient.Client
	req     dovecotclient.Request
	x       *dovecotclient.Exchange
	started bool
	// responses counts the client's non-empty-step answers; user is the
	// user name read from them (then Dovecot's, after OK).
	responses int
	user      string
	admitted  bool
}

// errDovecotTemp is Dovecot's own temporary failure (FAIL with
// code=temp_fail): 454, like an unreachable Dovecot.
var errDovecotTemp = errors.New("dovecot could not check the credentials (temporary failure)")

func (r *relay) Username() string { return r.user }

// Next implements sasl.Exchange.
func (r *relay) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	if resp != nil {
		r.responses++
		user, creds, err := readUser(r.req.Mechanism, r.responses, resp)
		if err != nil {
			return nil, true, err
		}
		if user != "" {
			r.user = user
		}
		if creds && !r.admitted {
			if err := r.at.admit(ctx, r.user); err != nil {
				return nil, true, err
			}
			r.admitted = true
		}
	}
	if r.req.Mechanism == "LOGIN" && !r.started {
		return r.login(ctx, resp)
	}
	var rep dovecotclient.Reply
	var err error
	if !r.started {
		r.started = true
		req := r.req
		req.Response, req.HasResponse = resp, resp != nil
		r.x, rep, err = r.client.Start(ctx, req)
	} else {
		rep, err = r.x.Continue(ctx, resp)
	}
	return r.answer(rep, err)
}

// login asks for LOGIN's user name and password itself, with Dovecot's
// prompts, and contacts Dovecot only with both, after the throttle
// admitted them: a locked-out client never reaches Dovecot (whose
// penalty would hold it there first). Dovecot gets the user name as the
// initial response, as from Postfix, and the password in its CONT.
func (r *relay) login(ctx context.Context, resp []byte) ([]byte, bool, error) {
	switch r.responses {
	case 0:
		return []byte("Username:"), false, nil
	case 1:
		return []byte("Password:"), false, nil
	}
	r.started = true
	req := r.req
	req.Response, req.HasResponse = []byte(r.user), true
	x, rep, err := r.client.Start(ctx, req)
	if err != nil || rep.Result != dovecotclient.Continue {
		return r.answer(rep, err)
	}
	r.x = x
	return r.answer(x.Continue(ctx, resp))
}

// answer turns Dovecot's reply into the exchange's next step.
func (r *relay) answer(rep dovecotclient.Reply, err error) ([]byte, bool, error) {
	if err != nil {
		return nil, true, fmt.Errorf("dovecot: %w", err)
	}
	switch {
	case rep.Result == dovecotclient.Continue:
		return rep.Challenge, false, nil
	case rep.Result == dovecotclient.OK:
		r.user = rep.User
		return nil, true, nil
	case rep.Temp:
		return nil, true, errDovecotTemp
	}
	return nil, true, sasl.ErrFailed
}

// End forgets the exchange at Dovecot when it is abandoned.
func (r *relay) End(context.Context) {
	if r.x != nil {
		r.x.Close()
	}
}

// readUser reads the user name from the n-th client answer (1-based,
// the initial response included) of mech, and whether that answer
// carries the credentials, which the throttle must admit first. Data
// that cannot be what the mechanism wants is ErrMalformed, and never
// reaches Dovecot.
func readUser(mech string, n int, resp []byte) (user string, creds bool, err error) {
	switch mech {
	case "PLAIN":
		// [authzid] NUL authcid NUL passwd
		parts := bytes.Split(resp, []byte{0})
		if len(parts) != 3 || len(parts[1]) == 0 {
			return "", false, sasl.ErrMalformed
		}
		return string(parts[1]), true, nil
	case "LOGIN":
		// The user name, then the password.
		if n == 1 {
			if len(resp) == 0 || bytes.ContainsAny(resp, "\x00\r\n") {
				return "", false, sasl.ErrMalformed
			}
			return string(resp), false, nil
		}
		return "", n == 2, nil
	case "CRAM-MD5":
		// user SP digest
		i := bytes.LastIndexByte(resp, ' ')
		if n != 1 || i <= 0 {
			return "", false, sasl.ErrMalformed
		}
		return string(resp[:i]), true, nil
	case "SCRAM-SHA-1", "SCRAM-SHA-256":
		if n > 1 {
			return "", false, nil
		}
		// client-first: gs2-header "n=" saslname ",r=" nonce ...
		f := strings.Split(string(resp), ",")
		if len(f) < 4 || !strings.HasPrefix(f[2], "n=") || f[2] == "n=" {
			return "", false, sasl.ErrMalformed
		}
		return strings.NewReplacer("=2C", ",", "=3D", "=").Replace(f[2][2:]), true, nil
	}
	return "", false, fmt.Errorf("mechanism %s is not relayed: %w", mech, sasl.ErrMalformed)
}
