package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/smtp"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// IdleConfig describes an idle-sessions run: N sessions that greet, send
// EHLO and then say nothing.
type IdleConfig struct {
	Addr    string
	Sources []netip.Addr
	// Sessions is how many to open; Parallel how many to open at once.
	Sessions, Parallel int
	// Hold is how long to keep them open once all are, before measuring.
	Hold    time.Duration
	Timeout time.Duration
	Helo    string
	// PID, when non-zero, is the server process whose resident set size
	// is read before the sessions are opened and after Hold.
	PID int
}

// IdleResult is what an idle run saw.
type IdleResult struct {
	Target string `json:"target"`
	Wanted int    `json:"sessions_wanted"`
	Open   int    `json:"sessions_open"`
	// Still is how many answered NOOP after Hold.
	Still  int              `json:"sessions_still_open"`
	Errors map[string]int64 `json:"errors"`
	// RSS in bytes of PID (VmRSS), before and after.
	RSSBefore  int64         `json:"rss_before_bytes"`
	RSSAfter   int64         `json:"rss_after_bytes"`
	PerSession int64         `json:"rss_per_session_bytes"`
	OpenTime   time.Duration `json:"open_time_ns"`
}

// Idle opens the sessions, holds them, measures and closes them.
func Idle(ctx context.Context, cfg IdleConfig) (*IdleResult, error) {
	if cfg.Sessions < 1 || cfg.Parallel < 1 || cfg.Timeout <= 0 {
		return nil, fmt.Errorf("idle: sessions, parallel and timeout must be positive")
	}
	if cfg.Helo == "" {
		cfg.Helo = "bench.smtpgate.invalid"
	}
	res := &IdleResult{Target: cfg.Addr, Wanted: cfg.Sessions, Errors: map[string]int64{}}
	var err error
	if cfg.PID != 0 {
		if res.RSSBefore, err = RSS(cfg.PID); err != nil {
			return nil, err
		}
	}
	type session struct {
		c    *smtp.Client
		conn net.Conn
	}
	sessions := make([]*session, cfg.Sessions)
	errs := make([]string, cfg.Sessions)
	host, _, _ := net.SplitHostPort(cfg.Addr)
	start := time.Now()
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(cfg.Parallel, cfg.Sessions) {
		wg.Go(func() {
			for i := range next {
				conn, err := Dial(ctx, cfg.Addr, source(cfg.Sources, i), cfg.Timeout)
				if err != nil {
					errs[i] = errKey("connect", err)
					continue
				}
				_ = conn.SetDeadline(time.Now().Add(cfg.Timeout))
				c, err := smtp.NewClient(conn, host)
				if err != nil {
					conn.Close()
					errs[i] = errKey("greeting", err)
					continue
				}
				if err := c.Hello(cfg.Helo); err != nil {
					conn.Close()
					errs[i] = errKey("EHLO", err)
					continue
				}
				_ = conn.SetDeadline(time.Time{})
				sessions[i] = &session{c, conn}
			}
		})
	}
	for i := range cfg.Sessions {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	res.OpenTime = time.Since(start)
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.conn.Close()
			}
		}
	}()
	for i, s := range sessions {
		if s != nil {
			res.Open++
		} else if errs[i] != "" {
			res.Errors[errs[i]]++
		}
	}
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(cfg.Hold):
	}
	if cfg.PID != 0 {
		if res.RSSAfter, err = RSS(cfg.PID); err != nil {
			return nil, err
		}
		if res.Open > 0 {
			res.PerSession = (res.RSSAfter - res.RSSBefore) / int64(res.Open)
		}
	}
	// Are they still there? NOOP on each (after the measurement).
	for _, s := range sessions {
		if s == nil {
			continue
		}
		_ = s.conn.SetDeadline(time.Now().Add(cfg.Timeout))
		if s.c.Noop() == nil {
			res.Still++
		}
	}
	return res, nil
}

// WriteText writes r for people.
func (r *IdleResult) WriteText(w io.Writer) {
	fmt.Fprintf(w, "target %s: %d of %d idle sessions open in %.1fs, %d still open after the hold\n",
		r.Target, r.Open, r.Wanted, r.OpenTime.Seconds(), r.Still)
	if r.RSSBefore > 0 {
		fmt.Fprintf(w, "server RSS: %.1f MiB before, %.1f MiB after, %.1f KiB per session\n",
			mib(r.RSSBefore), mib(r.RSSAfter), float64(r.PerSession)/1024)
	}
	for k, v := range r.Errors {
		fmt.Fprintf(w, "  %-24s %d\n", k, v)
	}
}

// WriteJSON writes r as one JSON object.
func (r *IdleResult) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// RSS returns the resident set size of a process (VmRSS in
// /proc/PID/status), in bytes.
func RSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseRSS(f)
}

func parseRSS(r io.Reader) (int64, error) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		v, ok := strings.CutPrefix(s.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS: unexpected %q", v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		return n * 1024, err
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no VmRSS")
}
