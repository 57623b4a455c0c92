package grpcclient

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/smtpgate/smtpgate/pkg/grpcserver"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

// flaky fails the first call of each method with UNAVAILABLE, as a
// replica that is going away would, and counts the calls it got and
// whether each had a deadline.
type flaky struct {
	authv1.UnimplementedAuthServiceServer
	policyv1.UnimplementedPolicyServiceServer
	mu        sync.Mutex
	calls     map[string]int
	deadlines map[string]time.Duration
}

func (f *flaky) call(ctx context.Context, method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method]++
	if d, ok := ctx.Deadline(); ok {
		f.deadlines[method] = time.Until(d)
	} else {
		f.deadlines[method] = -1
	}
	if f.calls[method] == 1 {
		return status.Error(codes.Unavailable, "going away")
	}
	return nil
}

func (f *flaky) count(method string) (int, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method], f.deadlines[method]
}

func (f *flaky) Mechanisms(ctx context.Context, _ *authv1.MechanismsRequest) (*authv1.MechanismsResponse, error) {
	if err := f.call(ctx, "Mechanisms"); err != nil {
		return nil, err
	}
	return &authv1.MechanismsResponse{Mechanisms: []string{"PLAIN"}}, nil
}

func (f *flaky) LookupUser(ctx context.Context, _ *authv1.LookupUserRequest) (*authv1.LookupUserResponse, error) {
	if err := f.call(ctx, "LookupUser"); err != nil {
		return nil, err
	}
	return &authv1.LookupUserResponse{Exists: true}, nil
}

func (f *flaky) Check(ctx context.Context, _ *policyv1.CheckRequest) (*policyv1.CheckResponse, error) {
	if err := f.call(ctx, "Check"); err != nil {
		return nil, err
	}
	return &policyv1.CheckResponse{}, nil
}

// Reads are retried on UNAVAILABLE; Check, which may have counted a rate
// limit before it failed, is not: the server gets it once. Every call has
// a deadline, though the caller set none.
func TestRetryOnlyWhereSafe(t *testing.T) {
	f := &flaky{calls: map[string]int{}, deadlines: map[string]time.Duration{}}
	s := grpcserver.New()
	authv1.RegisterAuthServiceServer(s.GRPC, f)
	policyv1.RegisterPolicyServiceServer(s.GRPC, f)
	addr := serveLoopback(t, s)

	conn, err := Dial(addr, WithTimeout(7*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	auth, policy := authv1.NewAuthServiceClient(conn), policyv1.NewPolicyServiceClient(conn)
	bg := context.Background()

	resp, err := auth.Mechanisms(bg, &authv1.MechanismsRequest{})
	if n, _ := f.count("Mechanisms"); err != nil || len(resp.GetMechanisms()) != 1 || n != 2 {
		t.Errorf("Mechanisms: %v, %v after %d calls; want PLAIN after a retry (2 calls)", resp, err, n)
	}
	lu, err := auth.LookupUser(bg, &authv1.LookupUserRequest{Username: "john@example.org"})
	if n, _ := f.count("LookupUser"); err != nil || !lu.GetExists() || n != 2 {
		t.Errorf("LookupUser: %v, %v after %d calls; want found after a retry (2 calls)", lu, err, n)
	}
	_, err = policy.Check(bg, &policyv1.CheckRequest{})
	if n, _ := f.count("Check"); status.Code(err) != codes.Unavailable || n != 1 {
		t.Errorf("Check: %v after %d calls; want UNAVAILABLE from the one call the server got", err, n)
	}
	// The next Check is a new call, answered, with the default deadline.
	if _, err := policy.Check(bg, &policyv1.CheckRequest{}); err != nil {
		t.Errorf("second Check: %v", err)
	}
	if _, d := f.count("Check"); d <= 0 || d > 7*time.Second {
		t.Errorf("Check reached the server with deadline in %v, want within the 7s timeout", d)
	}
	// A caller's own deadline is kept, even a later one.
	cctx, ccancel := context.WithTimeout(bg, 30*time.Second)
	defer ccancel()
	if _, err := policy.Check(cctx, &policyv1.CheckRequest{}); err != nil {
		t.Errorf("third Check: %v", err)
	}
	if _, d := f.count("Check"); d <= 7*time.Second {
		t.Errorf("Check with a 30s deadline reached the server with %v left", d)
	}
	for _, m := range []string{"Mechanisms", "LookupUser"} {
		if _, d := f.count(m); d <= 0 || d > 7*time.Second {
			t.Errorf("%s reached the server with deadline in %v, want within the 7s timeout", m, d)
		}
	}
}
