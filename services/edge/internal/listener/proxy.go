package listener

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/pires/go-proxyproto"
)

// DefaultProxyTimeout is Postfix's smtpd_upstream_proxy_timeout default.
const DefaultProxyTimeout = 5 * time.Second

// Proxy wraps ln for a listener with smtpd_upstream_proxy_protocol =
// haproxy. A peer in trusted must send a PROXY header (v1 or v2) within
// timeout; the header is read by Handshake, in the session's goroutine, so
// that a slow or silent peer holds up nobody else. A peer not in trusted
// is logged and dropped by Accept, which goes on with the next connection.
func Proxy(ln net.Listener, trusted *Networks, timeout time.Duration, log *slog.Logger) net.Listener {
	if timeout <= 0 {
		timeout = DefaultProxyTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &proxyproto.Listener{
		Listener: ln,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			if trusted.ContainsAddr(o.Upstream) {
				return proxyproto.REQUIRE, nil
			}
			log.Warn("PROXY protocol: peer not in smtpgate_proxy_networks, connection dropped", "peer", o.Upstream.String(), "listener", ln.Addr().String())
			// ErrInvalidUpstream: the package closes the connection
			// and Accept goes on with the next one.
			return proxyproto.REJECT, fmt.Errorf("%w: %s", proxyproto.ErrInvalidUpstream, o.Upstream)
		},
		ReadHeaderTimeout: timeout,
	}
}

// ProxyConn is Proxy for one accepted connection, for a caller that runs
// its own accept loop (the edge, whose settings change on SIGHUP): conn
// from a peer in trusted is returned wrapped, its header read later by
// Handshake; from anyone else it is logged and closed, and ok is false.
func ProxyConn(conn net.Conn, trusted *Networks, timeout time.Duration, log *slog.Logger) (c net.Conn, ok bool) {
	if timeout <= 0 {
		timeout = DefaultProxyTimeout
	}
	if !trusted.ContainsAddr(conn.RemoteAddr()) {
		if log != nil {
			log.Warn("PROXY protocol: peer not in smtpgate_proxy_networks, connection dropped", "peer", conn.RemoteAddr().String(), "listener", conn.LocalAddr().String())
		}
		_ = conn.Close()
		return nil, false
	}
	return proxyproto.NewConn(conn, proxyproto.WithPolicy(proxyproto.REQUIRE), proxyproto.SetReadHeaderTimeout(timeout)), true
}

// Peer is who a session talks to.
type Peer struct {
	// Client and Server are the SMTP client's and the server's endpoints:
	// the PROXY header's when Proxied, else the socket's.
	Client, Server net.Addr
	// Proxied: the addresses came from a PROXY header.
	Proxied bool
	// Proxy is the socket peer (the load balancer) when the connection
	// came through a Proxy listener.
	Proxy net.Addr
}

// ErrHeader means the PROXY header was missing, late or malformed.
var ErrHeader = errors.New("no valid PROXY protocol header")

// Handshake returns the session's peer. For a connection accepted from a
// Proxy listener it first waits for the PROXY header; a missing (timed
// out) or malformed header is an ErrHeader, and the caller must close the
// connection without a word. A v2 LOCAL command (the proxy's own health
// check) or a v1 UNKNOWN header leaves the socket's addresses in place,
// as Postfix does: the session is the proxy's own. Other connections are
// returned as they are.
func Handshake(conn net.Conn) (Peer, error) {
	pc, ok := conn.(*proxyproto.Conn)
	if !ok {
		return Peer{Client: conn.RemoteAddr(), Server: conn.LocalAddr()}, nil
	}
	raw := pc.Raw()
	p := Peer{Client: raw.RemoteAddr(), Server: raw.LocalAddr(), Proxy: raw.RemoteAddr()}
	// A read of nothing makes the package read the header (bounded by
	// the listener's timeout) and reports whether that failed; it
	// consumes no SMTP bytes.
	if _, err := pc.Read(nil); err != nil {
		return p, fmt.Errorf("%w: %w", ErrHeader, err)
	}
	h := pc.ProxyHeader()
	if h == nil || h.Command.IsLocal() {
		return p, nil
	}
	src, okSrc := h.SourceAddr.(*net.TCPAddr)
	dst, okDst := h.DestinationAddr.(*net.TCPAddr)
	if !okSrc || !okDst {
		if h.SourceAddr == nil && h.DestinationAddr == nil {
			return p, nil // v1 UNKNOWN, v2 UNSPEC
		}
		return p, fmt.Errorf("%w: transport %v is not TCP", ErrHeader, h.TransportProtocol)
	}
	p.Client, p.Server, p.Proxied = src, dst, true
	return p, nil
}
