package auth

import (
	"fmt"
	"sync"
	"testing"

	"github.com/xdg-go/scram"

	"github.com/smtpgate/smtpgate/pkg/redistest"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
)

// backends returns the throttle settings of each backend: in process
// (the default) and a real redis-server.
func backends(t *testing.T) map[string]string {
	t.Helper()
	rs := redistest.Start(t)
	return map[string]string{"memory": "", "redis": "smtpgate_auth_redis = " + rs.URL() + "\n"}
}

// TestLockoutSparesKnownSources plays issue 16's attack: an attacker at
// one address sends 30 wrong passwords for john. The attacker is locked
// out after 10, and john's unknown sources with it (the user's count),
// but john's correct password from the address he logged in from before
// the attack still gets in.
func TestLockoutSparesKnownSources(t *testing.T) {
	for name, backend := range backends(t) {
		t.Run(name, func(t *testing.T) {
			r := startReplica(t, backend) // the defaults: 10 per client and per user
			recordSleeps(r)
			const home, attacker, travel = "198.51.100.7", "203.0.113.66", "192.0.2.200"
			if got := plainAuth(t, r, home, "john@example.org", password); got != success {
				t.Fatalf("john from home before the attack: %v", got)
			}
			results := map[authv1.Result]int{}
			for i := range 30 {
				results[plainAuth(t, r, attacker, "john@example.org", fmt.Sprintf("guess-%d", i))]++
			}
			if results[failure] != 10 || results[tempfail] != 20 {
				t.Errorf("the attacker's 30 guesses: %v, want 10 checked (FAILURE) and 20 refused (TEMPORARY_FAILURE)", results)
			}
			if got := plainAuth(t, r, home, "john@example.org", password); got != success {
				t.Errorf("john from home after the attack: %v, want SUCCESS", got)
			}
			if got := plainAuth(t, r, travel, "john@example.org", password); got != tempfail {
				t.Errorf("john from a new address during the attack: %v, want TEMPORARY_FAILURE (the user's unknown sources are locked)", got)
			}
			if got := plainAuth(t, r, attacker, "john@example.org", password); got != tempfail {
				t.Errorf("the right password from the attacker's address: %v, want TEMPORARY_FAILURE", got)
			}
			// Another user is not affected, from anywhere but the
			// attacker's address.
			if got := plainAuth(t, r, travel, "carol@example.org", CarolPassword); got != success {
				t.Errorf("carol from a new address: %v, want SUCCESS", got)
			}
		})
	}
}

// CarolPassword is deploy/local/passwd's carol's.
const CarolPassword = "carol-example-password"

// TestConcurrentGuessesExact: 60 wrong passwords at once from one address
// against a maximum of 10 per client: exactly 10 are checked.
func TestConcurrentGuessesExact(t *testing.T) {
	for name, backend := range backends(t) {
		t.Run(name, func(t *testing.T) {
			r := startReplica(t, backend)
			recordSleeps(r)
			var wg sync.WaitGroup
			var mu sync.Mutex
			results := map[authv1.Result]int{}
			start := make(chan struct{})
			for i := range 60 {
				wg.Go(func() {
					<-start
					got := plainAuth(t, r, "203.0.113.9", "john@example.org", fmt.Sprintf("guess-%d", i))
					mu.Lock()
					results[got]++
					mu.Unlock()
				})
			}
			close(start)
			wg.Wait()
			if results[failure] != 10 || results[tempfail] != 50 {
				t.Errorf("60 guesses at once: %v, want exactly 10 checked (FAILURE) and 50 refused", results)
			}
		})
	}
}

// TestAbandonedExchangeGivesBack: a SCRAM exchange reserves its place at
// the client's first message; cancelled before the proof, it gives the
// place back, so cancelled exchanges neither lock anyone out nor leak.
func TestAbandonedExchangeGivesBack(t *testing.T) {
	r := startReplica(t, "smtpgate_auth_max_failures_per_client = 1\n")
	recordSleeps(r)
	const client = "192.0.2.77"
	for i := range 5 {
		c, err := scram.SHA256.NewClient("scram@example.org", "not-it", "")
		must(t, err)
		first, err := c.NewConversation().Step("")
		must(t, err)
		ch, o := exchange(t, r.client, &authv1.Session{ClientAddress: client, Tls: true}, "SCRAM-SHA-256", []byte(first), nil)
		if len(ch) != 1 || o.GetResult() != authv1.Result_RESULT_CANCELLED {
			t.Fatalf("exchange %d: %d challenges, %v; want one challenge, then CANCELLED", i+1, len(ch), o.GetResult())
		}
	}
	if got := plainAuth(t, r, client, "john@example.org", "wrong"); got != failure {
		t.Errorf("a wrong password after 5 cancelled exchanges: %v, want FAILURE (checked)", got)
	}
	if got := plainAuth(t, r, client, "john@example.org", password); got != tempfail {
		t.Errorf("after the one failure allowed: %v, want TEMPORARY_FAILURE", got)
	}
}
