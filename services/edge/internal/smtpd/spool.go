package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// defaultMemoryLimit is smtpgate_memory_message_limit's default.
const defaultMemoryLimit = 1 << 20

// memoryStart is what a message's memory buffer starts with.
const memoryStart = 4096

// spoolBufSize is the write buffer of a spooled message: the spool file
// gets the content in pieces of this size.
const spoolBufSize = 16 << 10

// spoolDir is smtpgate_spool_directory, or its default.
func (l *Listener) spoolDir() string {
	if l.SpoolDir != "" {
		return l.SpoolDir
	}
	return filepath.Join(os.TempDir(), "smtpgate-spool")
}

// body holds one message's content between the client and the next hop:
// in memory up to Listener.MemoryMessageLimit bytes while the edge's
// memory budget has room for it (Memory.holdContent), beyond that in a
// file of the spool directory (created 0700; the file is 0600). The
// memory is taken from the budget as the buffer grows and given back
// when the content spills or the body is closed. Close removes the file;
// the session calls it when the transaction ends, on every path
// (delivered, refused, reset, connection lost, timeout).
//
// Write never fails: the first error (a full disk) is kept, later content
// is dropped, and Err reports it once the client's content has all been
// read, so that the session stays in step with the client and can answer
// "451 4.3.0 Error: queue file write error" as Postfix does.
type body struct {
	l     *Listener
	m     *Memory
	limit int64
	mem   []byte
	// held is what mem's capacity took from the budget.
	held int64
	f    *os.File
	w    *bufio.Writer
	size int64
	err  error
}

func newBody(l *Listener, m *Memory) *body {
	limit := l.MemoryMessageLimit
	if limit <= 0 {
		limit = defaultMemoryLimit
	}
	return &body{l: l, m: m, limit: limit}
}

func (b *body) Write(p []byte) (int, error) {
	if b.err != nil {
		return len(p), nil
	}
	b.size += int64(len(p))
	if b.f == nil && b.grow(len(p)) {
		b.mem = append(b.mem, p...)
		return len(p), nil
	}
	if b.f == nil {
		if err := b.spill(); err != nil {
			b.err = err
			return len(p), nil
		}
	}
	if _, err := b.w.Write(p); err != nil {
		b.err = fmt.Errorf("spool %s: %w", b.f.Name(), err)
	}
	return len(p), nil
}

// grow makes room in memory for n more bytes, within the limit and the
// budget; false: the content must go to disk.
func (b *body) grow(n int) bool {
	need := int64(len(b.mem)) + int64(n)
	if need > b.limit {
		return false
	}
	if need <= int64(cap(b.mem)) {
		return true
	}
	// Room for a small message at once, then doubling, as
	// bytes.Buffer, but never past the limit.
	c := min(max(need, 2*int64(cap(b.mem)), min(b.limit, memoryStart)), b.limit)
	if !b.m.holdContent(c - b.held) {
		return false
	}
	grown := make([]byte, len(b.mem), c)
	copy(grown, b.mem)
	b.mem, b.held = grown, c
	return true
}

// forget drops the content kept in memory and gives its memory back.
func (b *body) forget() {
	b.mem = nil
	b.m.release(b.held)
	b.held = 0
}

// spill moves what is in memory to a new spool file; the rest goes there.
func (b *body) spill() error {
	dir := b.l.spoolDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	f, err := os.CreateTemp(dir, "msg-*") // mode 0600
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	b.f = f
	b.w = bufio.NewWriterSize(f, spoolBufSize)
	_, err = b.w.Write(b.mem)
	b.forget()
	if err != nil {
		return fmt.Errorf("spool %s: %w", f.Name(), err)
	}
	return nil
}

// Size is the number of content bytes written.
func (b *body) Size() int64 { return b.size }

// Spooled reports whether the content went to a file.
func (b *body) Spooled() bool { return b.f != nil }

// Err is the first error storing the content.
func (b *body) Err() error { return b.err }

// Reader returns the content from its start.
func (b *body) Reader() (io.Reader, error) {
	if b.err != nil {
		return nil, b.err
	}
	if b.f == nil {
		return bytes.NewReader(b.mem), nil
	}
	if err := b.w.Flush(); err != nil {
		return nil, fmt.Errorf("spool %s: %w", b.f.Name(), err)
	}
	if _, err := b.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("spool %s: %w", b.f.Name(), err)
	}
	return io.LimitReader(b.f, b.size), nil
}

// Close drops the content and removes the spool file; it is safe to call
// more than once.
func (b *body) Close() error {
	b.forget()
	if b.f == nil {
		return nil
	}
	name := b.f.Name()
	err := errors.Join(b.f.Close(), os.Remove(name))
	b.f, b.w = nil, nil
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}
