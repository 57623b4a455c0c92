package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// smtpSourceHeaders is about what smtp-source writes before the payload
// (From, To, Date, Message-Id and the blank line): its -l counts the
// payload only, Config.Size the whole message.
const smtpSourceHeaders = 160

// SmtpSourceArgs are the smtp-source(1) arguments that make the load cfg
// describes, as far as smtp-source can: sessions, messages per session
// (-d keeps a session for the next message), size, recipients, sender,
// recipient and HELO name (the templates' first expansion: smtp-source
// sends the same addresses every time), a message budget and the running
// counter (-c) RunSmtpSource reads. It refuses what smtp-source cannot
// do: TLS, AUTH, and source addresses other than the kernel's choice.
func SmtpSourceArgs(cfg Config) ([]string, error) {
	switch {
	case cfg.StartTLS || cfg.ImplicitTLS:
		return nil, errors.New("smtp-source speaks no TLS")
	case cfg.User != "":
		return nil, errors.New("smtp-source does no AUTH")
	case len(cfg.Sources) > 0:
		return nil, errors.New("smtp-source cannot choose its source address: it connects from the kernel's (127.0.0.1 on loopback)")
	}
	budget := cfg.Messages
	if budget <= 0 {
		budget = 1 << 30 // ended by the duration
	}
	args := []string{"-c", "-s", strconv.Itoa(cfg.Connections), "-m", strconv.FormatInt(budget, 10),
		"-l", strconv.Itoa(max(cfg.Size-smtpSourceHeaders, 1)), "-r", strconv.Itoa(cfg.Recipients),
		"-f", Expand(cfg.Sender, 0, 0, 0), "-t", Expand(cfg.Recipient, 0, 0, 0)}
	if cfg.Helo != "" {
		args = append(args, "-M", cfg.Helo)
	}
	if cfg.MessagesPerConn > 1 {
		args = append(args, "-d")
	}
	return append(args, cfg.Addr), nil
}

// RunSmtpSource drives the load with Postfix's own generator, smtp-source
// (the program at path), instead of Run's: the same Result, counted from
// its running counter, which advances as each message's final dot is
// sent. What it cannot tell is left out: latencies (N = 0), and sessions
// are messages divided by messages per session. A reply smtp-source did
// not expect ends it (it exits with a fatal error): that is counted as
// one error with its message, and the run ends there.
func RunSmtpSource(ctx context.Context, path string, cfg Config) (*Result, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	args, err := SmtpSourceArgs(cfg)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	warmEnd := start.Add(cfg.Warmup)
	runCtx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithDeadline(ctx, start.Add(cfg.Duration))
		defer cancel()
	}
	cmd := exec.CommandContext(runCtx, path, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("smtp-source: %w", err)
	}
	// Written by the reader alone; read after it is done.
	var atWarm, last int64
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(out)
		sc.Split(splitCR)
		for sc.Scan() {
			n, err := strconv.ParseInt(strings.TrimSpace(sc.Text()), 10, 64)
			if err != nil {
				continue
			}
			last = n
			if time.Now().Before(warmEnd) {
				atWarm = n
			}
		}
	}()
	<-read
	waitErr := cmd.Wait()
	end := time.Now()
	if cfg.Duration > 0 && end.After(start.Add(cfg.Duration)) {
		end = start.Add(cfg.Duration)
	}
	done := last - atWarm
	r := &Result{Target: cfg.Addr, Connections: cfg.Connections, Window: end.Sub(warmEnd), Errors: map[string]int64{}, Messages: done}
	if r.Window > 0 {
		r.MessagesPerSec = float64(done) / r.Window.Seconds()
	}
	r.Sessions = done / int64(cfg.MessagesPerConn)
	if waitErr != nil && runCtx.Err() == nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		if msg == "" {
			msg = waitErr.Error()
		}
		r.Errors["smtp-source: "+msg]++
		r.ErrorsTotal++
	}
	return r, nil
}

// splitCR splits smtp-source's counter output, "1\r2\r3\r...".
func splitCR(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
