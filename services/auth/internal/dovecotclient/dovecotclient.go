// Package dovecotclient is the client side of Dovecot's authentication
// protocols: the auth-client socket (SASL exchanges, as Postfix's
// smtpd_sasl_type = dovecot drives them in xsasl_dovecot_server.c) and
// the auth-userdb socket (USER lookups, as Dovecot's lib-auth-client
// auth-master.c makes them). See doc.dovecot.org, "Authentication
// protocol" and "Master protocol".
//
// A Client keeps one connection to one socket and multiplexes every
// request over it by request id, as Dovecot's own login processes do. A
// connection that fails (Dovecot restarted, killed, or the socket gone)
// is dropped and the next request dials again, so Dovecot can restart
// under a running smtpgate. Every dial, handshake and reply has a
// timeout; a request that fails or times out is an error, never a
// success. Dovecot is trusted with verdicts; the SMTP client's data is
// only carried (base64, as the protocol wants). Secrets are never logged.
package dovecotclient

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smtpgate/smtpgate/services/auth/internal/dovecotwire"
	"github.com/smtpgate/smtpgate/services/auth/internal/sasl"
)

// DefaultTimeout is Postfix's for its Dovecot socket (AUTH_TIMEOUT in
// xsasl_dovecot_server.c): connect, handshake and each reply.
const DefaultTimeout = 10 * time.Second

// ErrUnavailable wraps every failure to get an answer from Dovecot: it
// could not be reached, the connection failed or the reply timed out.
var ErrUnavailable = errors.New("dovecot auth unavailable")

// kind is which socket a Client speaks to.
type kind int

const (
	authClient kind = iota // auth-client: AUTH/CONT
	authUserdb             // auth-userdb (or auth-master): USER
)

// Client speaks to one Dovecot socket. The zero value is not usable: make
// one with New or NewUserDB.
type Client struct {
	network, address string
	path             string // as configured, for messages
	timeout          time.Duration
	kind             kind

	mu    sync.Mutex
	cur   *conn
	mechs []Mechanism // from the last handshake
	// dials counts finished dial attempts, and dialErr is the last one's
	// error: a request that waited for a dial that failed takes its
	// error instead of dialling once more, so that a Dovecot that does
	// not answer costs one timeout, not one per waiting request.
	dials   atomic.Uint64
	dialErr error
	// errors counts the requests that got no answer (ErrUnavailable).
	errors atomic.Uint64
}

// Errors returns how many requests got no answer from Dovecot: it could
// not be reached, the connection failed, or a reply did not come in
// time, or made no sense.
func (c *Client) Errors() uint64 { return c.errors.Load() }

// ParsePath reads a socket path as Postfix's smtpd_sasl_path takes it
// ("inet:host:port", "unix:/path" or "/path") into a network and address
// for net.Dial. Relative paths are the caller's to resolve first.
func ParsePath(path string) (network, address string, err error) {
	if a, ok := strings.CutPrefix(path, "inet:"); ok {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return "", "", fmt.Errorf("%q: want inet:host:port: %w", path, err)
		}
		return "tcp", a, nil
	}
	p := strings.TrimPrefix(path, "unix:")
	if !strings.HasPrefix(p, "/") {
		return "", "", fmt.Errorf("%q: want inet:host:port, unix:/path or an absolute path", path)
	}
	return "unix", p, nil
}

// New returns a client of the auth-client socket at path (see ParsePath);
// timeout 0 is DefaultTimeout. It connects on first use.
func New(path string, timeout time.Duration) (*Client, error) {
	return newClient(path, timeout, authClient)
}

// NewUserDB returns a client of the auth-userdb socket at path.
func NewUserDB(path string, timeout time.Duration) (*Client, error) {
	return newClient(path, timeout, authUserdb)
}

func newClient(path string, timeout time.Duration, k kind) (*Client, error) {
	network, address, err := ParsePath(path)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{network: network, address: address, path: path, timeout: timeout, kind: k}, nil
}

// Close closes the connection, if any; a later request dials again.
func (c *Client) Close() error {
	c.mu.Lock()
	cn := c.cur
	c.cur = nil
	c.mu.Unlock()
	if cn != nil {
		return cn.close(errors.New("client closed"))
	}
	return nil
}

// Mechanism is one mechanism Dovecot offers.
type Mechanism struct {
	Name  string
	Flags sasl.Flags
}

// Mechanisms returns the mechanisms Dovecot offers (its auth_mechanisms),
// without those it marks private, connecting when needed. When Dovecot
// cannot be reached it returns the list of the last handshake, if there
// was one, with the error.
func (c *Client) Mechanisms(ctx context.Context) ([]Mechanism, error) {
	_, err := c.conn(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mechs, err
}

// conn returns the live connection, dialling when there is none.
func (c *Client) conn(ctx context.Context) (*conn, error) {
	seen := c.dials.Load()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil && !c.cur.dead() {
		return c.cur, nil
	}
	if c.dials.Load() != seen && c.dialErr != nil {
		return nil, c.dialErr
	}
	// Held while dialling: requests arriving meanwhile wait for this
	// connection instead of opening their own.
	cn, mechs, err := c.dial(ctx)
	c.dials.Add(1)
	c.dialErr = nil
	if err != nil {
		c.dialErr = fmt.Errorf("%s: %w: %w", c.path, ErrUnavailable, err)
		return nil, c.dialErr
	}
	c.cur = cn
	if c.kind == authClient {
		c.mechs = mechs
	}
	return cn, nil
}

// drop forgets cn when it is still the current connection.
func (c *Client) drop(cn *conn, why error) {
	c.mu.Lock()
	if c.cur == cn {
		c.cur = nil
	}
	c.mu.Unlock()
	_ = cn.close(why)
}

// dial connects and runs the handshake.
func (c *Client) dial(ctx context.Context) (*conn, []Mechanism, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, c.network, c.address)
	if err != nil {
		return nil, nil, err
	}
	dl, _ := ctx.Deadline()
	_ = nc.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	br := bufio.NewReaderSize(nc, 4096)
	mechs, err := c.handshake(nc, br)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("handshake: %w", err)
	}
	if !stop() {
		nc.Close()
		return nil, nil, fmt.Errorf("handshake: %w", ctx.Err())
	}
	_ = nc.SetDeadline(time.Time{})
	cn := &conn{nc: nc, pending: map[uint32]chan []string{}, done: make(chan struct{})}
	go cn.read(br)
	return cn, mechs, nil
}

// handshake sends VERSION (and CPID to auth-client) and reads the
// server's handshake: up to DONE from auth-client, up to SPID from
// auth-userdb. The two sockets are told apart as Postfix does: an
// auth-client sends MECH lines before SPID, auth-master and auth-userdb
// none.
func (c *Client) handshake(nc net.Conn, br *bufio.Reader) ([]Mechanism, error) {
	hello := "VERSION\t1\t2\nCPID\t" + strconv.Itoa(os.Getpid()) + "\n"
	if c.kind == authUserdb {
		hello = "VERSION\t1\t0\n"
	}
	if _, err := nc.Write([]byte(hello)); err != nil {
		return nil, err
	}
	var mechs []Mechanism
	version := false
	for {
		line, err := dovecotwire.ReadLine(br)
		if err != nil {
			return nil, err
		}
		f := strings.Split(line, "\t")
		switch f[0] {
		case "VERSION":
			if len(f) < 3 || f[1] != "1" {
				return nil, fmt.Errorf("unsupported protocol version %q (want major version 1)", line)
			}
			version = true
		case "MECH":
			if c.kind == authUserdb {
				return nil, errors.New("this is an auth-client socket, not auth-userdb (Dovecot's service auth { unix_listener auth-userdb })")
			}
			if len(f) < 2 || f[1] == "" {
				return nil, fmt.Errorf("malformed %q", line)
			}
			flags, private := dovecotwire.ParseFlags(f[2:])
			if !private {
				mechs = append(mechs, Mechanism{Name: strings.ToUpper(f[1]), Flags: flags})
			}
		case "SPID":
			if !version {
				return nil, errors.New("SPID before VERSION")
			}
			if c.kind == authUserdb {
				return nil, nil
			}
			if len(mechs) == 0 {
				return nil, errors.New("no MECH line before SPID: this is an auth-master or auth-userdb socket, not auth-client")
			}
		case "DONE":
			if !version {
				return nil, errors.New("DONE before VERSION")
			}
			return mechs, nil
		}
		// Other lines (CUID, COOKIE, newer ones) are ignored.
	}
}

// conn is one connection; replies are dispatched by request id.
type conn struct {
	nc  net.Conn
	wmu sync.Mutex // one writer at a time

	mu      sync.Mutex
	pending map[uint32]chan []string
	nextID  uint32
	used    bool // a reply was read on it
	done    chan struct{}
	err     error
}

// read dispatches replies until the connection fails.
func (cn *conn) read(br *bufio.Reader) {
	for {
		line, err := dovecotwire.ReadLine(br)
		if err != nil {
			_ = cn.close(err)
			return
		}
		f := strings.Split(line, "\t")
		if len(f) < 2 {
			continue
		}
		id, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil {
			continue
		}
		cn.mu.Lock()
		ch := cn.pending[uint32(id)]
		cn.used = true
		cn.mu.Unlock()
		if ch == nil {
			continue // a request given up on, or not ours
		}
		select {
		case ch <- f:
		default:
			// One reply per request line we sent: a second is Dovecot
			// breaking the protocol; drop the connection.
			_ = cn.close(fmt.Errorf("unexpected reply %q", f[0]))
			return
		}
	}
}

// close ends the connection with why; pending requests see it.
func (cn *conn) close(why error) error {
	cn.mu.Lock()
	select {
	case <-cn.done:
		cn.mu.Unlock()
		return nil
	default:
	}
	cn.err = why
	close(cn.done)
	cn.mu.Unlock()
	return cn.nc.Close()
}

func (cn *conn) dead() bool {
	select {
	case <-cn.done:
		return true
	default:
		return false
	}
}

// register reserves a new request id.
func (cn *conn) register() (uint32, chan []string) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	for {
		cn.nextID++
		if cn.nextID == 0 {
			continue
		}
		if _, busy := cn.pending[cn.nextID]; !busy {
			break
		}
	}
	ch := make(chan []string, 1)
	cn.pending[cn.nextID] = ch
	return cn.nextID, ch
}

func (cn *conn) forget(id uint32) {
	cn.mu.Lock()
	delete(cn.pending, id)
	cn.mu.Unlock()
}

func (cn *conn) send(line string, timeout time.Duration) error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	_ = cn.nc.SetWriteDeadline(time.Now().Add(timeout))
	_, err := cn.nc.Write([]byte(line))
	return err
}

// await waits for the reply to id.
func (cn *conn) await(ctx context.Context, ch chan []string, timeout time.Duration) ([]string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case f := <-ch:
		return f, nil
	case <-cn.done:
		// A reply read just before the end still counts.
		select {
		case f := <-ch:
			return f, nil
		default:
		}
		cn.mu.Lock()
		err := cn.err
		cn.mu.Unlock()
		return nil, fmt.Errorf("connection lost: %w", err)
	case <-t.C:
		return nil, fmt.Errorf("no reply within %s", timeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// roundTrip sends the line that format makes for a new request id and
// returns the reply. A connection that had answered before and is found
// dead (Dovecot restarted since) is replaced and the request sent once
// more, as Postfix does; nothing is sent twice on a connection that never
// answered.
func (c *Client) roundTrip(ctx context.Context, format func(id uint32) string) (*conn, uint32, chan []string, []string, error) {
	for try := 0; ; try++ {
		cn, err := c.conn(ctx)
		if err != nil {
			c.errors.Add(1)
			return nil, 0, nil, nil, err
		}
		id, ch := cn.register()
		cn.mu.Lock()
		reused := cn.used
		cn.mu.Unlock()
		err = cn.send(format(id), c.timeout)
		var f []string
		if err == nil {
			f, err = cn.await(ctx, ch, c.timeout)
		}
		if err == nil {
			return cn, id, ch, f, nil
		}
		cn.forget(id)
		if ctx.Err() != nil {
			return nil, 0, nil, nil, fmt.Errorf("%s: %w", c.path, ctx.Err())
		}
		// A timeout keeps the connection: other requests on it may be
		// waiting out Dovecot's penalty for their own client.
		lost := cn.dead()
		if !(lost && reused && try == 0) {
			c.errors.Add(1)
			return nil, 0, nil, nil, fmt.Errorf("%s: %w: %w", c.path, ErrUnavailable, err)
		}
		c.drop(cn, err)
	}
}

// Request is the start of a SASL exchange.
type Request struct {
	// Mechanism is the SASL mechanism, as Dovecot lists it.
	Mechanism string
	// Service is the protocol Dovecot's passdbs see as %s ("smtp").
	Service string
	// LocalIP, LocalPort, RemoteIP and RemotePort are the SMTP
	// connection's endpoints (lip, lport, rip, rport): Dovecot's penalty,
	// login_trusted_networks and passdb conditions use them. Zero values
	// are not sent.
	LocalIP, RemoteIP     string
	LocalPort, RemotePort int
	// Secured: the SMTP session is TLS-protected (Dovecot's
	// disable_plaintext_auth lets plaintext mechanisms through then).
	Secured bool
	// ValidClientCert: the client presented a certificate that verified.
	ValidClientCert bool
	// Response is the client's initial response, when HasResponse (it
	// may be empty).
	Response    []byte
	HasResponse bool
}

// Result is what a reply says.
type Result int

// The results.
const (
	// Continue: Dovecot sends a challenge and wants the client's answer.
	Continue Result = iota
	// OK: authenticated as Reply.User.
	OK
	// Fail: not authenticated; Reply.Temp says whether it was a temporary
	// failure (Dovecot could not check), not wrong credentials.
	Fail
)

// Reply is Dovecot's answer to one step.
type Reply struct {
	Result Result
	// Challenge is the decoded challenge of Continue.
	Challenge []byte
	// User is the user name (OK; FAIL when Dovecot names it).
	User string
	// Reason is Dovecot's reason for Fail, safe to show the client.
	Reason string
	// Temp marks a temporary failure (code=temp_fail, or the older temp
	// flag).
	Temp bool
}

// Exchange is a started SASL exchange; Close forgets it.
type Exchange struct {
	c  *Client
	cn *conn
	id uint32
	ch chan []string
}

// validMechanism reports whether m can be sent as a mechanism name.
func validMechanism(m string) bool {
	return m != "" && !strings.ContainsAny(m, "\t\r\n\x00\x01")
}

// Start sends AUTH and returns Dovecot's first reply. An error (Dovecot
// unreachable, connection lost, no reply in time) wraps ErrUnavailable or
// is the context's; it is never a success.
func (c *Client) Start(ctx context.Context, r Request) (*Exchange, Reply, error) {
	if c.kind != authClient {
		return nil, Reply{}, errors.New("Start on an auth-userdb client")
	}
	if !validMechanism(r.Mechanism) {
		return nil, Reply{}, fmt.Errorf("invalid mechanism name %q", r.Mechanism)
	}
	service := r.Service
	if service == "" {
		service = "smtp"
	}
	format := func(id uint32) string {
		var b strings.Builder
		fmt.Fprintf(&b, "AUTH\t%d\t%s\tservice=%s\tnologin", id, r.Mechanism, dovecotwire.Escape(service))
		if r.LocalIP != "" {
			b.WriteString("\tlip=" + dovecotwire.Escape(r.LocalIP))
		}
		if r.RemoteIP != "" {
			b.WriteString("\trip=" + dovecotwire.Escape(r.RemoteIP))
		}
		if r.LocalPort > 0 {
			fmt.Fprintf(&b, "\tlport=%d", r.LocalPort)
		}
		if r.RemotePort > 0 {
			fmt.Fprintf(&b, "\trport=%d", r.RemotePort)
		}
		if r.Secured {
			b.WriteString("\tsecured")
		}
		if r.ValidClientCert {
			b.WriteString("\tvalid-client-cert")
		}
		if r.HasResponse {
			// Last, as the protocol requires.
			b.WriteString("\tresp=" + base64.StdEncoding.EncodeToString(r.Response))
		}
		b.WriteString("\n")
		return b.String()
	}
	cn, id, ch, f, err := c.roundTrip(ctx, format)
	if err != nil {
		return nil, Reply{}, err
	}
	x := &Exchange{c: c, cn: cn, id: id, ch: ch}
	rep, err := x.parse(f)
	if err != nil || rep.Result != Continue {
		x.Close()
	}
	return x, rep, err
}

// Continue sends the client's answer to the last challenge and returns
// Dovecot's reply. Errors are as Start's.
func (x *Exchange) Continue(ctx context.Context, resp []byte) (Reply, error) {
	if err := x.cn.send(fmt.Sprintf("CONT\t%d\t%s\n", x.id, base64.StdEncoding.EncodeToString(resp)), x.c.timeout); err != nil {
		x.Close()
		x.c.errors.Add(1)
		return Reply{}, fmt.Errorf("%s: %w: %w", x.c.path, ErrUnavailable, err)
	}
	f, err := x.cn.await(ctx, x.ch, x.c.timeout)
	if err != nil {
		x.Close()
		if ctx.Err() != nil {
			return Reply{}, ctx.Err()
		}
		x.c.errors.Add(1)
		return Reply{}, fmt.Errorf("%s: %w: %w", x.c.path, ErrUnavailable, err)
	}
	rep, err := x.parse(f)
	if err != nil || rep.Result != Continue {
		x.Close()
	}
	return rep, err
}

// Close forgets the exchange: a late reply is dropped. Dovecot ends an
// abandoned request on its own (auth_request timeout).
func (x *Exchange) Close() { x.cn.forget(x.id) }

// parse reads OK, CONT or FAIL. A reply Dovecot must not send (OK without
// user=, a CONT without data) is an error wrapping ErrUnavailable: the
// client is told to retry, never let in.
func (x *Exchange) parse(f []string) (Reply, error) {
	bad := func(why string) (Reply, error) {
		x.c.errors.Add(1)
		return Reply{}, fmt.Errorf("%s: %w: %s %s", x.c.path, ErrUnavailable, f[0], why)
	}
	if len(f) < 2 {
		// read dispatches only lines with an id; never trust that here.
		return bad("without a request id")
	}
	switch f[0] {
	case "CONT":
		if len(f) < 3 || f[2] == "#" {
			return bad("without a challenge")
		}
		ch, err := base64.StdEncoding.DecodeString(f[2])
		if err != nil {
			return bad("with a challenge that is not base64")
		}
		return Reply{Result: Continue, Challenge: ch}, nil
	case "OK", "FAIL":
		rep := Reply{Result: Fail}
		if f[0] == "OK" {
			rep.Result = OK
		}
		nologin := false
		for _, p := range f[2:] {
			k, v, _ := strings.Cut(p, "=")
			v, ok := dovecotwire.Unescape(v)
			if !ok {
				return bad("with a badly escaped field")
			}
			switch k {
			case "user":
				rep.User = v
			case "reason":
				rep.Reason = v
			case "temp":
				rep.Temp = true
			case "code":
				rep.Temp = rep.Temp || v == "temp_fail"
			case "nologin":
				nologin = true
			}
		}
		if rep.Result == OK {
			if rep.User == "" || strings.ContainsAny(rep.User, "\x00\r\n") {
				return bad("without a user name")
			}
			if nologin {
				// Credentials right, login denied (Dovecot's nologin extra
				// field): a failure.
				rep.Result = Fail
			}
		}
		return rep, nil
	}
	return bad("is not a reply to AUTH")
}

// Lookup asks the userdb (USER) whether user exists, for service; name is
// the user's name as the userdb returns it. An error means the userdb
// could not answer (it wraps ErrUnavailable, or is the context's).
func (c *Client) Lookup(ctx context.Context, user, service string) (name string, found bool, err error) {
	if c.kind != authUserdb {
		return "", false, errors.New("Lookup on an auth-client client")
	}
	if user == "" || strings.ContainsAny(user, "\x00\r\n") {
		// As Dovecot's auth-master: such a user cannot exist.
		return "", false, nil
	}
	if service == "" {
		service = "smtp"
	}
	cn, id, _, f, err := c.roundTrip(ctx, func(id uint32) string {
		return fmt.Sprintf("USER\t%d\t%s\tservice=%s\n", id, dovecotwire.Escape(user), dovecotwire.Escape(service))
	})
	if err != nil {
		return "", false, err
	}
	cn.forget(id)
	switch f[0] {
	case "USER":
		name := user
		if len(f) > 2 {
			if n, ok := dovecotwire.Unescape(f[2]); ok && n != "" {
				name = n
			}
		}
		return name, true, nil
	case "NOTFOUND":
		return "", false, nil
	case "FAIL":
		reason := ""
		for _, p := range f[2:] {
			if v, ok := strings.CutPrefix(p, "reason="); ok {
				reason, _ = dovecotwire.Unescape(v)
			}
		}
		return "", false, fmt.Errorf("%s: %w: userdb lookup failed: %s", c.path, ErrUnavailable, reason)
	}
	return "", false, fmt.Errorf("%s: %w: %s is not a reply to USER", c.path, ErrUnavailable, f[0])
}
