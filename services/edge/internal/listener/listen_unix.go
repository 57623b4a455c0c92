//go:build unix

package listener

import (
	"fmt"
	"syscall"
)

// keepAliveListener sets SO_KEEPALIVE on a listening socket, before it
// binds; on unix the accepted sockets inherit it.
func keepAliveListener(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1)
	}); err != nil {
		return fmt.Errorf("set SO_KEEPALIVE: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("set SO_KEEPALIVE: %w", serr)
	}
	return nil
}
