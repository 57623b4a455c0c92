package e2e

import (
	"encoding/base64"
	"fmt"
	"net/smtp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestScale runs smtpgate scaled out on loopback (see cluster): HAProxy →
// two edges → two policy and two auth replicas → one redis-server, with
// one recording next hop, and shows that
//   - policy judges the real client behind HAProxy (mynetworks, DNSBL);
//   - a rate limit and AUTH throttling count once across all replicas;
//   - killing an edge and a policy replica under load loses no message a
//     client saw 250 for, lets nothing through that must be refused, and
//     the dead edge's clients get through on retry.
//
// At the end the next hop holds every message a client saw 250 for
// exactly once, none that was refused before its end, and nothing else.
func TestScale(t *testing.T) {
	c := newCluster(t)
	l := &sinkLedger{unsure: map[string]string{}}
	t.Run("client addresses survive HAProxy", func(t *testing.T) { c.testAddresses(t, l) })
	t.Run("rate limit counts once across replicas", func(t *testing.T) { c.testRateLimit(t, l) })
	t.Run("AUTH throttling counts once across replicas", func(t *testing.T) { c.testAuthThrottle(t) })
	t.Run("kills under load lose nothing", func(t *testing.T) { c.testKills(t, l) })
	l.check(t, c.sink)
}

// sinkLedger records what the clients of a test were told about each
// message (by token).
type sinkLedger struct {
	mu       sync.Mutex
	accepted []string          // 250 at the final dot: must be at the next hop once
	refused  []string          // refused by policy: must not be at the next hop
	unsure   map[string]string // anything else (what the client saw): may be there
}

func (l *sinkLedger) accept(token string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.accepted = append(l.accepted, token)
}

func (l *sinkLedger) refuse(token string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refused = append(l.refused, token)
}

func (l *sinkLedger) unsureOf(token string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unsure[token] = replyOf(err)
}

// check compares the next hop with the ledger.
func (l *sinkLedger) check(t *testing.T, k *recordingSink) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	counts := k.counts()
	for _, tok := range l.accepted {
		switch n := counts[tok]; n {
		case 1:
		case 0:
			t.Errorf("message %s was answered 250 but is not at the next hop", tok)
		default:
			t.Errorf("message %s was answered 250 once but is at the next hop %d times", tok, n)
		}
		delete(counts, tok)
	}
	for _, tok := range l.refused {
		if counts[tok] != 0 {
			t.Errorf("message %s was refused but is at the next hop", tok)
		}
		delete(counts, tok)
	}
	var afterReply, afterDrop []string
	for tok, saw := range l.unsure {
		if counts[tok] == 0 {
			continue
		}
		if counts[tok] > 1 {
			t.Errorf("message %s (client saw %q) is at the next hop %d times", tok, saw, counts[tok])
		}
		if strings.HasPrefix(saw, "4") || strings.HasPrefix(saw, "5") {
			afterReply = append(afterReply, tok+" ("+saw+")")
		} else {
			afterDrop = append(afterDrop, tok+" ("+saw+")")
		}
		delete(counts, tok)
	}
	for tok, n := range counts {
		t.Errorf("the next hop holds %d copies of %q, which no client sent", n, tok)
	}
	t.Logf("next hop: %d messages answered 250, all there once; %d refused, none there; of %d attempts without a 250, %d are there after a lost connection (duplicates when retried) and %d after an error reply",
		len(l.accepted), len(l.refused), len(l.unsure), len(afterDrop), len(afterReply))
	for _, s := range afterReply {
		t.Logf("at the next hop after an error reply: %s", s)
	}
}

// expect runs m's transaction on a session on edge (any edge if ""), and
// records the outcome: want "" expects a 250, otherwise a refusal whose
// reply starts with want.
func (c *cluster) expect(t *testing.T, l *sinkLedger, edge string, m message, want string) string {
	t.Helper()
	m.token = newToken("scale")
	sc, got, err := c.dialEdge(m.from, edge)
	if err != nil {
		t.Errorf("from %s: %v", m.from, err)
		return m.token
	}
	defer sc.Close()
	err = transact(sc, m)
	switch {
	case err == nil && want == "":
		l.accept(m.token)
		_ = sc.Quit()
	case err == nil:
		l.accept(m.token)
		t.Errorf("from %s via %s to %v: 250, want %q", m.from, got, m.rcpts, want)
	case want == "":
		l.unsureOf(m.token, err)
		t.Errorf("from %s via %s to %v: %q, want 250", m.from, got, m.rcpts, replyOf(err))
	default:
		l.refuse(m.token)
		if r := replyOf(err); !strings.HasPrefix(r, want) {
			t.Errorf("from %s via %s to %v: %q, want %q", m.from, got, m.rcpts, r, want)
		}
	}
	return m.token
}

// testAddresses: through HAProxy (which connects from 127.0.0.1, in
// mynetworks) policy sees each real client, on both edges.
func (c *cluster) testAddresses(t *testing.T, l *sinkLedger) {
	const stranger = "127.0.0.67"
	for _, edge := range []string{"edge1", "edge2"} {
		// A stranger may not relay: policy did not see HAProxy's address.
		c.expect(t, l, edge, message{from: stranger, sender: "someone@example.net", rcpts: []string{"b@example.com"}},
			"554 5.7.1 <b@example.com>: Relay access denied")
		// The trusted client relays: policy saw 127.0.0.10.
		tok := c.expect(t, l, edge, message{from: clusterTrusted, sender: "john@example.org", rcpts: []string{"b@example.com"}}, "")
		if m := c.sink.message(tok); !strings.Contains(m, "Received: from client.example.net (unknown ["+clusterTrusted+"])") {
			t.Errorf("%s: the Received header of %s does not name %s:\n%.500s", edge, tok, clusterTrusted, m)
		}
		// The DNSBL lists 127.0.0.66, not 127.0.0.67.
		c.expect(t, l, edge, message{from: clusterListed, sender: "someone@example.net", rcpts: []string{"john@example.org"}}, clusterDNSBLReply)
		tok = c.expect(t, l, edge, message{from: stranger, sender: "someone@example.net", rcpts: []string{"john@example.org"}}, "")
		if m := c.sink.message(tok); !strings.Contains(m, "Received: from client.example.net (unknown ["+stranger+"])") {
			t.Errorf("%s: the Received header of %s does not name %s:\n%.500s", edge, tok, stranger, m)
		}
	}
}

// testRateLimit: check_rate_limit msgs (clusterRateLimit messages per
// sender) lets exactly that many through from two sessions, one on each
// edge, taking turns; the edges' calls alternate between the policy
// replicas (each message makes an odd number of calls), and both decide.
func (c *cluster) testRateLimit(t *testing.T, l *sinkLedger) {
	const from, sender = "127.0.0.68", "limited@example.net"
	before := map[string]float64{}
	for _, p := range []string{"policy1", "policy2"} {
		before[p] = c.metric(p, "smtpgate_policy_checks_total", `stage="end-of-message"`)
	}
	sessions := map[string]*smtp.Client{}
	for _, edge := range []string{"edge1", "edge2"} {
		sc, _, err := c.dialEdge(from, edge)
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		if err := sc.Hello("client.example.net"); err != nil {
			t.Fatal(err)
		}
		sessions[edge] = sc
	}
	accepted := map[string]int{}
	refused := 0
	for range clusterRateLimit {
		for _, edge := range []string{"edge1", "edge2"} {
			// Three recipients: RCPT three times, DATA
			// (reject_unauth_pipelining) and end of data are five calls
			// (the edge answers MAIL itself: policy said it always
			// permits, smtpd_delay_reject moving the client
			// restrictions to RCPT), so consecutive messages of a
			// session go to different policy replicas.
			m := message{from: from, sender: sender, rcpts: []string{"john@example.org", "carol@example.org", "mary@example.org"}, token: newToken("rate")}
			err := mailTx(sessions[edge], m)
			switch {
			case err == nil:
				l.accept(m.token)
				accepted[edge]++
			case codeOf(err) == 450 && strings.Contains(replyOf(err), "Rate limit exceeded"):
				l.refuse(m.token)
				refused++
			default:
				l.unsureOf(m.token, err)
				t.Errorf("message %d via %s: %q, want 250 or a 450 rate-limit refusal", accepted[edge]+refused, edge, replyOf(err))
			}
		}
	}
	if n := accepted["edge1"] + accepted["edge2"]; n != clusterRateLimit || refused != clusterRateLimit {
		t.Errorf("%d messages accepted (%v) and %d refused by the rate limit, want %d and %d", n, accepted, refused, clusterRateLimit, clusterRateLimit)
	}
	if accepted["edge1"] == 0 || accepted["edge2"] == 0 {
		t.Errorf("accepted per edge: %v, want both edges", accepted)
	}
	for _, p := range []string{"policy1", "policy2"} {
		if d := c.metric(p, "smtpgate_policy_checks_total", `stage="end-of-message"`) - before[p]; d == 0 {
			t.Errorf("%s decided no end of data: the limit was not shown across replicas", p)
		}
	}
}

// rawSession is an SMTP session through HAProxy spoken line by line, past
// EHLO (and STARTTLS and a second EHLO when tls is set).
type rawSession struct {
	*rawSMTP
	edge string
}

// rawOn opens a rawSession from the source address from on edge (any
// edge when "").
func (c *cluster) rawOn(from, edge string, startTLS bool) (*rawSession, error) {
	for range 20 {
		raw, err := dialRaw(from, fmt.Sprintf("127.0.0.1:%d", c.port["haproxy"]), 60*time.Second)
		if err != nil {
			return nil, err
		}
		r := &rawSession{rawSMTP: raw}
		_, banner, err := r.response(220)
		if err != nil {
			r.conn.Close()
			return nil, fmt.Errorf("greeting: %w", err)
		}
		f := strings.Fields(banner)
		r.edge = f[len(f)-1]
		if edge != "" && r.edge != edge {
			r.close()
			continue
		}
		if err := r.ehlo(startTLS); err != nil {
			return nil, err
		}
		return r, nil
	}
	return nil, fmt.Errorf("no session on %s through HAProxy in 20 tries", edge)
}

// ehlo says EHLO and, with startTLS, STARTTLS and EHLO again; on an
// error it closes the session.
func (r *rawSession) ehlo(startTLS bool) error {
	err := func() error {
		if _, err := r.expect(250, "EHLO client.example.net"); err != nil || !startTLS {
			return err
		}
		if _, err := r.expect(220, "STARTTLS"); err != nil {
			return err
		}
		if _, err := r.handshake(); err != nil {
			return err
		}
		_, err := r.expect(250, "EHLO client.example.net")
		return err
	}()
	if err != nil {
		r.conn.Close()
	}
	return err
}

// cmd sends one command line and returns the reply as "code text".
func (r *rawSession) cmd(line string) (string, error) {
	if err := r.writeLine(line); err != nil {
		return "", err
	}
	code, msg, err := r.response(0)
	if err != nil && code == 0 {
		return "", err
	}
	return fmt.Sprintf("%d %s", code, msg), nil
}

func (r *rawSession) expect(code int, line string) (string, error) {
	got, err := r.cmd(line)
	if err != nil {
		return "", fmt.Errorf("%s: %w", line, err)
	}
	if !strings.HasPrefix(got, fmt.Sprint(code)) {
		return got, fmt.Errorf("%s: got %q, want %d", line, got, code)
	}
	return got, nil
}

func (r *rawSession) close() {
	_, _ = r.cmd("QUIT")
	r.conn.Close()
}

func authPlain(user, password string) string {
	return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+password))
}

// testAuthThrottle: wrong passwords of one client, two per session on each
// edge in turn (two AUTHs in a row on one edge go to both auth replicas),
// lock it out after clusterMaxAuthFailures in all, counted once in Redis;
// another client is not locked out.
func (c *cluster) testAuthThrottle(t *testing.T) {
	const from, other = "127.0.0.77", "127.0.0.78"
	auths := []string{"auth1", "auth2"}
	before := map[string]float64{}
	var lockoutsBefore float64
	for _, p := range auths {
		before[p] = c.metric(p, "smtpgate_auth_authentications_total", `result="failure"`)
		lockoutsBefore += c.metric(p, "smtpgate_auth_lockouts_total", `kind="client"`)
	}
	failures, edges := 0, map[string]int{}
	for i := 0; failures < clusterMaxAuthFailures; i++ {
		edge := []string{"edge1", "edge2"}[i%2]
		r, err := c.rawOn(from, edge, true)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if failures == clusterMaxAuthFailures {
				break
			}
			got, err := r.cmd(authPlain("john@example.org", "not-the-password"))
			if err != nil {
				t.Fatalf("AUTH via %s: %v", edge, err)
			}
			failures++
			edges[edge]++
			if !strings.HasPrefix(got, "535 5.7.8") {
				t.Errorf("wrong password %d via %s: %q, want 535 5.7.8", failures, edge, got)
			}
		}
		r.close()
	}
	// Locked out on either edge, even with the right password.
	for _, edge := range []string{"edge1", "edge2"} {
		r, err := c.rawOn(from, edge, true)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.cmd(authPlain("john@example.org", JohnPassword))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got, "454 4.7.0") {
			t.Errorf("the right password after %d wrong ones via %s: %q, want 454 4.7.0 (locked out)", failures, edge, got)
		}
		r.close()
	}
	// Another client still gets in.
	r, err := c.rawOn(other, "", true)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.cmd(authPlain("john@example.org", JohnPassword)); err != nil || !strings.HasPrefix(got, "235") {
		t.Errorf("another client with the right password: %q (%v), want 235", got, err)
	}
	r.close()

	var sum, lockouts float64
	for _, p := range auths {
		d := c.metric(p, "smtpgate_auth_authentications_total", `result="failure"`) - before[p]
		if d == 0 {
			t.Errorf("%s counted no wrong password: the throttle was not shown across replicas", p)
		}
		sum += d
		lockouts += c.metric(p, "smtpgate_auth_lockouts_total", `kind="client"`)
	}
	if sum != clusterMaxAuthFailures {
		t.Errorf("the auth replicas counted %v wrong passwords, want %d", sum, clusterMaxAuthFailures)
	}
	if d := lockouts - lockoutsBefore; d != 1 {
		t.Errorf("%v client lockouts started, want 1", d)
	}
	t.Logf("wrong passwords per edge: %v", edges)
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// load is what the clients of testKills saw.
type load struct {
	accepted atomic.Int64
	mu       sync.Mutex
	attempts int
	replies  map[string]int // what was tried: reply (code and enhanced code, or "connection lost") → times
	retried  int            // messages that needed more than one attempt
}

func (ld *load) saw(what string, err error) {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	ld.attempts++
	key := what + ": 250"
	if err != nil {
		key = what + ": connection lost or refused"
		if codeOf(err) != 0 {
			f := strings.Fields(replyOf(err))
			key = what + ": " + strings.Join(f[:min(2, len(f))], " ")
		}
	}
	ld.replies[key]++
}

// deliver sends a message from the source address from to rcpt through
// HAProxy until a client sees 250, a new token (and sender, so that the
// rate limit does not count retries) for each attempt, for up to a
// minute. A permanent refusal is an error.
func (c *cluster) deliver(t *testing.T, l *sinkLedger, ld *load, from, rcpt string) {
	deadline := time.Now().Add(60 * time.Second)
	for attempt := 1; ; attempt++ {
		tok := newToken("load")
		m := message{from: from, sender: tok + "@example.net", rcpts: []string{rcpt}, token: tok}
		sc, _, err := c.dialEdge(from, "")
		if err == nil {
			err = transact(sc, m)
			if err == nil {
				l.accept(tok)
				ld.accepted.Add(1)
				ld.saw("message", nil)
				if attempt > 1 {
					ld.mu.Lock()
					ld.retried++
					ld.mu.Unlock()
				}
				_ = sc.Quit()
				sc.Close()
				return
			}
			sc.Close()
		}
		l.unsureOf(tok, err)
		ld.saw("message", err)
		if codeOf(err) >= 500 {
			t.Errorf("from %s to %s: %q, a permanent refusal of a message that must pass", from, rcpt, replyOf(err))
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("from %s to %s: no 250 within 60s of retries; last %q", from, rcpt, replyOf(err))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// probe tries a recipient that must be refused; a 250 to it is an error.
func (c *cluster) probe(t *testing.T, ld *load, from, rcpt string) {
	sc, _, err := c.dialEdge(from, "")
	if err == nil {
		defer sc.Close()
		err = sc.Hello("client.example.net")
		if err == nil {
			err = sc.Mail("probe@example.net")
		}
		if err == nil {
			err = sc.Rcpt(rcpt)
			if err == nil {
				t.Errorf("from %s: RCPT TO:<%s> answered 250, want a refusal", from, rcpt)
			}
		}
		if err == nil {
			_ = sc.Quit()
		}
	}
	ld.saw("must refuse", err)
}

// testKills: 12 clients send through HAProxy while edge1 and policy1 are
// killed (SIGKILL). Every message a client saw 250 for reaches the next
// hop once (checked at the end of TestScale); relaying, unknown users and
// the blocklisted client are refused throughout; a client whose session
// was on edge1 gets through on retry once HAProxy's health checks take
// edge1 out.
func (c *cluster) testKills(t *testing.T, l *sinkLedger) {
	const clients = 12
	ld := &load{replies: map[string]int{}}
	// A session held open on edge1, to see it die.
	const idleFrom = "127.0.0.12"
	idle, err := c.rawOn(idleFrom, "edge1", false)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.conn.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		from, rcpt := fmt.Sprintf("127.0.1.%d", i+1), "john@example.org"
		if i%2 == 1 {
			from, rcpt = clusterTrusted, fmt.Sprintf("user%d@example.com", i)
		}
		probes := []struct{ from, rcpt string }{
			{fmt.Sprintf("127.0.1.%d", i+1), "b@example.com"}, // a stranger relaying
			{clusterTrusted, "nobody@example.org"},            // an unknown local user
			{clusterListed, "john@example.org"},               // a blocklisted client
		}
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if n%4 == 3 {
					p := probes[(n/4+i)%len(probes)]
					c.probe(t, ld, p.from, p.rcpt)
					continue
				}
				c.deliver(t, l, ld, from, rcpt)
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
		ld.mu.Lock()
		defer ld.mu.Unlock()
		var keys []string
		for k := range ld.replies {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "\n  %-45s %d", k, ld.replies[k])
		}
		t.Logf("%d clients: %d attempts, %d messages accepted, %d of them after a retry; replies:%s",
			clients, ld.attempts, ld.accepted.Load(), ld.retried, b.String())
	}()

	waitFor(t, "40 messages accepted before the kills", 60*time.Second, func() bool { return ld.accepted.Load() >= 40 })
	c.kill("edge1")
	c.kill("policy1")
	atKill := ld.accepted.Load()
	t.Logf("killed edge1 and policy1 after %d messages", atKill)

	// The session on edge1 is gone...
	if got, err := idle.cmd("NOOP"); err == nil {
		t.Errorf("a session on the killed edge1 answered NOOP with %q", got)
	}
	// ... and its client gets through on retry.
	c.deliver(t, l, ld, idleFrom, "john@example.org")
	waitFor(t, "HAProxy takes edge1 out", 30*time.Second, func() bool { return c.haproxySays("smtpgate_edges/edge1 is DOWN") })
	waitFor(t, "40 more messages accepted after the kills", 60*time.Second, func() bool { return ld.accepted.Load() >= atKill+40 })
}
