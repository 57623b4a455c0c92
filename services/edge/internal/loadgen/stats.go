package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// tally is one worker's counts and samples. Only its worker writes it; Run
// merges the tallies after every worker has returned.
type tally struct {
	ok       int64
	msg      []time.Duration // MAIL FROM sent → 250 after DATA
	first    []time.Duration // connect started → 250 after DATA, first message of a session
	sessions int64           // sessions that reached EHLO (and TLS/AUTH)
	resumed  int64           // of those, sessions whose TLS session was resumed
	errors   map[string]int64
}

func (t *tally) fail(key string) {
	if t.errors == nil {
		t.errors = map[string]int64{}
	}
	t.errors[key]++
}

// Result is what a run measured, over the measurement window (after the
// warm-up).
type Result struct {
	Target      string        `json:"target"`
	Connections int           `json:"connections"`
	Window      time.Duration `json:"window_ns"`
	// Messages is the number accepted (250 after DATA).
	Messages       int64   `json:"messages"`
	MessagesPerSec float64 `json:"messages_per_sec"`
	Sessions       int64   `json:"sessions"`
	// Resumed counts the sessions whose TLS handshake resumed an
	// earlier session (Config.Resume).
	Resumed int64 `json:"resumed"`
	// Msg: from MAIL FROM to the 250 after DATA, every message.
	Msg Latency `json:"latency_mail_to_250"`
	// Connect: from the start of the TCP connect to the 250 after DATA,
	// for the first message of each session (greeting, EHLO, STARTTLS and
	// AUTH included).
	Connect Latency `json:"latency_connect_to_250"`
	// Errors counts failures by stage and reply code ("RCPT 554") or
	// kind ("connect timeout").
	Errors      map[string]int64 `json:"errors"`
	ErrorsTotal int64            `json:"errors_total"`
}

// Latency holds percentiles of a set of samples.
type Latency struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50_ns"`
	P90 time.Duration `json:"p90_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

// percentiles sorts d in place and reads the nearest-rank percentiles.
func percentiles(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	at := func(p float64) time.Duration {
		// Nearest rank: the smallest sample with at least p of the
		// samples at or below it.
		i := int(p*float64(len(d))+0.999999) - 1
		return d[max(0, min(i, len(d)-1))]
	}
	return Latency{N: len(d), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: d[len(d)-1]}
}

func merge(target string, conns int, window time.Duration, ts []*tally) *Result {
	r := &Result{Target: target, Connections: conns, Window: window, Errors: map[string]int64{}}
	var msg, first []time.Duration
	for _, t := range ts {
		r.Messages += t.ok
		r.Sessions += t.sessions
		r.Resumed += t.resumed
		msg = append(msg, t.msg...)
		first = append(first, t.first...)
		for k, v := range t.errors {
			r.Errors[k] += v
			r.ErrorsTotal += v
		}
	}
	if window > 0 {
		r.MessagesPerSec = float64(r.Messages) / window.Seconds()
	}
	r.Msg, r.Connect = percentiles(msg), percentiles(first)
	return r
}

// WriteText writes r for people.
func (r *Result) WriteText(w io.Writer) {
	fmt.Fprintf(w, "target %s, %d connections, window %.1fs\n", r.Target, r.Connections, r.Window.Seconds())
	fmt.Fprintf(w, "messages accepted: %d (%.1f/s), sessions: %d (TLS resumed: %d)\n", r.Messages, r.MessagesPerSec, r.Sessions, r.Resumed)
	row := func(name string, l Latency) {
		fmt.Fprintf(w, "%-28s n=%-7d p50 %-9s p90 %-9s p99 %-9s max %s\n", name, l.N,
			ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max))
	}
	row("MAIL FROM → 250 after DATA", r.Msg)
	row("connect → 250 (1st message)", r.Connect)
	fmt.Fprintf(w, "errors: %d\n", r.ErrorsTotal)
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		fmt.Fprintf(w, "  %-24s %d\n", k, r.Errors[k])
	}
}

// WriteJSON writes r as one JSON object.
func (r *Result) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}
