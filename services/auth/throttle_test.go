package auth

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdg-go/scram"

	"github.com/smtpgate/smtpgate/pkg/redistest"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
)

const (
	success  = authv1.Result_RESULT_SUCCESS
	failure  = authv1.Result_RESULT_FAILURE
	tempfail = authv1.Result_RESULT_TEMPORARY_FAILURE
)

// sleeps records the delays a server asks for instead of waiting them.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(_ context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return nil
}

func (s *sleeps) take() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.d
	s.d = nil
	return out
}

// recordSleeps makes r record its delays.
func recordSleeps(r *replica) *sleeps {
	s := &sleeps{}
	r.srv.auth.sleep = s.sleep
	return s
}

// plainAuth runs PLAIN for user from client.
func plainAuth(t *testing.T, r *replica, client, user, pw string) authv1.Result {
	t.Helper()
	sess := &authv1.Session{Id: "t", ClientAddress: client, Tls: true}
	_, o := exchange(t, r.client, sess, "PLAIN", []byte("\x00"+user+"\x00"+pw))
	return o.GetResult()
}

func limits(redisURL string) string {
	return fmt.Sprintf(`smtpgate_auth_redis = %s
smtpgate_auth_max_failures_per_client = 4
smtpgate_auth_max_failures_per_network = 100
smtpgate_auth_max_failures_per_user = 100
`, redisURL)
}

// TestThrottleSharedThroughRedis: two replicas with the same Redis see
// each other's failures; the lockout holds on both, refuses the right
// password too, and is logged once.
func TestThrottleSharedThroughRedis(t *testing.T) {
	rs := redistest.Start(t)
	a, b := startReplica(t, limits(rs.URL())), startReplica(t, limits(rs.URL()))
	recordSleeps(a)
	recordSleeps(b)
	const client = "192.0.2.10"
	for i, r := range []*replica{a, b, a} {
		if got := plainAuth(t, r, client, "john@example.org", fmt.Sprintf("wrong-%d", i)); got != failure {
			t.Fatalf("failure %d: %v, want FAILURE", i+1, got)
		}
	}
	// The fourth failure, on b, reaches the limit of 4 only if b counts
	// a's three.
	if got := plainAuth(t, b, client, "nobody@example.org", "wrong-3"); got != failure {
		t.Fatalf("failure 4: %v", got)
	}
	for name, r := range map[string]*replica{"a": a, "b": b} {
		if got := plainAuth(t, r, client, "john@example.org", password); got != tempfail {
			t.Errorf("replica %s: the right password from a locked client: %v, want TEMPORARY_FAILURE", name, got)
		}
	}
	if got := plainAuth(t, a, "192.0.2.11", "john@example.org", password); got != success {
		t.Errorf("a neighbour: %v, want SUCCESS", got)
	}
	logs := a.logs.String() + b.logs.String()
	if n := strings.Count(logs, "authentication lockout"); n != 1 {
		t.Errorf("lockout logged %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs, "shared=true") {
		t.Errorf("the replicas do not say they share counts:\n%s", logs)
	}
	for _, secret := range []string{password, "wrong-"} {
		if strings.Contains(logs, secret) {
			t.Errorf("a password in the log:\n%s", logs)
		}
	}
	// The Dovecot front end of b sees the same lockout.
	dc := dovecotClient(t, b)
	if got := dc.plain("1", client, "john@example.org", password); !strings.Contains(got, "code=temp_fail") {
		t.Errorf("dovecot AUTH from the locked client: %q, want FAIL code=temp_fail", got)
	}
	if got := dc.plain("2", "192.0.2.12", "john@example.org", password); !strings.HasPrefix(got, "OK\t2\t") {
		t.Errorf("dovecot AUTH from a neighbour: %q, want OK", got)
	}
}

// TestThrottleInProcessNotShared: without Redis each replica counts
// alone, so a client spreading failures over two replicas gets twice the
// limit.
func TestThrottleInProcessNotShared(t *testing.T) {
	a, b := startReplica(t, limits("")), startReplica(t, limits(""))
	recordSleeps(a)
	recordSleeps(b)
	const client = "192.0.2.20"
	for i := range 3 {
		for _, r := range []*replica{a, b} {
			if got := plainAuth(t, r, client, "john@example.org", "wrong"); got != failure {
				t.Fatalf("round %d: %v", i+1, got)
			}
		}
	}
	if got := plainAuth(t, a, client, "john@example.org", "wrong"); got != failure {
		t.Fatalf("a's fourth failure: %v", got)
	}
	if got := plainAuth(t, a, client, "john@example.org", password); got != tempfail {
		t.Errorf("a after its own 4 failures: %v, want TEMPORARY_FAILURE", got)
	}
	if got := plainAuth(t, b, client, "john@example.org", password); got != success {
		t.Errorf("b after its own 3 failures: %v, want SUCCESS (in-process counts are not shared)", got)
	}
}

// TestThrottleRedisStopped: Redis dies mid-run; authentication goes on and
// is still limited, in process.
func TestThrottleRedisStopped(t *testing.T) {
	rs := redistest.Start(t)
	a := startReplica(t, limits(rs.URL()))
	recordSleeps(a)
	const client = "192.0.2.30"
	for range 2 {
		if got := plainAuth(t, a, client, "john@example.org", "wrong"); got != failure {
			t.Fatalf("before: %v", got)
		}
	}
	rs.Stop()
	for range 2 {
		if got := plainAuth(t, a, client, "john@example.org", "wrong"); got != failure {
			t.Fatalf("after: %v", got)
		}
	}
	if got := plainAuth(t, a, client, "john@example.org", password); got != tempfail {
		t.Errorf("2 failures before and 2 after the outage: %v, want TEMPORARY_FAILURE", got)
	}
	if got := plainAuth(t, a, "192.0.2.31", "john@example.org", password); got != success {
		t.Errorf("another client during the outage: %v, want SUCCESS", got)
	}
	if !strings.Contains(a.logs.String(), "redis failed") {
		t.Errorf("the outage is not logged:\n%s", a.logs)
	}
}

// attemptFunc runs one failing exchange of a mechanism for user from
// client and returns the challenges seen and the outcome.
type attemptFunc func(t *testing.T, r *replica, client, user string) ([]string, *authv1.Outcome)

var failingAttempts = map[string]attemptFunc{
	"PLAIN": func(t *testing.T, r *replica, client, user string) ([]string, *authv1.Outcome) {
		return exchange(t, r.client, &authv1.Session{ClientAddress: client, Tls: true}, "PLAIN", []byte("\x00"+user+"\x00not-it"))
	},
	"LOGIN": func(t *testing.T, r *replica, client, user string) ([]string, *authv1.Outcome) {
		return exchange(t, r.client, &authv1.Session{ClientAddress: client, Tls: true}, "LOGIN", nil, []byte(user), []byte("not-it"))
	},
	"CRAM-MD5": func(t *testing.T, r *replica, client, user string) ([]string, *authv1.Outcome) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := r.client.Authenticate(ctx)
		must(t, err)
		must(t, st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Start{Start: &authv1.Start{Session: &authv1.Session{ClientAddress: client}, Mechanism: "CRAM-MD5"}}}))
		resp, err := st.Recv()
		must(t, err)
		m := hmac.New(md5.New, []byte("not-it"))
		m.Write(resp.GetChallenge().GetData())
		must(t, st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Response{Response: []byte(user + " " + hex.EncodeToString(m.Sum(nil)))}}))
		resp, err = st.Recv()
		must(t, err)
		return []string{"<challenge>"}, resp.GetOutcome()
	},
	"SCRAM-SHA-256": func(t *testing.T, r *replica, client, user string) ([]string, *authv1.Outcome) {
		c, err := scram.SHA256.NewClient(user, "not-it", "")
		must(t, err)
		conv := c.NewConversation()
		first, err := conv.Step("")
		must(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := r.client.Authenticate(ctx)
		must(t, err)
		must(t, st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Start{Start: &authv1.Start{Session: &authv1.Session{ClientAddress: client}, Mechanism: "SCRAM-SHA-256", HasInitialResponse: true, InitialResponse: []byte(first)}}}))
		var shapes []string
		for {
			resp, err := st.Recv()
			must(t, err)
			if o := resp.GetOutcome(); o != nil {
				return shapes, o
			}
			ch := string(resp.GetChallenge().GetData())
			// Compare the challenge's shape: its attribute names.
			var names []string
			for _, f := range strings.Split(ch, ",") {
				n, _, _ := strings.Cut(f, "=")
				names = append(names, n)
			}
			shapes = append(shapes, strings.Join(names, ","))
			next, err := conv.Step(ch)
			must(t, err)
			must(t, st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Response{Response: []byte(next)}}))
		}
	},
}

// TestUnknownUserLooksLikeWrongPassword: for every mechanism an unknown
// user and a wrong password give the same challenges, the same outcome,
// the same delays (the same count, the same code path) and the same
// lockout. Timing itself is not measured (no timed assertions); the
// dummy hash (Server.Verify) covers the cost of the check.
func TestUnknownUserLooksLikeWrongPassword(t *testing.T) {
	users := map[string]string{"PLAIN": "john@example.org", "LOGIN": "john@example.org", "CRAM-MD5": "jane@example.org", "SCRAM-SHA-256": "scram@example.org"}
	for mech, attempt := range failingAttempts {
		t.Run(mech, func(t *testing.T) {
			// A replica of its own: the user counts start at zero.
			r := startReplica(t, `smtpgate_auth_max_failures_per_client = 3
smtpgate_auth_max_failures_per_network = 0
smtpgate_auth_max_failures_per_user = 0
`)
			sl := recordSleeps(r)
			host := 1
			type trace struct {
				challenges []string
				results    []authv1.Result
				users      []string
				delays     []time.Duration
			}
			run := func(user string) trace {
				host++
				client := fmt.Sprintf("192.0.2.%d", host)
				var tr trace
				for range 4 {
					ch, o := attempt(t, r, client, user)
					tr.challenges = append(tr.challenges, ch...)
					tr.results = append(tr.results, o.GetResult())
					tr.users = append(tr.users, o.GetUsername())
				}
				tr.delays = sl.take()
				return tr
			}
			known, unknown := run(users[mech]), run("nobody@example.org")
			if fmt.Sprint(known) != fmt.Sprint(unknown) {
				t.Errorf("wrong password and unknown user differ:\n known:   %v\n unknown: %v", known, unknown)
			}
			want := []authv1.Result{failure, failure, failure, tempfail}
			if fmt.Sprint(known.results) != fmt.Sprint(want) {
				t.Errorf("results %v, want %v", known.results, want)
			}
			if want := []time.Duration{0, time.Second, 2 * time.Second}; fmt.Sprint(known.delays) != fmt.Sprint(want) {
				t.Errorf("delays %v, want %v", known.delays, want)
			}
		})
	}
}

// TestSuccessResetsCounts: a success forgets the client's failures.
func TestSuccessResetsCounts(t *testing.T) {
	r := startReplica(t, limits(""))
	sl := recordSleeps(r)
	const client = "192.0.2.40"
	for round := range 3 {
		for range 3 {
			if got := plainAuth(t, r, client, "john@example.org", "wrong"); got != failure {
				t.Fatalf("round %d: %v", round+1, got)
			}
		}
		if got := plainAuth(t, r, client, "john@example.org", password); got != success {
			t.Fatalf("round %d: the right password after 3 failures: %v", round+1, got)
		}
	}
	if got, want := fmt.Sprint(sl.take()), fmt.Sprint([]time.Duration{0, time.Second, 2 * time.Second, 0, time.Second, 2 * time.Second, 0, time.Second, 2 * time.Second}); got != want {
		t.Errorf("delays %s, want %s", got, want)
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sleep(ctx, time.Hour); err == nil {
		t.Error("sleep outlived its context")
	}
	if err := sleep(context.Background(), 0); err != nil {
		t.Errorf("sleep(0) = %v", err)
	}
}

// dovecot is a Dovecot auth protocol client of a replica.
type dovecot struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dovecotClient(t *testing.T, r *replica) *dovecot {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.srv.ServeDovecot(ctx, ln) }()
	d := dialDovecot(t, "tcp", ln.Addr().String())
	t.Cleanup(func() {
		d.c.Close()
		cancel()
		<-done
	})
	return d
}

// dialDovecot connects to the Dovecot auth server at addr and reads its
// handshake up to DONE.
func dialDovecot(t *testing.T, network, addr string) *dovecot {
	t.Helper()
	c, err := net.Dial(network, addr)
	must(t, err)
	t.Cleanup(func() { c.Close() })
	must(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	d := &dovecot{t: t, c: c, br: bufio.NewReader(c)}
	fmt.Fprintf(c, "VERSION\t1\t2\nCPID\t1\n")
	for d.line() != "DONE" {
	}
	return d
}

func (d *dovecot) line() string {
	d.t.Helper()
	l, err := d.br.ReadString('\n')
	must(d.t, err)
	return strings.TrimSuffix(l, "\n")
}

// plain sends one AUTH PLAIN with an initial response and returns the
// answer.
func (d *dovecot) plain(id, client, user, pw string) string {
	d.t.Helper()
	resp := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw))
	fmt.Fprintf(d.c, "AUTH\t%s\tPLAIN\tservice=smtp\tsecured\trip=%s\tresp=%s\n", id, client, resp)
	return d.line()
}
