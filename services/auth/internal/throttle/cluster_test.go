package throttle

import (
	"fmt"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// TestOnCluster counts AUTH failures on a real 3-master Redis Cluster
// through a redis+cluster:// URL: each attempt's scripts touch its
// client's, network's and user's keys at once, so they all live in the
// {auth} slot (one master), and the limits hold exactly: a client locks
// after 3 failures, a user tried from 4 networks after 4.
func TestOnCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	c, err := NewRedisClient(cl.URL(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := NewRedis(c, params)
	for n := 1; n <= 3; n++ {
		if d := try(t, s, KeysFor("192.0.2.1", fmt.Sprintf("u%d", n))); d.Locked != (n == 3) {
			t.Fatalf("failure %d of a client: %+v", n, d)
		}
	}
	if d := admitted(t, s, KeysFor("192.0.2.1", "someone")); !d.Locked || d.Kind != "client" {
		t.Fatalf("a locked client's next attempt: %+v", d)
	}
	for n := 1; n <= 4; n++ {
		if d := try(t, s, KeysFor(fmt.Sprintf("198.51.%d.7", n), "Victim")); d.Locked != (n == 4) {
			t.Fatalf("failure %d against a user: %+v", n, d)
		}
	}
	if d := admitted(t, s, KeysFor("203.0.113.9", "victim")); !d.Locked || d.Kind != "user" {
		t.Fatalf("a locked user's next attempt: %+v", d)
	}
	if d := login(t, s, KeysFor("203.0.113.10", "fine")); d.Locked {
		t.Fatalf("a login: %+v", d)
	}
	const clients = 1000
	for i := range clients {
		try(t, s, KeysFor(fmt.Sprintf("10.%d.%d.1", i>>8, i&255), fmt.Sprintf("user%d", i)))
	}
	counts, holders, total := cl.KeysPerNode(t, KeyPrefix+"*"), 0, 0
	for _, n := range counts {
		if n > 0 {
			holders++
		}
		total += n
	}
	if holders != 1 || total < 3*clients {
		t.Errorf("keys per master %v: want them all (at least %d) on one master", counts, 3*clients)
	}
	t.Logf("keys of %d clients per master: %v", clients, counts)
}
