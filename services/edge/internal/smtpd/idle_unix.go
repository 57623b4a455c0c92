//go:build unix

package smtpd

import "syscall"

// rawWait: idle can wait for readability without a buffer here.
const rawWait = true

// readable reports whether fd has bytes to read, an end of file or an
// error, without taking any of them: a RawConn.Read callback that lets
// the runtime's poller wait while it says false.
func readable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN && err != syscall.EINTR
}
