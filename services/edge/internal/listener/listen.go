package listener

import (
	"context"
	"fmt"
	"net"
)

// Listen opens the TCP listener of an SMTP listener (master.cf's
// service name, "host:port").
//
// Postfix's smtpd turns on SO_KEEPALIVE for every accepted TCP
// connection and leaves the keepalive times to the kernel
// (util/sane_accept.c; smtpd_timeout ends dead sessions). Go's own
// default would set SO_KEEPALIVE and three timers of its own (15 s),
// four setsockopt(2) calls per connection. Here the listening socket
// gets SO_KEEPALIVE once, where the kernel makes every accepted socket
// inherit it, and Go sets nothing per connection (KeepAlive: -1): the
// same keepalive as Postfix, and no system call per connection for it.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1, Control: keepAliveListener}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln, nil
}
