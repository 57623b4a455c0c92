//go:build unix

package smtpd

import "syscall"

// rawWait: idle can wait for, and read, the client's next bytes through
// the socket's RawConn here.
const rawWait = true

// readRaw is one read(2) on the non-blocking fd; syscall.EAGAIN says
// there is nothing to read yet. An error is a syscall.Errno.
func readRaw(fd uintptr, b []byte) (int, error) {
	n, err := syscall.Read(int(fd), b)
	if err != nil {
		return 0, err
	}
	return n, nil
}
