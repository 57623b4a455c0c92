package smtpd

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// smtpgate_network_connection_count_limit: the /24 of an IPv4 address
// (an IPv4-mapped one too), the /64 of an IPv6 one, per listener; the
// reply is Postfix's for the per-address limit; exempt clients are not
// counted.
func TestConnLimitsNetwork(t *testing.T) {
	c := &ConnLimits{}
	mx := &Listener{Name: "mx", Hostname: "mx.example", NetworkCountLimit: 2}
	sub := &Listener{Name: "submission", Hostname: "mx.example", NetworkCountLimit: 2}
	admit := func(l *Listener, addr string, exempt bool) string {
		a := c.admit(context.Background(), l, addr, exempt)
		t.Cleanup(a.release)
		if a.ok {
			return "ok"
		}
		return a.r.Text()
	}
	for _, tc := range []struct {
		l      *Listener
		addr   string
		exempt bool
		want   string
	}{
		{mx, "192.0.2.1", false, "ok"},
		{mx, "::ffff:192.0.2.200", false, "ok"},
		{mx, "192.0.2.7", false, "421 4.7.0 mx.example Error: too many connections from 192.0.2.7"},
		{mx, "192.0.2.8", true, "ok"},   // exempt
		{mx, "192.0.3.1", false, "ok"},  // another /24
		{sub, "192.0.2.9", false, "ok"}, // another listener
		{mx, "2001:db8:1:2::1", false, "ok"},
		{mx, "2001:db8:1:2:ffff::9", false, "ok"},
		{mx, "2001:db8:1:2::abcd", false, "421 4.7.0 mx.example Error: too many connections from 2001:db8:1:2::abcd"},
		{mx, "2001:db8:1:3::1", false, "ok"}, // another /64
	} {
		if got := admit(tc.l, tc.addr, tc.exempt); got != tc.want {
			t.Errorf("%s from %s (exempt %v): %q, want %q", tc.l.Name, tc.addr, tc.exempt, got, tc.want)
		}
	}
	wide := &Listener{Name: "wide", Hostname: "mx.example", NetworkCountLimit: 1, IPv4Prefix: 16, IPv6Prefix: 48}
	for _, tc := range []struct{ addr, want string }{
		{"198.51.1.1", "ok"},
		{"198.51.200.1", "421 4.7.0 mx.example Error: too many connections from 198.51.200.1"},
		{"2001:db8:5::1", "ok"},
		{"2001:db8:5:ffff::1", "421 4.7.0 mx.example Error: too many connections from 2001:db8:5:ffff::1"},
	} {
		if got := admit(wide, tc.addr, false); got != tc.want {
			t.Errorf("/16 and /48 from %s: %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// smtpgate_connection_reserve: of smtpgate_max_connections 6, submission
// keeps 2 and submissions 1; MX gets the other 3 and no more, while
// submission still gets its 2 and then, with MX quiet, the shared ones.
func TestConnLimitsReserves(t *testing.T) {
	c := &ConnLimits{Max: 6}
	c.SetReserves(map[string]int{"mx": 0, "submission": 2, "submissions": 1})
	mx, sub := &Listener{Name: "mx"}, &Listener{Name: "submission"}
	var releases []func()
	admit := func(l *Listener) string {
		a := c.admit(context.Background(), l, "192.0.2.1", false)
		if a.ok {
			releases = append(releases, a.release)
			return "ok"
		}
		a.release()
		return a.r.Text()
	}
	const busy = "421 4.3.2 All server ports are busy"
	var got []string
	for range 4 {
		got = append(got, admit(mx))
	}
	for range 3 {
		got = append(got, admit(sub))
	}
	want := []string{"ok", "ok", "ok", busy, "ok", "ok", busy}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("MX 4 times, submission 3 times:\n got %q\nwant %q", got, want)
	}
	// MX lets go of its 3: submission may take them (submissions' one
	// stays kept).
	for _, r := range releases[:3] {
		r()
	}
	got = got[:0]
	for range 4 {
		got = append(got, admit(sub))
	}
	want = []string{"ok", "ok", "ok", busy}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("submission with MX quiet:\n got %q\nwant %q", got, want)
	}
}

// Stress is entered at its threshold, once, and left only when the count
// has stayed below it for the hold time; a count back over the threshold
// meanwhile keeps it on.
func TestStressTransitions(t *testing.T) {
	logs := &logBuffer{}
	reg := prometheus.NewRegistry()
	st := NewStress(3, time.Hour, 4, slog.New(slog.NewJSONHandler(logs, nil)), reg)
	gauge := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "smtpgate_edge_stress" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no smtpgate_edge_stress")
		return 0
	}
	for i, tc := range []struct {
		open    int
		entered bool
		active  bool
	}{{1, false, false}, {2, false, false}, {3, true, true}, {4, false, true}, {2, false, true}, {3, false, true}, {2, false, true}} {
		if got := st.update(tc.open); got != tc.entered || st.Active() != tc.active {
			t.Errorf("step %d, %d open: entered %v active %v, want %v %v", i, tc.open, got, st.Active(), tc.entered, tc.active)
		}
	}
	if gauge() != 1 || testutil.ToFloat64(st.entered) != 1 {
		t.Errorf("under stress: gauge %v, entered %v; want 1, 1", gauge(), testutil.ToFloat64(st.entered))
	}
	// The hold time passes (the current timer fires); an older timer
	// firing late does nothing.
	st.mu.Lock()
	gen := st.gen
	st.mu.Unlock()
	st.leave(gen - 1)
	if !st.Active() {
		t.Fatal("a stale timer ended the stress")
	}
	st.leave(gen)
	if st.Active() || gauge() != 0 {
		t.Errorf("after the hold time: active %v, gauge %v", st.Active(), gauge())
	}
	var entered, left int
	for _, r := range logs.records(t) {
		msg, _ := r["msg"].(string)
		switch {
		case strings.HasPrefix(msg, "stress: entered"):
			entered++
			if r["connections"] != float64(3) || r["threshold"] != float64(3) {
				t.Errorf("entered: %v", r)
			}
		case strings.HasPrefix(msg, "stress: left"):
			left++
		}
	}
	if entered != 1 || left != 1 {
		t.Errorf("logged %d entries and %d exits, want one each", entered, left)
	}
	var never *Stress
	if never.update(100) || never.Active() {
		t.Error("a nil Stress is under stress")
	}
}

// Under stress a session uses its listener's UnderStress settings: an
// idle session that began before the stress is given the stress timeout
// at once (counted from when it began to wait) and dropped with
// Postfix's timeout reply; a session in stress ends at its first error
// (smtpd_hard_error_limit 1), which its third junk command is
// (smtpd_junk_command_limit 1). When the connections are gone and the
// hold time has passed, the normal settings are back.
func TestStressSessions(t *testing.T) {
	h := newHarness(t, permit, nil)
	logs := &logBuffer{}
	stress := NewStress(2, 50*time.Millisecond, 10, slog.New(slog.NewJSONHandler(logs, nil)), nil)
	srv := &Server{Config: Config{Policy: h.policy, Auth: h.auth, Limits: &ConnLimits{Max: 10, Stress: stress}, Drain: &Drain{},
		Logger: slog.New(slog.NewJSONHandler(h.logs, nil))}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	l := *h.l
	l.Timeout, l.HardErrorLimit, l.JunkCommandLimit = time.Hour, 20, 100
	l.UnderStress = &Adaptive{Timeout: time.Second, HardErrorLimit: 1, JunkCommandLimit: 1}
	serveAll(t, srv, ln, &l)

	idle := h.ehlo("250")
	// Not under stress: errors and junk are allowed.
	idle.do("MAIL", "501")
	idle.do("NOOP", "250")
	idle.do("NOOP", "250")
	idle.do("NOOP", "250")
	if stress.Active() {
		t.Fatal("under stress with one connection")
	}

	busy := h.dial()
	busy.reply()
	if !stress.Active() {
		t.Fatal("not under stress with two connections")
	}
	// Postfix counts an error for each junk command once more than the
	// limit were seen: with 1, the third; the hard limit, 1, ends the
	// session before the next command.
	busy.do("NOOP", "250")
	busy.do("NOOP", "250")
	busy.do("NOOP", "250")
	if got := busy.reply(); got != "421 4.7.0 mail.example.org Error: too many errors" {
		t.Errorf("third junk command under stress: %q", got)
	}
	// The idle session, which waited with an hour's deadline, got the
	// stress timeout when the stress began.
	if got := idle.reply(); got != "421 4.4.2 mail.example.org Error: timeout exceeded" {
		t.Errorf("idle session under stress: %q", got)
	}

	// Policy is told: the idle session's requests came before the
	// stress, the busy one's connect check under it.
	reqs := h.requests()
	if len(reqs) < 2 || reqs[0].GetSession().GetStress() || !reqs[len(reqs)-1].GetSession().GetStress() {
		var got []bool
		for _, r := range reqs {
			got = append(got, r.GetSession().GetStress())
		}
		t.Errorf("stress in the policy requests: %v, want false first and true last", got)
	}

	// Both gone: the stress ends after the hold time.
	deadline := time.Now().Add(10 * time.Second)
	for stress.Active() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if stress.Active() {
		t.Fatal("still under stress with no connection")
	}
	calm := h.dial()
	calm.reply()
	calm.do("MAIL", "501")
	calm.do("NOOP", "250")
	calm.do("NOOP", "250")
	calm.do("QUIT", "221")
	if reqs := h.requests(); reqs[len(reqs)-1].GetSession().GetStress() {
		t.Error("policy told of stress after it ended")
	}
	if !strings.Contains(logs.String(), "stress: left") {
		t.Errorf("no line for the end of the stress:\n%s", logs.String())
	}
}
