package policy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/smtpgate/smtpgate/pkg/redistest"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

// buildPolicy builds smtpgate-policy into a directory of the test.
func buildPolicy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+"/", "./cmd/smtpgate-policy").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/smtpgate-policy: %v\n%s", err, out)
	}
	return filepath.Join(dir, "smtpgate-policy")
}

// policyProcess is one smtpgate-policy OS process.
type policyProcess struct {
	client  policyv1.PolicyServiceClient
	metrics string // host:port of /metrics
	log     string // path of its stderr
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startPolicy runs bin (smtpgate-policy) on mainCF with a gRPC and a metrics
// port of its own, waits until both answer, and stops it (SIGINT) when
// the test ends.
func startPolicy(t *testing.T, bin, mainCF string) *policyProcess {
	t.Helper()
	dir := t.TempDir()
	grpcAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freeLoopbackPort(t)))
	metricsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freeLoopbackPort(t)))
	conf := mainCF + "\nsmtpgate_policy_listen = " + grpcAddr + "\nsmtpgate_policy_metrics_listen = " + metricsAddr + "\n"
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &policyProcess{metrics: metricsAddr, log: filepath.Join(dir, "policy.log")}
	logFile, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "-c", dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("smtpgate-policy did not exit cleanly on SIGINT: %v", err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("smtpgate-policy did not stop within 15s of SIGINT")
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("--- smtpgate-policy log ---\n%s", b)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range []string{grpcAddr, metricsAddr} {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(p.log)
				t.Fatalf("smtpgate-policy does not listen on %s: %v\n%s", addr, err, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p.client = policyv1.NewPolicyServiceClient(conn)
	return p
}

// metric returns the value of the sample named name (with its labels) on
// p's /metrics page, or "".
func (p *policyProcess) metric(t *testing.T, sample string) string {
	t.Helper()
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			return v
		}
	}
	return ""
}

func endOfData() *policyv1.CheckRequest {
	return &policyv1.CheckRequest{Stage: policyv1.Stage_STAGE_END_OF_DATA,
		Session:     &policyv1.Session{Id: "s", ClientAddress: "203.0.113.5", HeloName: "x.example.net"},
		Transaction: &policyv1.Transaction{Sender: "a@bulk.example", Recipient: "john@example.org", RecipientCount: 1, Size: 1000}}
}

func rcpt(n int64) *policyv1.CheckRequest {
	return &policyv1.CheckRequest{Stage: policyv1.Stage_STAGE_RCPT,
		Session:     &policyv1.Session{Id: "s", ClientAddress: "198.51.100.7", HeloName: "y.example.net"},
		Transaction: &policyv1.Transaction{Sender: fmt.Sprintf("s%d@other.example", n), Recipient: "john@example.org"}}
}

// Two smtpgate-policy processes sharing one real redis-server enforce one
// check_rate_limit exactly: a limit of 5 messages lets exactly 5 of 40
// concurrent requests through, whichever process answers. Then
// redis-server stops in the middle of a run of checks, as documented
// (README, docs/operations.md): every check is still answered, the rate
// limit fails open with a warning, greylisting is skipped with a
// warning, and both are logged and counted in
// smtpgate_policy_shared_state_failures_total.
func TestSharedStateAcrossPolicyProcesses(t *testing.T) {
	redis := redistest.Start(t)
	conf := mainCF + `
smtpgate_rate_limit_redis = ` + redis.URL() + `
smtpgate_greylist_redis = ` + redis.URL() + `
smtpgate_rate_limits = { name = msgs, key = sender_domain, count = 5, window = 1h }
smtpd_recipient_restrictions = reject_unauth_destination, check_greylist
smtpd_end_of_data_restrictions = check_rate_limit msgs
`
	bin := buildPolicy(t)
	procs := []*policyProcess{startPolicy(t, bin, conf), startPolicy(t, bin, conf)}
	ctx := context.Background()

	var permitted atomic.Int64
	var refusal atomic.Value
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			resp, err := procs[i%2].client.Check(ctx, endOfData())
			if err != nil {
				t.Error(err)
				return
			}
			if v := resp.GetVerdict(); v.GetAction() == policyv1.Action_ACTION_PERMIT {
				permitted.Add(1)
			} else {
				refusal.Store(fmt.Sprint(v.GetCode(), " ", v.GetEnhancedCode(), " ", v.GetText()))
			}
		})
	}
	wg.Wait()
	if n := permitted.Load(); n != 5 {
		t.Errorf("%d messages permitted by the two processes, want exactly 5", n)
	}
	if got, want := refusal.Load(), "450 4.7.1 <END-OF-MESSAGE>: End-of-data rejected: Rate limit exceeded (5 per 1h0m0s)"; got != want {
		t.Errorf("refusal %q, want %q", got, want)
	}

	// A run of checks on both processes, end of data (over the limit)
	// and RCPT (a new triplet each time), with redis-server stopped in
	// the middle.
	type result struct {
		afterStop bool
		stage     policyv1.Stage
		verdict   *policyv1.Verdict
	}
	var stopped atomic.Bool
	var calls atomic.Int64
	// Checks past the 120th wait until redis-server is down: on a loaded
	// machine the stop can take longer than the rest of the run, and
	// then nothing would be checked with Redis stopped. Checks 81-120
	// race the stop (either answer is right for them).
	afterStop := make(chan struct{})
	var mu sync.Mutex
	var results []result
	run := func(worker int) {
		for {
			n := calls.Add(1)
			if n > 240 {
				return
			}
			if n > 120 {
				<-afterStop
			}
			after := stopped.Load()
			req := endOfData()
			if n%2 == 0 {
				req = rcpt(n)
			}
			resp, err := procs[(worker+int(n))%2].client.Check(ctx, req)
			if err != nil {
				t.Errorf("check %d (%v, Redis stopped: %v): %v", n, req.GetStage(), after, err)
				continue
			}
			mu.Lock()
			results = append(results, result{after, req.GetStage(), resp.GetVerdict()})
			mu.Unlock()
		}
	}
	for w := range 6 {
		wg.Go(func() { run(w) })
	}
	for calls.Load() < 80 {
		time.Sleep(time.Millisecond)
	}
	redis.Stop()
	stopped.Store(true)
	close(afterStop)
	wg.Wait()

	var before, after int
	for _, r := range results {
		v := r.verdict
		switch {
		case !r.afterStop && r.stage == policyv1.Stage_STAGE_END_OF_DATA:
			// Either side of the stop: refused (Redis had it) or
			// allowed with the warning.
			if v.GetAction() == policyv1.Action_ACTION_PERMIT && !hasWarning(v, "rate limit msgs: store unavailable, allowed") {
				t.Errorf("end of data while Redis ran: %v", v)
			}
			before++
		case !r.afterStop:
			if v.GetAction() == policyv1.Action_ACTION_PERMIT && !hasWarning(v, "greylisting skipped") {
				t.Errorf("RCPT while Redis ran: %v", v)
			}
			if v.GetAction() != policyv1.Action_ACTION_PERMIT && !strings.Contains(v.GetText(), "Greylisted, try again in 300 seconds") {
				t.Errorf("RCPT while Redis ran: %v, want greylisted", v)
			}
			before++
		case r.stage == policyv1.Stage_STAGE_END_OF_DATA:
			if v.GetAction() != policyv1.Action_ACTION_PERMIT || !hasWarning(v, "rate limit msgs: store unavailable, allowed") {
				t.Errorf("end of data with Redis stopped: %v, want a permit with the fail-open warning", v)
			}
			after++
		default:
			if v.GetAction() != policyv1.Action_ACTION_PERMIT || !hasWarning(v, "greylisting skipped") {
				t.Errorf("RCPT with Redis stopped: %v, want a permit with greylisting skipped", v)
			}
			after++
		}
	}
	if before < 40 || after < 40 {
		t.Errorf("%d checks before the stop and %d after, want at least 40 each", before, after)
	}
	for i, p := range procs {
		for _, state := range []string{"rate_limit", "greylist"} {
			sample := `smtpgate_policy_shared_state_failures_total{state="` + state + `"}`
			if v, _ := strconv.Atoi(p.metric(t, sample)); v == 0 {
				t.Errorf("process %d: %s = %q, want > 0", i+1, sample, p.metric(t, sample))
			}
		}
		b, _ := os.ReadFile(p.log)
		for _, want := range []string{"rate limit msgs: store unavailable, allowed", "greylisting skipped"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("process %d log lacks %q", i+1, want)
			}
		}
	}
}

func hasWarning(v *policyv1.Verdict, prefix string) bool {
	for _, w := range v.GetWarnings() {
		if strings.HasPrefix(w, prefix) {
			return true
		}
	}
	return false
}
