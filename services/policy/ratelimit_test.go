package policy

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/redistest"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

// Two policy processes sharing one real redis-server enforce one
// check_rate_limit exactly: a limit of 5 messages lets exactly 5 through
// whichever process answers, under 40 concurrent requests. With Redis
// stopped, the limit fails open.
func TestRateLimitAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	conf := mainCF + `
smtpgate_rate_limit_redis = ` + srv.URL() + `
smtpgate_rate_limits = { name = msgs, key = sender_domain, count = 5, window = 1h }
smtpd_end_of_data_restrictions = check_rate_limit msgs
`
	var servers []*Server
	for range 2 {
		f, err := maincf.Parse("main.cf", strings.NewReader(conf))
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(Config{Main: maincf.New(maincf.Params(), f, t.TempDir())})
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, s)
	}
	req := func() *policyv1.CheckRequest {
		return &policyv1.CheckRequest{Stage: policyv1.Stage_STAGE_END_OF_DATA,
			Session:     &policyv1.Session{Id: "s", ClientAddress: "203.0.113.5", HeloName: "x.example.net"},
			Transaction: &policyv1.Transaction{Sender: "a@bulk.example", Recipient: "john@example.org", RecipientCount: 1, Size: 1000}}
	}
	var permitted atomic.Int64
	var refusal atomic.Value
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			resp, err := servers[i%2].Check(context.Background(), req())
			if err != nil {
				t.Error(err)
				return
			}
			if v := resp.GetVerdict(); v.GetAction() == policyv1.Action_ACTION_PERMIT {
				permitted.Add(1)
			} else {
				refusal.Store(v.GetText())
			}
		})
	}
	wg.Wait()
	if n := permitted.Load(); n != 5 {
		t.Errorf("%d messages permitted, want exactly 5", n)
	}
	if got := refusal.Load(); got != "<END-OF-MESSAGE>: End-of-data rejected: Rate limit exceeded (5 per 1h0m0s)" {
		t.Errorf("refusal text %q", got)
	}
	srv.Stop()
	resp, err := servers[0].Check(context.Background(), req())
	if err != nil || resp.GetVerdict().GetAction() != policyv1.Action_ACTION_PERMIT || len(resp.GetVerdict().GetWarnings()) == 0 {
		t.Errorf("Redis down: %v %v, want a permit with a warning (fail open)", resp.GetVerdict(), err)
	}
}
