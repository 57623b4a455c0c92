package policy

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

// users is an AuthService over gRPC that knows a fixed set of users.
type users struct {
	authv1.UnimplementedAuthServiceServer
	names map[string]bool
}

func (u *users) LookupUser(_ context.Context, req *authv1.LookupUserRequest) (*authv1.LookupUserResponse, error) {
	name := strings.ToLower(req.GetUsername())
	if u.names[name] {
		return &authv1.LookupUserResponse{Exists: true, Username: name}, nil
	}
	return &authv1.LookupUserResponse{}, nil
}

// TestAuthUsersTable: local_recipient_maps = auth:users asks the auth
// service, and a dead auth service makes the check fail (closed), never
// permit.
func TestAuthUsersTable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	authv1.RegisterAuthServiceServer(g, &users{names: map[string]bool{"john@example.org": true}})
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()

	f, err := maincf.Parse("main.cf", strings.NewReader(mainCF+`
smtpgate_auth_service = `+lis.Addr().String()+`
smtpgate_auth_timeout = 2s
local_recipient_maps = auth:users
smtpd_sender_login_maps = auth:users
smtpd_sender_restrictions = reject_sender_login_mismatch
`))
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, serverSetup{Main: maincf.New(Catalogue(), f, t.TempDir())})
	ctx := context.Background()
	req := func(rcpt string) *policyv1.CheckRequest { return rcptRequest("", "203.0.113.5", rcpt) }

	resp, err := srv.handler.Check(ctx, req("John@Example.org"))
	if err != nil || resp.GetVerdict().GetAction() != policyv1.Action_ACTION_PERMIT {
		t.Errorf("known user: %v %v", resp.GetVerdict(), err)
	}
	resp, err = srv.handler.Check(ctx, req("nobody@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	if v := resp.GetVerdict(); v.GetCode() != 550 || v.GetText() != "<nobody@example.org>: Recipient address rejected: User unknown in local recipient table" {
		t.Errorf("unknown user: %v", v)
	}
	// The login map: john may send as john@example.org, lisa may not.
	r := req("john@example.org")
	r.Transaction.Sender = "john@example.org"
	r.Session.Sasl = &policyv1.SASL{Method: "PLAIN", Username: "lisa@example.org"}
	resp, err = srv.handler.Check(ctx, r)
	if err != nil || resp.GetVerdict().GetCode() != 553 {
		t.Errorf("lisa sending as john: %v %v", resp.GetVerdict(), err)
	}
	r.Session.Sasl.Username = "john@example.org"
	resp, err = srv.handler.Check(ctx, r)
	if err != nil || resp.GetVerdict().GetAction() != policyv1.Action_ACTION_PERMIT {
		t.Errorf("john sending as john: %v %v", resp.GetVerdict(), err)
	}

	g.Stop()
	_, err = srv.handler.Check(ctx, req("nobody@example.org"))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("auth down: %v, want Unavailable (the edge then answers 451)", err)
	}
}
