package handoff

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
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
}

func (t *maildirTx) Rcpt(_ context.Context, addr string) error {
	t.rcpts = append(t.rcpts, addr)
	return nil
}

func (t *maildirTx) Abort() {}

func (t *maildirTx) Data(_ context.Context, msg []byte) error {
	var b bytes.Buffer
	b.Grow(len(msg) + 256)
	fmt.Fprintf(&b, "Return-Path: <%s>\n", t.env.Sender)
	for _, r := range t.rcpts {
		fmt.Fprintf(&b, "X-Original-To: <%s>\n", r)
	}
	// Maildir files use the local line end (LF).
	b.Write(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")))
	if err := t.m.write(b.Bytes()); err != nil {
		return &reply.NextHopError{Reply: reply.WriteError, Err: err}
	}
	return nil
}

// write stores content as a new message.
func (m *Maildir) write(content []byte) error {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(m.Dir, sub), 0o700); err != nil {
			return fmt.Errorf("maildir: %w", err)
		}
	}
	name, err := m.uniqueName(len(content))
	if err != nil {
		return err
	}
	tmp := filepath.Join(m.Dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	_, werr := f.Write(content)
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
	if err := os.Rename(tmp, filepath.Join(m.Dir, "new", name)); err != nil {
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// uniqueName follows the Maildir convention time.MusecPpidRrandom.host,S=size.
func (m *Maildir) uniqueName(size int) (string, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	now := time.Now()
	host := strings.NewReplacer("/", `\057`, ":", `\072`).Replace(m.Hostname)
	return fmt.Sprintf("%d.M%dP%dR%s.%s,S=%d", now.Unix(), now.Nanosecond()/1000, os.Getpid(), hex.EncodeToString(rnd[:]), host, size), nil
}
