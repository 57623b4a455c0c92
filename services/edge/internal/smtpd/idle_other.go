//go:build !unix

package smtpd

// rawWait: elsewhere, an idle session waits in its next read, buffers
// and all.
const rawWait = false

func readable(uintptr) bool { return true }
