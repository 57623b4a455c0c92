package smtpd

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgate/smtpgate/pkg/telemetry"
)

// Adaptive are the listener settings whose value may depend on ${stress}
// (STRESS_README; maincf.Def.Stress): Postfix's defaults make
// smtpd_timeout 10s instead of 300s, smtpd_hard_error_limit and
// smtpd_junk_command_limit 1 instead of 20 and 100 under stress.
type Adaptive struct {
	Timeout          time.Duration // smtpd_timeout
	HardErrorLimit   int           // smtpd_hard_error_limit
	SoftErrorLimit   int           // smtpd_soft_error_limit
	ErrorSleep       time.Duration // smtpd_error_sleep_time
	JunkCommandLimit int           // smtpd_junk_command_limit
}

// adaptive returns l's own values of the stress-dependent settings.
func (l *Listener) adaptive() Adaptive {
	return Adaptive{Timeout: l.Timeout, HardErrorLimit: l.HardErrorLimit, SoftErrorLimit: l.SoftErrorLimit,
		ErrorSleep: l.ErrorSleep, JunkCommandLimit: l.JunkCommandLimit}
}

// tune returns the session's stress-dependent settings as they are now:
// the listener's UnderStress while the edge is under stress. They are
// read at each use, so a session that began before the stress gets the
// stress values from its next command on (and Stress shortens the wait
// of those already waiting).
func (s *session) tune() Adaptive {
	if a := s.l.UnderStress; a != nil && s.srv.Limits.stressed() {
		return *a
	}
	return s.l.adaptive()
}

// Stress is the edge's stress mode. Postfix's master(8) runs smtpd with
// "-o stress=yes" once all the processes of a service are busy, and
// keeps doing so until the process count has been below the limit for
// 1000 seconds (STRESS_README, master_avail.c); the edge, whose sessions
// are goroutines, is under stress from At connections open at once
// (smtpgate_stress_threshold percent of smtpgate_max_connections) until
// the count has stayed below At for Hold (smtpgate_stress_hold_time).
// Under stress the sessions use their listener's UnderStress settings.
//
// Entering and leaving are logged once each, and the state is the gauge
// smtpgate_edge_stress. A nil *Stress is never under stress.
type Stress struct {
	at   int
	hold time.Duration
	max  int
	log  *slog.Logger

	gauge   prometheus.Gauge
	entered prometheus.Counter

	on atomic.Bool

	mu sync.Mutex
	// open is the count last seen; since when stress began; gen tells
	// the current leave timer from one stopped too late.
	open  int
	since time.Time
	timer *time.Timer
	gen   int
}

// NewStress returns the stress mode entered at at open connections (0:
// never) of max (smtpgate_max_connections, for the log), left after the
// count has stayed below at for hold. log gets the transitions (nil:
// none); metrics is where the gauge is registered (nil: unregistered).
func NewStress(at int, hold time.Duration, max int, log *slog.Logger, metrics prometheus.Registerer) *Stress {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Stress{at: at, hold: hold, max: max, log: log,
		gauge: telemetry.Register(metrics, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "smtpgate_edge_stress",
			Help: "1 while the edge is under stress (smtpgate_stress_threshold percent of smtpgate_max_connections open, and smtpgate_stress_hold_time after): ${stress} is yes, and the stress-dependent settings (smtpd_timeout, smtpd_hard_error_limit, smtpd_junk_command_limit ...) take their stress values.",
		})),
		entered: telemetry.Register(metrics, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smtpgate_edge_stress_entered_total",
			Help: "Times the edge entered stress.",
		})),
	}
}

// Active reports whether the edge is under stress.
func (st *Stress) Active() bool { return st != nil && st.on.Load() }

// update takes the count of open connections; entered is true when this
// count began the stress.
func (st *Stress) update(open int) (entered bool) {
	if st == nil || st.at <= 0 {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.open = open
	if open >= st.at {
		if st.timer != nil {
			st.timer.Stop()
			st.timer = nil
			st.gen++
		}
		if st.on.Load() {
			return false
		}
		st.on.Store(true)
		st.since = time.Now()
		st.gauge.Set(1)
		st.entered.Inc()
		// Postfix's master: 'service "smtp" (25) has reached its
		// process limit "100": new clients may experience noticeable
		// delays'.
		st.log.Warn("stress: entered: the edge has reached smtpgate_stress_threshold; the ${stress} settings apply (see STRESS_README)",
			"connections", open, "threshold", st.at, "smtpgate_max_connections", st.max)
		return true
	}
	if st.on.Load() && st.timer == nil {
		st.gen++
		gen := st.gen
		st.timer = time.AfterFunc(st.hold, func() { st.leave(gen) })
	}
	return false
}

// leave ends the stress when the timer gen is still the current one.
func (st *Stress) leave(gen int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if gen != st.gen || !st.on.Load() || st.open >= st.at {
		return
	}
	st.timer = nil
	st.on.Store(false)
	st.gauge.Set(0)
	st.log.Info("stress: left: connections stayed below smtpgate_stress_threshold for smtpgate_stress_hold_time",
		"connections", st.open, "threshold", st.at, "hold", st.hold.String(), "lasted", time.Since(st.since).Round(time.Second).String())
}

// shorten gives every session that waits for its client, and whose
// listener's timeout is shorter under stress, the stress timeout counted
// from when it began to wait: an idle client that has waited longer than
// that is dropped at once, with the timeout's 421. Postfix's smtpd
// processes keep the timeout they started with; the sessions of an edge
// are not processes, and the clients that filled it are exactly the ones
// waiting. It returns how many sessions got a shorter deadline.
func (d *Drain) shorten() int {
	if d == nil {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for s := range d.live {
		s.drain.mu.Lock()
		if a := s.l.UnderStress; a != nil && !s.drain.waitSince.IsZero() && a.Timeout > 0 &&
			(s.l.Timeout <= 0 || a.Timeout < s.l.Timeout) && !d.stops(s) {
			_ = s.wire.raw.SetReadDeadline(s.drain.waitSince.Add(a.Timeout))
			n++
		}
		s.drain.mu.Unlock()
	}
	return n
}
