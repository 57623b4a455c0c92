package handoff

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// Maildir writes each message to a Maildir (https://cr.yp.to/proto/maildir.html):
// one file per message, with the envelope prepended as Return-Path and one
// X-Original-To per recipient, written to tmp/, fsync'd, renamed into new/
// and the directory fsync'd — all before Data returns, so a 250 is only
// ever said for a message that is on disk.
type Maildir struct {
	Dir      string
	Hostname string
}

func (m *Maildir) String() string { return "maildir:" + m.Dir }

// Begin implements Target.
func (m *Maildir) Begin(_ context.Context, env Envelope) (Tx, error) {
	return &maildirTx{m: m, env: env}, nil
}

type maildirTx struct {
	m     *Maildir
	env   Envelope
	rcpts []string
	// done: the message is written.
	done bool
}

// Rcpt ignores the DSN parameters.
func (t *maildirTx) Rcpt(_ context.Context, addr string, _ RecipientDSN) error {
	t.rcpts = append(t.rcpts, addr)
	return nil
}

func (t *maildirTx) Abort() {}

func (t *maildirTx) Data(_ context.Context, msg io.Reader) error {
	var head bytes.Buffer
	fmt.Fprintf(&head, "Return-Path: <%s>\n", t.env.Sender)
	for _, r := range t.rcpts {
		fmt.Fprintf(&head, "X-Original-To: <%s>\n", r)
	}
	if err := t.m.write(&head, msg); err != nil {
		return &reply.NextHopError{Reply: reply.WriteError, Err: err}
	}
	t.done = true
	return nil
}

// write stores head and then msg, its CRLF line ends turned into the
// local LF, as a new message. It streams: the file is written as msg is
// read, and named with its size (",S=") when it moves into new/.
func (m *Maildir) write(head *bytes.Buffer, msg io.Reader) error {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(m.Dir, sub), 0o700); err != nil {
			return fmt.Errorf("maildir: %w", err)
		}
	}
	name, err := m.uniqueName()
	if err != nil {
		return err
	}
	tmp := filepath.Join(m.Dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	lf := &unixLines{w: bw}
	headLen := int64(head.Len())
	_, werr := head.WriteTo(bw)
	if werr == nil {
		_, werr = io.Copy(lf, msg)
	}
	if werr == nil {
		werr = lf.Close()
	}
	if werr == nil {
		werr = bw.Flush()
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("maildir: write %s: %w", tmp, werr)
	}
	final := fmt.Sprintf("%s,S=%d", name, headLen+lf.n)
	if err := os.Rename(tmp, filepath.Join(m.Dir, "new", final)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("maildir: %w", err)
	}
	if err := syncDir(filepath.Join(m.Dir, "new")); err != nil {
		// The file is in new/ but its name may not be durable yet: report
		// a temporary failure; a retry may deliver twice, never zero times.
		return fmt.Errorf("maildir: %w", err)
	}
	return nil
}

// unixLines writes what it is given with every CRLF turned into LF (a
// Maildir file uses the local line end). A CR at the end of one Write is
// held back until the next shows whether an LF follows; n counts the
// bytes written out.
type unixLines struct {
	w  io.Writer
	cr bool
	n  int64
}

func (u *unixLines) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if u.cr {
			u.cr = false
			if p[0] != '\n' {
				if err := u.out([]byte{'\r'}); err != nil {
					return 0, err
				}
			}
		}
		i := bytes.IndexByte(p, '\r')
		if i < 0 {
			if err := u.out(p); err != nil {
				return 0, err
			}
			break
		}
		if err := u.out(p[:i]); err != nil {
			return 0, err
		}
		u.cr, p = true, p[i+1:]
	}
	return total, nil
}

// Close writes a CR still held back.
func (u *unixLines) Close() error {
	if u.cr {
		u.cr = false
		return u.out([]byte{'\r'})
	}
	return nil
}

func (u *unixLines) out(p []byte) error {
	n, err := u.w.Write(p)
	u.n += int64(n)
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// uniqueName follows the Maildir convention time.MusecPpidRrandom.host;
// write adds ",S=size" when the size is known.
func (m *Maildir) uniqueName() (string, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	now := time.Now()
	host := strings.NewReplacer("/", `\057`, ":", `\072`).Replace(m.Hostname)
	return fmt.Sprintf("%d.M%dP%dR%s.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), hex.EncodeToString(rnd[:]), host), nil
}
