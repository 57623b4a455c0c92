// Package logtest holds what tests need to read the logs of the code they
// run: a buffer that the code's goroutines may write while the test reads.
//
// Test support only; it trusts nothing and talks to nobody.
package logtest

import (
	"bytes"
	"sync"
)

// Buffer is a log sink safe for concurrent writes and reads. The zero
// value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
