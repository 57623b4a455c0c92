//go:build !unix

package smtpd

import "syscall"

// rawWait: elsewhere, an idle session waits in its next read, buffers
// and all.
const rawWait = false

func readRaw(uintptr, []byte) (int, error) { return 0, syscall.EINVAL }
