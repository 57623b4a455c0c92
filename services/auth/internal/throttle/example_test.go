package throttle_test

import (
	"context"
	"fmt"
	"time"

	"github.com/smtpgate/smtpgate/services/auth/internal/throttle"
)

// A client's third wrong password locks it out; its next attempt is
// refused before the password is looked at. The user still gets in from
// the address it logged in from before.
func Example() {
	l, err := throttle.New(throttle.Options{Params: throttle.Params{
		Window: 10 * time.Minute, MaxPerClient: 3, MaxPerUser: 3, Lockout: 15 * time.Minute,
		Delay: time.Second, MaxDelay: 8 * time.Second, KnownSource: 30 * 24 * time.Hour,
	}})
	if err != nil {
		panic(err)
	}
	defer l.Close()
	ctx := context.Background()
	home := throttle.KeysFor("198.51.100.7", "john@example.org")
	h, _, _ := l.Reserve(ctx, home)
	// … the password was right:
	h.Succeed(ctx)

	attacker := throttle.KeysFor("192.0.2.1", "John@Example.org")
	for {
		h, d, _ := l.Reserve(ctx, attacker)
		if d.Locked {
			fmt.Println("next attempt refused: locked by", d.Kind, d.Key)
			break
		}
		// … the password was wrong:
		d = h.Fail(ctx)
		fmt.Println("answer after", d.Delay, "locked:", d.Locked)
	}
	_, d, _ := l.Reserve(ctx, throttle.KeysFor("203.0.113.5", "john@example.org"))
	fmt.Println("john from a new address locked:", d.Locked, "by", d.Kind)
	h, d, _ = l.Reserve(ctx, home)
	fmt.Println("john from home locked:", d.Locked)
	h.Succeed(ctx)
	// Output:
	// answer after 0s locked: false
	// answer after 1s locked: false
	// answer after 2s locked: true
	// next attempt refused: locked by client 192.0.2.1
	// john from a new address locked: true by user
	// john from home locked: false
}
