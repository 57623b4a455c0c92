package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/xdg-go/scram"

	"github.com/smtpgate/smtpgate/services/auth/internal/authcache"
	"github.com/smtpgate/smtpgate/services/auth/internal/dovecotclient"
	"github.com/smtpgate/smtpgate/services/auth/internal/passwdfile"
	"github.com/smtpgate/smtpgate/services/auth/internal/sasl"
	"github.com/smtpgate/smtpgate/services/auth/internal/scheme"
	"github.com/smtpgate/smtpgate/services/auth/internal/throttle"
)

// authority is the domain of smtpgate-auth: it checks credentials against
// the passwd-file under the throttle and says which mechanisms a listener
// offers. It knows nothing of gRPC (handler.go speaks that) and opens
// nothing: the process (Server) owns the limiter it uses.
type authority struct {
	log       *slog.Logger
	hostname  string // myhostname, the SASL server name
	users     *passwdfile.File
	listeners map[string]listener
	// dummy is verified for unknown users, so that they cost as much time
	// as a wrong password.
	dummy scheme.Stored
	// secret keys the salts SCRAM uses for {PLAIN} users and the fake
	// credentials it shows for users it cannot serve.
	secret []byte
	// limiter throttles failed authentications.
	limiter *throttle.Limiter
	// cache remembers successful password verifications (nil: off).
	cache *authcache.Cache
	// dovecot are the clients of the Dovecot auth-client sockets of the
	// smtpd_sasl_type = dovecot listeners, by socket; userdb the client of
	// smtpgate_dovecot_userdb_path (nil: none).
	dovecot map[string]*dovecotclient.Client
	userdb  *dovecotclient.Client
	metrics *metrics
	// sleep holds back the answer to a failure; tests replace it.
	sleep func(context.Context, time.Duration) error
}

// listener is one listener's compiled SASL settings.
type listener struct {
	mechanisms []sasl.Mechanism // in configured order
	plain      sasl.SecurityOptions
	tls        sasl.SecurityOptions
	// dovecot is Dovecot's auth-client socket (inet:host:port or
	// unix:/path) when smtpd_sasl_type = dovecot; "": smtpgate's own
	// users check the passwords.
	dovecot string
}

// lookup finds user in the passwd-file; a failed reload is logged and the
// previous users are served.
func (a *authority) lookup(ctx context.Context, user string) (scheme.Stored, bool) {
	if a.users == nil {
		return scheme.Stored{}, false
	}
	st, ok, reloadErr := a.users.Lookup(user)
	if reloadErr != nil {
		a.log.WarnContext(ctx, "passwd-file reload failed; serving the previous users", "err", reloadErr)
	}
	return st, ok
}

// findUser returns the name under which user exists: in Dovecot's
// userdb when smtpgate_dovecot_userdb_path is set (Dovecot applies its
// own auth_username_format), else in the passwd-file. An error means the
// userdb could not answer.
func (a *authority) findUser(ctx context.Context, name string) (string, bool, error) {
	if a.userdb != nil {
		n, ok, err := a.userdb.Lookup(ctx, name, "smtp")
		if err != nil {
			return "", false, fmt.Errorf("dovecot userdb: %w", err)
		}
		return n, ok, nil
	}
	n, ok := a.findPasswdUser(ctx, name)
	return n, ok, nil
}

// findPasswdUser returns the name under which user exists in the
// passwd-file: as given, then with its domain lower-cased, then all
// lower-case (Dovecot's default auth_username_format is %Lu).
func (a *authority) findPasswdUser(ctx context.Context, name string) (string, bool) {
	candidates := []string{name}
	if i := strings.LastIndexByte(name, '@'); i >= 0 {
		candidates = append(candidates, name[:i+1]+strings.ToLower(name[i+1:]))
	}
	candidates = append(candidates, strings.ToLower(name))
	for _, c := range candidates {
		if _, ok := a.lookup(ctx, c); ok {
			return c, true
		}
	}
	return "", false
}

// Verify implements sasl.Verifier against the passwd-file. Unknown users
// are checked against a dummy hash so that they take as long as a wrong
// password. A success is remembered in the auth cache under the user's
// stored hash, so that a changed or removed user is looked up afresh.
func (a *authority) Verify(ctx context.Context, user string, password []byte) (bool, error) {
	st, ok := a.lookup(ctx, user)
	if !ok {
		a.dummy.Verify(password)
		return false, nil
	}
	ok, hit, err := a.cache.Verify(authcache.Password, user, st.String(), password, func() (bool, error) {
		return st.Verify(password), nil
	})
	a.metrics.cached(a.cache != nil, hit)
	return ok, err
}

// CRAMMD5 implements sasl.Secrets: the HMAC for users stored as {PLAIN}
// or {CRAM-MD5}. Other users, and unknown ones, cost the same work and fail.
func (a *authority) CRAMMD5(ctx context.Context, user string, challenge []byte) ([]byte, bool, error) {
	st, ok := a.lookup(ctx, user)
	digest, can := st.CRAMMD5Digest(challenge)
	if !ok || !can {
		scheme.Stored{Scheme: scheme.Plain}.CRAMMD5Digest(challenge)
		return nil, false, nil
	}
	return digest, true, nil
}

// SCRAMSHA256 implements sasl.SCRAMSecrets: the stored credentials of a
// {SCRAM-SHA-256} user, credentials derived for a {PLAIN} user, and for
// anyone else fake credentials of the same shape, so the exchange fails at
// the proof exactly like a wrong password.
func (a *authority) SCRAM(ctx context.Context, hash, user string) (scram.StoredCredentials, bool, error) {
	keyed := func(label string, n int) []byte {
		m := hmac.New(sha256.New, a.secret)
		m.Write([]byte(hash + "\x00" + label + "\x00" + user))
		return m.Sum(nil)[:n]
	}
	size := sha256.Size
	if hash == "SHA-1" {
		size = 20
	}
	salt := keyed("salt", 16)
	if st, ok := a.lookup(ctx, user); ok {
		creds := st.SCRAMCredentials
		if hash == "SHA-1" {
			creds = st.SCRAMSHA1Credentials
		}
		if salt, iters, stored, server, can := creds(salt); can {
			return scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: iters}, StoredKey: stored, ServerKey: server}, true, nil
		}
	}
	return scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: 4096}, StoredKey: keyed("stored", size), ServerKey: keyed("server", size)}, false, nil
}

// listenerNamed returns the SASL settings of the master.cf service
// name ("" for main.cf's).
func (a *authority) listenerNamed(name string) (listener, bool) {
	l, ok := a.listeners[name]
	return l, ok
}

// offered returns the mechanisms l offers in the session's TLS state.
func (l listener) offered(tls bool) []sasl.Mechanism {
	return l.offeredWith(tls, false)
}

// offeredWith is offered, with the -PLUS mechanisms when the connection
// has a channel binding.
func (l listener) offeredWith(tls, binding bool) []sasl.Mechanism {
	opts := l.plain
	if tls {
		opts = l.tls
	}
	var out []sasl.Mechanism
	for _, m := range l.mechanisms {
		if opts.Allows(m) && (!m.Plus || binding) {
			out = append(out, m)
		}
	}
	return out
}
