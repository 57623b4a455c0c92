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

// spoolDir is smtpgate_spool_directory, or its default.
func (l *Listener) spoolDir() string {
	if l.SpoolDir != "" {
		return l.SpoolDir
	}
	return filepath.Join(os.TempDir(), "smtpgate-spool")
}

// body holds one message's content between the client and the next hop:
// in memory up to Listener.MemoryMessageLimit bytes, beyond that in a
// file of the spool directory (created 0700; the file is 0600). Close
// removes the file; the session calls it when the transaction ends, on
// every path (delivered, refused, reset, connection lost, timeout).
//
// Write never fails: the first error (a full disk) is kept, later content
// is dropped, and Err reports it once the client's content has all been
// read, so that the session stays in step with the client and can answer
// "451 4.3.0 Error: queue file write error" as Postfix does.
type body struct {
	l     *Listener
	limit int64
	mem   bytes.Buffer
	f     *os.File
	w     *bufio.Writer
	size  int64
	err   error
}

func newBody(l *Listener) *body {
	limit := l.MemoryMessageLimit
	if limit <= 0 {
		limit = defaultMemoryLimit
	}
	return &body{l: l, limit: limit}
}

func (b *body) Write(p []byte) (int, error) {
	if b.err != nil {
		return len(p), nil
	}
	b.size += int64(len(p))
	if b.f == nil && int64(b.mem.Len()+len(p)) <= b.limit {
		if b.mem.Cap() == 0 {
			// Room for a small message at once, rather than the
			// buffer's growing from 64 bytes line by line.
			b.mem.Grow(int(min(b.limit, memoryStart)))
		}
		return b.mem.Write(p)
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
	b.w = bufio.NewWriterSize(f, 64<<10)
	if _, err := b.mem.WriteTo(b.w); err != nil {
		return fmt.Errorf("spool %s: %w", f.Name(), err)
	}
	b.mem = bytes.Buffer{} // give the memory back
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
		return bytes.NewReader(b.mem.Bytes()), nil
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
	b.mem = bytes.Buffer{}
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
