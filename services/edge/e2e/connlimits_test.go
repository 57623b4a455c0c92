package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// secondEdge runs another smtpgate-edge, with a policy replica of its
// own, on a copy of s's configuration: the listeners on host instead of
// 127.0.0.1 (same ports), so that the policy replica, which knows the
// listeners by their master.cf names, is another process too. The edge's
// metrics listen on metricsPort. They are the stack's processes edge2
// and policy2. It returns the edge log's path.
func (s *stack) secondEdge(host string, metricsPort int) string {
	s.t.Helper()
	dir := s.t.TempDir()
	entries, err := os.ReadDir(s.conf)
	if err != nil {
		s.t.Fatal(err)
	}
	policyPort := freePort(s.t)
	for _, e := range entries {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.conf, e.Name()))
		if err != nil {
			s.t.Fatal(err)
		}
		switch e.Name() {
		case "master.cf":
			b = []byte(strings.ReplaceAll(string(b), "127.0.0.1:", host+":"))
		case "main.cf":
			b = append(b, fmt.Sprintf(`
smtpgate_edge_metrics_listen = 127.0.0.1:%d
smtpgate_policy_listen = 127.0.0.1:%d
smtpgate_policy_delegation_listen = 127.0.0.1:%d
smtpgate_policy_metrics_listen = 127.0.0.1:%d
`, metricsPort, policyPort, freePort(s.t), freePort(s.t))...)
		}
		write(s.t, filepath.Join(dir, e.Name()), string(b))
	}
	s.startAs("policy2", "policy", dir, []string{net.JoinHostPort("127.0.0.1", itoa(policyPort))})
	s.startAs("edge2", "edge", dir, []string{net.JoinHostPort(host, itoa(s.port["mx"]))})
	return s.logs["edge2"]
}

// greeted is one connection and the first line the server sent.
type greeted struct {
	*rawSMTP
	reply string
}

// connect opens a connection from Stranger to addr and reads the first
// reply line.
func connect(t *testing.T, addr string) *greeted {
	t.Helper()
	return connectFrom(t, Stranger, addr)
}

// connectFrom opens a connection from the source address from to addr
// and reads the first reply line.
func connectFrom(t *testing.T, from, addr string) *greeted {
	t.Helper()
	r, err := dialRaw(from, addr, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	line, err := r.line()
	if err != nil {
		r.close()
		t.Fatalf("%s: no greeting: %v", addr, err)
	}
	return &greeted{rawSMTP: r, reply: line}
}

// do sends a command and returns the last line of the reply.
func (g *greeted) do(t *testing.T, cmd string) string {
	t.Helper()
	if err := g.writeLine(cmd); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	line, err := g.last()
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return line
}

// quit ends an admitted session politely.
func (g *greeted) quit(t *testing.T) {
	t.Helper()
	if got := g.do(t, "QUIT"); !strings.HasPrefix(got, "221 ") {
		t.Errorf("QUIT: %q", got)
	}
	g.conn.Close()
}

func admitted(g *greeted) bool { return strings.HasPrefix(g.reply, "220 ") }

// mxOn is the address of the mx listener on each of hosts (the edge on
// 127.0.0.1, a second edge on 127.0.0.2).
func (s *stack) mxOn(hosts ...string) []string {
	var addrs []string
	for _, h := range hosts {
		addrs = append(addrs, net.JoinHostPort(h, itoa(s.port["mx"])))
	}
	return addrs
}

// admitAtOnce opens n connections at once, the i-th from from(i) to
// edges[i%len(edges)], and returns the admitted ones; each other one must
// have been refused with refusal(i), and is closed.
func admitAtOnce(t *testing.T, edges []string, n int, from, refusal func(i int) string) []*greeted {
	t.Helper()
	conns := make([]*greeted, n)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() { conns[i] = connectFrom(t, from(i), edges[i%len(edges)]) })
	}
	wg.Wait()
	var open []*greeted
	for i, g := range conns {
		switch want := refusal(i); {
		case admitted(g):
			open = append(open, g)
		case g.reply != want:
			t.Errorf("connection %d from %s refused with %q, want %q", i, from(i), g.reply, want)
			g.conn.Close()
		default:
			g.conn.Close()
		}
	}
	return open
}

const tooMany = "421 4.7.0 mail.example.org Error: too many connections from " + Stranger

// Two smtpgate-edge processes sharing one redis-server hold
// smtpd_client_connection_count_limit for a client across both: of 10
// connections at once, spread over the two edges, exactly 3 get the
// greeting and the others Postfix's 421; after 2 close, exactly 2 more
// are admitted. With redis-server stopped the sessions go on and each
// edge applies the limit to its own connections, and says so in its log
// and its metrics.
func TestConnectionLimitAcrossEdges(t *testing.T) {
	const limit = 3
	redis := redistest.Start(t)
	s := newStack(t, fmt.Sprintf(`smtpd_client_connection_count_limit = %d
smtpgate_connection_limit_redis = %s
`, limit, redis.URL()))
	secondMetrics := freePort(t)
	secondLog := s.secondEdge("127.0.0.2", secondMetrics)
	edges := s.mxOn("127.0.0.1", "127.0.0.2")

	// All at once, alternating between the edges.
	open := admitAtOnce(t, edges, 10, func(int) string { return Stranger }, func(int) string { return tooMany })
	if len(open) != limit {
		t.Fatalf("%d of 10 connections admitted across the two edges, want exactly %d", len(open), limit)
	}

	// Two close; two new ones are admitted (as soon as the edges have
	// released the leases), and a third is refused.
	open[0].quit(t)
	open[1].quit(t)
	open = open[2:]
	for i := range 2 {
		g := connectUntilAdmitted(t, edges[i%2])
		open = append(open, g)
	}
	for _, addr := range edges {
		if g := connect(t, addr); g.reply != tooMany {
			t.Errorf("%s: over the limit again: %q, want %q", addr, g.reply, tooMany)
			g.conn.Close()
		}
	}
	for _, g := range open {
		if got := g.do(t, "EHLO client.example.net"); !strings.HasPrefix(got, "250 ") {
			t.Errorf("EHLO in an admitted session: %q", got)
		}
	}

	// Redis stops in the middle: the sessions go on.
	redis.Stop()
	for _, g := range open {
		if got := g.do(t, "MAIL FROM:<someone@example.net>"); !strings.HasPrefix(got, "250 ") {
			t.Errorf("MAIL with Redis stopped: %q", got)
		}
		g.quit(t)
	}
	// New connections are counted per edge: each edge admits the limit
	// of its own while the other holds as many, and refuses the next.
	var held []*greeted
	for i, addr := range edges {
		for range limit {
			held = append(held, connectUntilAdmitted(t, addr))
		}
		if g := connect(t, addr); g.reply != tooMany {
			t.Errorf("edge %d with Redis down: connection %d got %q, want %q", i+1, limit+1, g.reply, tooMany)
			g.conn.Close()
		}
	}
	var tokens []string
	for _, g := range []*greeted{held[0], held[limit]} {
		tok := newToken("connlimit")
		tokens = append(tokens, tok)
		if err := deliverRaw(t, g, tok); err != nil {
			t.Errorf("delivery with Redis down: %v", err)
		}
	}
	for _, g := range held {
		g.quit(t)
	}
	got := s.maildirTokens()
	for _, tok := range tokens {
		if got[tok] != 1 {
			t.Errorf("%s delivered %d times, want once", tok, got[tok])
		}
	}
	const degraded = "connection limits: redis failed; counting this process's connections only"
	for i, log := range []string{s.logs["edge"], secondLog} {
		b, _ := os.ReadFile(log)
		if !strings.Contains(string(b), degraded) {
			t.Errorf("edge %d log lacks %q", i+1, degraded)
		}
	}
	for i, port := range []int{s.port["edge-metrics"], secondMetrics} {
		if v := metric(t, port, "smtpgate_edge_connection_limit_fallbacks_total"); v == "" || v == "0" {
			t.Errorf("edge %d: smtpgate_edge_connection_limit_fallbacks_total = %q, want > 0", i+1, v)
		}
	}
}

// connectUntilAdmitted connects until the greeting is a 220: a session
// just closed gives its place back when the edge has seen the close.
func connectUntilAdmitted(t *testing.T, addr string) *greeted {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		g := connect(t, addr)
		if admitted(g) {
			return g
		}
		g.conn.Close()
		if g.reply != tooMany || time.Now().After(deadline) {
			t.Fatalf("%s: %q, want a 220 greeting", addr, g.reply)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// deliverRaw delivers a message to john@example.org in an admitted session.
func deliverRaw(t *testing.T, g *greeted, token string) error {
	t.Helper()
	for _, step := range []struct{ cmd, want string }{
		{"EHLO client.example.net", "250 "},
		{"MAIL FROM:<someone@example.net>", "250 "},
		{"RCPT TO:<john@example.org>", "250 "},
		{"DATA", "354 "},
		{"Subject: " + token + "\r\n\r\nbody\r\n.", "250 "},
	} {
		if got := g.do(t, step.cmd); !strings.HasPrefix(got, step.want) {
			return fmt.Errorf("%q: %q", strings.SplitN(step.cmd, "\r\n", 2)[0], got)
		}
	}
	return nil
}

// metric returns the value of an unlabelled metric on the /metrics page
// at port, or "".
func metric(t *testing.T, port int, name string) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	return ""
}

// smtpd_client_connection_rate_limit across two edges sharing one
// redis-server: 4 connections per anvil_rate_time_unit, whichever edge
// takes them, then Postfix's 421 from both. With redis-server stopped,
// each edge goes on from its own count of the connections it saw.
func TestConnectionRateAcrossEdges(t *testing.T) {
	redis := redistest.Start(t)
	s := newStack(t, `smtpd_client_connection_rate_limit = 4
anvil_rate_time_unit = 1h
smtpgate_connection_limit_redis = `+redis.URL()+`
`)
	s.secondEdge("127.0.0.2", freePort(t))
	edges := s.mxOn("127.0.0.1", "127.0.0.2")
	var got []string
	for i := range 6 {
		g := connect(t, edges[i%2])
		got = append(got, g.reply)
		if admitted(g) {
			g.quit(t)
		} else {
			g.conn.Close()
		}
	}
	for i, r := range got {
		want := "220 "
		if i >= 4 {
			want = tooMany
		}
		if !strings.HasPrefix(r, want) {
			t.Errorf("connection %d (edge %d): %q, want %q", i+1, i%2+1, r, want)
		}
	}
	// Each edge has seen 3 connections of the client; on its own it
	// allows a fourth, then refuses.
	redis.Stop()
	for i, addr := range edges {
		g := connect(t, addr)
		if !admitted(g) {
			t.Errorf("edge %d with Redis down: %q, want the fourth connection it saw admitted", i+1, g.reply)
			g.conn.Close()
			continue
		}
		g.quit(t)
		if g := connect(t, addr); g.reply != tooMany {
			t.Errorf("edge %d with Redis down: %q, want %q", i+1, g.reply, tooMany)
			g.conn.Close()
		}
	}
}
