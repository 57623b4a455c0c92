package restriction

import (
	"context"
	"testing"
	"time"
)

func TestCheckGreylist(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	e, err := CompileWith(config(t, "smtpd_recipient_restrictions = reject_unauth_destination, check_greylist"),
		Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	check := func(f *Facts) Verdict {
		t.Helper()
		v, err := e.Check(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	greylisted := Verdict{Action: ActionDefer, Reply: Reply{450, "4.2.0", "<john@example.org>: Recipient address rejected: Greylisted, try again in 300 seconds"}, Restriction: "defer_if_permit"}
	if v := check(facts()); v.Action != greylisted.Action || v.Reply != greylisted.Reply {
		t.Errorf("first attempt: %+v", v)
	}
	if v := check(facts(to("lisa@example.com"))); v.Reply.Code != 554 {
		t.Errorf("a relay attempt is refused, not greylisted: %+v", v)
	}
	if v := check(facts(from(trustedAddr))); v.Action != ActionPermit {
		t.Errorf("mynetworks: %+v", v)
	}
	if v := check(facts(login("john"))); v.Action != ActionPermit {
		t.Errorf("authenticated: %+v", v)
	}
	now = now.Add(6 * time.Minute)
	if v := check(facts()); v.Action != ActionPermit {
		t.Errorf("retry after the delay: %+v", v)
	}
	// The same network, another sender: greylisted again.
	if v := check(facts(from("203.0.113.77"), sender("other@example.net"))); v.Action != ActionDefer {
		t.Errorf("a new triplet: %+v", v)
	}
}
