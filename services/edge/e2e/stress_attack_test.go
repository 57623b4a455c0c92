package e2e

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// floodConn is one connection of the flood and its greeting.
type floodConn struct {
	from string
	*rawSMTP
	reply string
}

// dialFlood opens a connection from from to addr and reads the first
// line; an error fails the test.
func dialFlood(t *testing.T, from, addr string) *floodConn {
	t.Helper()
	r, err := dialRaw(from, addr, 60*time.Second)
	if err != nil {
		t.Errorf("flood from %s: %v", from, err)
		return nil
	}
	line, err := r.line()
	if err != nil {
		r.close()
		t.Errorf("flood from %s: no greeting: %v", from, err)
		return nil
	}
	return &floodConn{from: from, rawSMTP: r, reply: line}
}

// The attack of issue 16: 20 addresses, in six /24s, open 50 idle
// connections each (1000) to the MX listener of an edge with
// smtpgate_max_connections = 600, of which deploy/local keeps 50 for
// submission and 50 for submissions (smtpgate_connection_reserve).
// Without fairness the flood takes every place and everyone else gets
// "421 4.3.2 All server ports are busy" for smtpd_timeout's 300 s.
//
// With it: smtpgate_network_connection_count_limit (80 per /24 here)
// admits exactly 6 × 80 = 480 of the flood and refuses the rest with
// Postfix's "too many connections" reply; 480 is the stress threshold
// (80 % of 600), so the edge enters stress, says so once in its log and
// in smtpgate_edge_stress; while the flood holds its 480 connections and
// other clients fill what is left of MX's places, submission and
// submissions still greet, authenticate and deliver (their reserve), and
// once the fillers leave an MX client from another /24 delivers; every
// idle flood connection is then dropped with the stress smtpd_timeout
// (Postfix's default ${stress?{10}:{300}}s) and its 421 4.4.2, not 300 s
// later; and with the flood gone the edge leaves stress after
// smtpgate_stress_hold_time.
func TestStressAttack(t *testing.T) {
	const (
		maxConns   = 600
		netLimit   = 80
		perAddress = 50
		stressAt   = 480 // 80 % of maxConns
	)
	s := newStack(t, fmt.Sprintf(`smtpgate_max_connections = %d
smtpgate_network_connection_count_limit = %d
smtpgate_stress_hold_time = 2s
`, maxConns, netLimit))
	mx := net.JoinHostPort("127.0.0.1", itoa(s.port["mx"]))

	// 20 flood addresses: 4 in each of 127.0.1.0/24 and 127.0.2.0/24, 3
	// in each of 127.0.3-6.0/24.
	var addrs []string
	for n := 1; n <= 6; n++ {
		k := 3
		if n <= 2 {
			k = 4
		}
		for h := 1; h <= k; h++ {
			addrs = append(addrs, fmt.Sprintf("127.0.%d.%d", n, h))
		}
	}
	if len(addrs) != 20 {
		t.Fatalf("%d flood addresses", len(addrs))
	}
	// At most 10 connections in flight: a refused one counts until it
	// closes, and 10 keep the count under MX's 500 places.
	var (
		mu       sync.Mutex
		held     []*floodConn
		perNet   = map[string]int{}
		refusals = map[string]int{}
	)
	sem := make(chan struct{}, 10)
	var wg sync.WaitGroup
	for i := range perAddress * len(addrs) {
		from := addrs[i%len(addrs)]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f := dialFlood(t, from, mx)
			if f == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			switch want := "421 4.7.0 mail.example.org Error: too many connections from " + from; {
			case strings.HasPrefix(f.reply, "220 "):
				held = append(held, f)
				perNet[from[:strings.LastIndexByte(from, '.')]]++
			case f.reply == want:
				refusals["too many connections"]++
				f.conn.Close()
			default:
				refusals[f.reply]++
				f.conn.Close()
			}
		})
	}
	wg.Wait()
	defer func() {
		for _, f := range held {
			f.conn.Close()
		}
	}()
	t.Logf("flood: %d admitted, refusals %v, per /24 %v", len(held), refusals, perNet)
	if len(held) != stressAt || refusals["too many connections"] != perAddress*len(addrs)-stressAt {
		t.Fatalf("flood: %d admitted and %v refused, want exactly %d admitted (%d per /24) and the others refused with Postfix's too many connections",
			len(held), refusals, stressAt, netLimit)
	}
	for n, k := range perNet {
		if k != netLimit {
			t.Errorf("%s.0/24: %d connections admitted, want %d", n, k, netLimit)
		}
	}

	// The edge is under stress, and said so once.
	if v := metric(t, s.port["edge-metrics"], "smtpgate_edge_stress"); v != "1" {
		t.Errorf("smtpgate_edge_stress = %q under the flood, want 1", v)
	}
	if n := strings.Count(edgeLog(t, s), "stress: entered"); n != 1 {
		t.Errorf("the edge logged %d \"stress: entered\" lines, want 1", n)
	}

	// Others fill what is left of MX's places (from 127.0.8.0/24, then
	// 127.0.10.0/24: 80 per network), until MX is full.
	var fillers []*floodConn
	full := false
	for i := 0; i < 2*netLimit && !full; i++ {
		f := dialFlood(t, fmt.Sprintf("127.0.%d.%d", 8+2*(i/netLimit), i%netLimit+1), mx)
		if f == nil {
			break
		}
		if strings.HasPrefix(f.reply, "220 ") {
			fillers = append(fillers, f)
			continue
		}
		f.conn.Close()
		if f.reply != "421 4.3.2 All server ports are busy" {
			t.Fatalf("filler %d: %q, want a 220 or 421 4.3.2 All server ports are busy", i, f.reply)
		}
		full = true
	}
	t.Logf("MX full after %d more connections", len(fillers))
	if !full {
		t.Errorf("MX still admits after the flood and %d more connections", len(fillers))
	}
	// Submission and submissions keep their reserve: greeting, STARTTLS
	// or implicit TLS, AUTH, a message relayed.
	var tokens []string
	for _, m := range []message{
		{from: "127.0.9.10", listener: "submission", startTLS: true, auth: plain(JohnPassword), sender: "john@example.org", rcpts: []string{"lisa@example.com"}},
		{from: "127.0.9.11", listener: "submissions", implicitTLS: true, auth: plain(JohnPassword), sender: "john@example.org", rcpts: []string{"lisa@example.com"}},
	} {
		m.token = newToken("stress-" + m.listener)
		if err := s.send(m); err != nil {
			t.Errorf("%s with MX full: %s", m.listener, replyOf(err))
			continue
		}
		tokens = append(tokens, m.token)
	}
	for _, f := range fillers {
		f.conn.Close()
	}
	// An MX client of another network delivers while the flood holds
	// its 480 connections.
	m := message{from: "127.0.9.9", listener: "mx", sender: "someone@example.net", rcpts: []string{"john@example.org"}, token: newToken("stress-mx")}
	if err := sendWhenAdmitted(t, s, m); err != nil {
		t.Errorf("MX client during the flood: %s", replyOf(err))
	} else {
		tokens = append(tokens, m.token)
	}

	// Every idle flood connection is dropped with the stress timeout's
	// 421 (their read deadline is 60 s away, the normal timeout 300 s).
	dropped := map[string]int{}
	var dwg sync.WaitGroup
	for _, f := range held {
		dwg.Go(func() {
			got, err := f.line()
			if err != nil && got == "" {
				got = err.Error()
			}
			mu.Lock()
			dropped[got]++
			mu.Unlock()
		})
	}
	dwg.Wait()
	const timeout = "421 4.4.2 mail.example.org Error: timeout exceeded"
	if dropped[timeout] != stressAt {
		t.Errorf("flood connections ended with %v, want all %d with %q", dropped, stressAt, timeout)
	}

	// The flood gone, stress ends after smtpgate_stress_hold_time.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(edgeLog(t, s), "stress: left") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := strings.Count(edgeLog(t, s), "stress: left"); n != 1 {
		t.Errorf("the edge logged %d \"stress: left\" lines, want 1", n)
	}
	if v := metric(t, s.port["edge-metrics"], "smtpgate_edge_stress"); v != "0" {
		t.Errorf("smtpgate_edge_stress = %q after the flood, want 0", v)
	}
	got := s.maildirTokens()
	for _, tok := range tokens {
		if got[tok] != 1 {
			t.Errorf("%s delivered %d times, want once", tok, got[tok])
		}
	}
	if len(tokens) != 3 {
		t.Errorf("%d of 3 legitimate messages delivered", len(tokens))
	}
}

// edgeLog is the whole log of the stack's edge (stack.log keeps its end
// only).
func edgeLog(t *testing.T, s *stack) string {
	t.Helper()
	b, err := os.ReadFile(s.logs["edge"])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sendWhenAdmitted sends m, retrying while the edge has not yet seen the
// fillers' connections close (a 421 4.3.2 greeting), for up to 30 s.
func sendWhenAdmitted(t *testing.T, s *stack, m message) error {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.send(m)
		if err == nil || !strings.Contains(replyOf(err), "All server ports are busy") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// smtpgate_network_connection_count_limit across two edges sharing one
// redis-server: six addresses of 127.0.7.0/24, alternating between the
// edges, get exactly 3 places (the limit) in all; the others Postfix's
// reply for the per-address limit, with their own address; a client of
// another /24 is not counted with them; when one of the 3 closes, one
// more of the network is admitted.
func TestNetworkLimitAcrossEdges(t *testing.T) {
	const limit = 3
	redis := redistest.Start(t)
	s := newStack(t, fmt.Sprintf(`smtpgate_network_connection_count_limit = %d
smtpgate_connection_limit_redis = %s
`, limit, redis.URL()))
	s.secondEdge("127.0.0.2", freePort(t))
	edges := s.mxOn("127.0.0.1", "127.0.0.2")
	from := func(i int) string { return fmt.Sprintf("127.0.7.%d", i+1) }
	open := admitAtOnce(t, edges, 6, from, func(i int) string {
		return "421 4.7.0 mail.example.org Error: too many connections from " + from(i)
	})
	if len(open) != limit {
		t.Fatalf("%d of 6 connections from one /24 admitted across two edges, want exactly %d", len(open), limit)
	}
	other := connectFrom(t, "127.0.17.1", edges[1])
	if !admitted(other) {
		t.Errorf("a client of another /24: %q", other.reply)
	} else {
		other.quit(t)
	}
	open[0].quit(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		g := connectFrom(t, "127.0.7.200", edges[0])
		if admitted(g) {
			open = append(open[1:], g)
			break
		}
		g.conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("after one of the network's connections closed: %q, want a 220", g.reply)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if g := connectFrom(t, "127.0.7.201", edges[1]); admitted(g) {
		t.Errorf("the network is full again, yet the other edge admitted 127.0.7.201")
		g.quit(t)
	} else {
		g.conn.Close()
	}
	for _, g := range open {
		g.quit(t)
	}
}
