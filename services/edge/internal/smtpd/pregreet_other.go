//go:build !unix

package smtpd

func peekRaw(uintptr) bool { return false }
