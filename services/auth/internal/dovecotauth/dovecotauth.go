// Package dovecotauth serves the Dovecot authentication protocol (v1.x, the
// client side Postfix speaks with smtpd_sasl_type = dovecot), so that an
// existing Postfix can authenticate its SMTP clients through smtpgate-auth.
// See https://doc.dovecot.org/developer_manual/design/auth_protocol/ and
// Postfix's xsasl_dovecot_server.c.
//
// It lets in only the callers it is told to trust: TCP callers from the
// networks of Server.Clients (smtpgate_dovecot_auth_clients), and whoever
// can open a unix socket it listens on (the socket's owner, group and mode
// decide). Every other caller is logged and closed before a byte is
// sent. It trusts the callers it lets in (Postfix) to report the session
// honestly (secured, rip, lip): the throttle counts failures against the
// rip= address, so an untrusted caller inventing one per attempt would
// otherwise escape the per-client and per-network limits. Everything the
// SMTP client supplied (resp=, CONT data) is parsed as hostile. Secrets
// are never logged.
package dovecotauth

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/smtpgate/smtpgate/services/auth/internal/dovecotwire"
	"github.com/smtpgate/smtpgate/services/auth/internal/sasl"
	"github.com/smtpgate/smtpgate/services/auth/internal/throttle"
)

// Server answers Dovecot auth clients.
type Server struct {
	// Mechanisms returns the mechanisms offered; secured says whether the
	// client's SMTP session is TLS-protected.
	Mechanisms func(secured bool) []sasl.Mechanism
	Backend    sasl.Backend
	// Start, when set, begins each exchange instead of Mechanism.Start on
	// Backend; client is the rip= address ("" when not sent).
	Start    func(m sasl.Mechanism, client string) sasl.Exchange
	Hostname string
	Logger   *slog.Logger
	// Clients are the networks a TCP caller must connect from; the zero
	// value lets in no TCP caller. Callers on unix sockets are let in.
	Clients Clients

	mu   sync.Mutex
	cuid int
}

// Clients is a list of addresses and networks as Postfix's mynetworks
// takes them ("127.0.0.1", "192.0.2.0/24", "[::1]", "[2001:db8::]/32";
// brackets optional). Host names and tables are not supported.
type Clients struct {
	prefixes []netip.Prefix
}

// ParseClients parses a list as maincf.SplitList returns it.
func ParseClients(items []string) (Clients, error) {
	var c Clients
	for _, it := range items {
		host, bits, hasBits := strings.Cut(it, "/")
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		a, err := netip.ParseAddr(host)
		if err != nil || a.Zone() != "" {
			return Clients{}, fmt.Errorf("%q: not an address or network (host names and tables are not supported here)", it)
		}
		p := netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		if hasBits {
			n, err := strconv.Atoi(bits)
			if err != nil {
				return Clients{}, fmt.Errorf("%q: bad network", it)
			}
			if a.Is4In6() {
				n -= 96
			}
			if p, err = a.Unmap().Prefix(n); err != nil || n < 0 {
				return Clients{}, fmt.Errorf("%q: bad network", it)
			}
			if p.Addr() != a.Unmap() {
				// As Postfix: "non-null host address bits".
				return Clients{}, fmt.Errorf("%q: non-null host address bits, perhaps %s was meant", it, p)
			}
		}
		c.prefixes = append(c.prefixes, p)
	}
	return c, nil
}

// Allows reports whether a caller at a may connect: a unix socket peer,
// or a TCP peer in the list.
func (c Clients) Allows(a net.Addr) bool {
	switch a := a.(type) {
	case *net.UnixAddr:
		return true
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			return false
		}
		ip = ip.Unmap()
		for _, p := range c.prefixes {
			if p.Contains(ip) {
				return true
			}
		}
	}
	return false
}

// Serve accepts connections on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	go func() { <-ctx.Done(); ln.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dovecot auth accept: %w", err)
		}
		if !s.Clients.Allows(c.RemoteAddr()) {
			// Before a byte is sent: a stranger learns nothing and tries
			// no password.
			s.log().WarnContext(ctx, "dovecot auth connection refused: client not in smtpgate_dovecot_auth_clients", "client", c.RemoteAddr().String())
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			go func() { <-ctx.Done(); c.Close() }()
			if err := s.serveConn(ctx, c); !errors.Is(err, io.EOF) && ctx.Err() == nil {
				s.log().Info("dovecot auth connection ended", "err", err)
			}
		}()
	}
}

func (s *Server) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// conn is one client connection.
type conn struct {
	s         *Server
	w         *bufio.Writer
	versionOK bool
	pending   map[string]*request
}

// request is one AUTH in progress.
type request struct {
	ex     sasl.Exchange
	mech   string
	client string
}

// ender is an exchange that holds something until it ends (the
// throttle's reservation): End gives it back when the exchange is dropped
// unanswered.
type ender interface{ End(ctx context.Context) }

// drop ends r's exchange when it is dropped unanswered.
func drop(ctx context.Context, r *request) {
	if e, ok := r.ex.(ender); ok {
		e.End(ctx)
	}
}

// serveConn runs one connection until it fails or ends (io.EOF); it
// never returns nil.
func (s *Server) serveConn(ctx context.Context, c io.ReadWriter) error {
	br := bufio.NewReaderSize(c, 4096)
	cn := &conn{s: s, w: bufio.NewWriter(c), pending: map[string]*request{}}
	defer func() {
		for _, r := range cn.pending {
			drop(ctx, r)
		}
	}()
	// The handshake may be sent before the client's VERSION: Postfix copes
	// with either order. MECH lines come before SPID (an SPID first means
	// "wrong socket" to Postfix).
	s.mu.Lock()
	s.cuid++
	cuid := s.cuid
	s.mu.Unlock()
	var cookie [16]byte
	_, _ = rand.Read(cookie[:])
	fmt.Fprintf(cn.w, "VERSION\t1\t2\n")
	for _, m := range s.Mechanisms(true) {
		fmt.Fprintf(cn.w, "MECH\t%s%s\n", m.Name, dovecotwire.FormatFlags(m.Flags))
	}
	fmt.Fprintf(cn.w, "SPID\t%d\nCUID\t%d\nCOOKIE\t%s\nDONE\n", os.Getpid(), cuid, hex.EncodeToString(cookie[:]))
	if err := cn.w.Flush(); err != nil {
		return err
	}
	for {
		line, err := dovecotwire.ReadLine(br)
		if err != nil {
			return err
		}
		if err := cn.handle(ctx, line); err != nil {
			return err
		}
		if err := cn.w.Flush(); err != nil {
			return err
		}
	}
}

// handle processes one client line.
func (cn *conn) handle(ctx context.Context, line string) error {
	fields := strings.Split(line, "\t")
	switch fields[0] {
	case "VERSION":
		if len(fields) < 3 || fields[1] != "1" {
			return fmt.Errorf("unsupported protocol version %q", line)
		}
		cn.versionOK = true
		return nil
	case "CPID":
		return nil
	case "AUTH":
		return cn.auth(ctx, fields[1:])
	case "CONT":
		return cn.cont(ctx, fields[1:])
	}
	// Unknown commands are ignored, as the protocol asks.
	return nil
}

// fail answers FAIL with a reason Postfix puts into its reply ("535 5.7.8
// Error: authentication failed: authentication failure"); the reason never
// tells an unknown user from a wrong password.
func (cn *conn) fail(id, user string) {
	fmt.Fprintf(cn.w, "FAIL\t%s\treason=authentication failure", id)
	if user != "" {
		fmt.Fprintf(cn.w, "\tuser=%s", dovecotwire.Escape(user))
	}
	cn.w.WriteString("\n")
}

func validID(id string) bool {
	n, err := strconv.ParseUint(id, 10, 32)
	return err == nil && n > 0 || id == "0"
}

// auth handles AUTH <id> <mech> [params...].
func (cn *conn) auth(ctx context.Context, f []string) error {
	if !cn.versionOK {
		return errors.New("AUTH before VERSION")
	}
	if len(f) < 2 || !validID(f[0]) {
		return fmt.Errorf("malformed AUTH")
	}
	id, mechName := f[0], strings.ToUpper(f[1])
	if _, busy := cn.pending[id]; busy {
		return fmt.Errorf("AUTH id %s reused", id)
	}
	var secured, hasResp bool
	var resp []byte
	client := ""
	for i, p := range f[2:] {
		k, v, _ := strings.Cut(p, "=")
		v, ok := dovecotwire.Unescape(v)
		if !ok {
			cn.fail(id, "")
			return nil
		}
		switch k {
		case "secured":
			secured = true
		case "rip":
			client = v
		case "resp":
			// resp= must be the last parameter.
			if i != len(f[2:])-1 {
				cn.fail(id, "")
				return nil
			}
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				cn.fail(id, "")
				return nil
			}
			hasResp, resp = true, b
		}
	}
	var mech *sasl.Mechanism
	for _, m := range cn.s.Mechanisms(secured) {
		if m.Name == mechName {
			m := m
			mech = &m
		}
	}
	if mech == nil {
		cn.s.log().InfoContext(ctx, "dovecot auth", "mechanism", mechName, "client", client, "result", "UNSUPPORTED_MECHANISM")
		cn.fail(id, "")
		return nil
	}
	r := &request{mech: mechName, client: client}
	if cn.s.Start != nil {
		r.ex = cn.s.Start(*mech, client)
	} else {
		r.ex = mech.Start(cn.s.Backend, cn.s.Hostname)
	}
	if !hasResp {
		resp = nil
	} else if resp == nil {
		resp = []byte{}
	}
	cn.step(ctx, id, r, resp)
	return nil
}

// cont handles CONT <id> <base64>.
func (cn *conn) cont(ctx context.Context, f []string) error {
	if len(f) < 1 {
		return fmt.Errorf("malformed CONT")
	}
	id := f[0]
	r, ok := cn.pending[id]
	if !ok {
		return fmt.Errorf("CONT for unknown id %s", id)
	}
	data := ""
	if len(f) > 1 {
		data = f[1]
	}
	b, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		delete(cn.pending, id)
		drop(ctx, r)
		cn.fail(id, r.ex.Username())
		return nil
	}
	if b == nil {
		b = []byte{}
	}
	cn.step(ctx, id, r, b)
	return nil
}

// step feeds one response to the exchange and answers.
func (cn *conn) step(ctx context.Context, id string, r *request, resp []byte) {
	ch, done, err := r.ex.Next(ctx, resp)
	if !done {
		cn.pending[id] = r
		fmt.Fprintf(cn.w, "CONT\t%s\t%s\n", id, base64.StdEncoding.EncodeToString(ch))
		return
	}
	delete(cn.pending, id)
	user := r.ex.Username()
	result := "SUCCESS"
	switch {
	case err == nil:
		fmt.Fprintf(cn.w, "OK\t%s\tuser=%s\n", id, dovecotwire.Escape(user))
	case errors.Is(err, sasl.ErrFailed), errors.Is(err, sasl.ErrMalformed):
		result = "FAILURE"
		cn.fail(id, "")
	case errors.Is(err, throttle.ErrLocked):
		// Postfix answers temp_fail with 454 4.7.0; the lockout was logged
		// when it began.
		result = "LOCKED"
		fmt.Fprintf(cn.w, "FAIL\t%s\tcode=temp_fail\n", id)
	default:
		result = "TEMPORARY_FAILURE"
		cn.s.log().WarnContext(ctx, "dovecot auth could not check credentials", "err", err)
		fmt.Fprintf(cn.w, "FAIL\t%s\tcode=temp_fail\n", id)
	}
	cn.s.log().InfoContext(ctx, "dovecot auth", "mechanism", r.mech, "client", r.client, "username", user, "result", result)
}
