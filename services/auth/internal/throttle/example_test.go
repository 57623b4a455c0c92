package throttle_test

import (
	"context"
	"fmt"
	"time"

	"github.com/smtpgate/smtpgate/services/auth/internal/throttle"
)

// A client's third wrong password locks it out; its next attempt is
// refused before the password is looked at.
func Example() {
	l, err := throttle.New(throttle.Options{Params: throttle.Params{
		Window: 10 * time.Minute, MaxPerClient: 3, Lockout: 15 * time.Minute,
		Delay: time.Second, MaxDelay: 8 * time.Second,
	}})
	if err != nil {
		panic(err)
	}
	defer l.Close()
	ctx := context.Background()
	k := throttle.KeysFor("192.0.2.1", "John@Example.org")
	for range 3 {
		if d, _ := l.Check(ctx, k); d.Locked {
			break
		}
		// … the password was wrong:
		d, _ := l.Fail(ctx, k)
		fmt.Println("answer after", d.Delay, "locked:", d.Locked)
	}
	d, _ := l.Check(ctx, k)
	fmt.Println("next attempt locked:", d.Locked, "by", d.Kind, d.Key)
	// Output:
	// answer after 0s locked: false
	// answer after 1s locked: false
	// answer after 2s locked: true
	// next attempt locked: true by client 192.0.2.1
}
