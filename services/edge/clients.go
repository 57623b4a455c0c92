package edge

import (
	"context"

	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/smtpd"
)

// The engine's seams (smtpd.Policy, smtpd.Auth) over the generated gRPC
// clients. The engine speaks the proto messages itself: there is no
// conversion to make here.

// policyClient adapts the generated client to the engine's seam.
type policyClient struct{ c policyv1.PolicyServiceClient }

func (p policyClient) Check(ctx context.Context, req *policyv1.CheckRequest) (*policyv1.CheckResponse, error) {
	return p.c.Check(ctx, req)
}

// authClient adapts the generated client to the engine's seam.
type authClient struct{ c authv1.AuthServiceClient }

func (a authClient) Mechanisms(ctx context.Context, req *authv1.MechanismsRequest) (*authv1.MechanismsResponse, error) {
	return a.c.Mechanisms(ctx, req)
}

func (a authClient) Authenticate(ctx context.Context) (smtpd.AuthStream, error) {
	return a.c.Authenticate(ctx)
}
