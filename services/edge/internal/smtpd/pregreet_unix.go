//go:build unix

package smtpd

import "syscall"

// peekRaw reports whether the non-blocking socket fd has bytes to read,
// without taking them (recv(2) with MSG_PEEK).
func peekRaw(fd uintptr) bool {
	var b [1]byte
	for {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == syscall.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}
