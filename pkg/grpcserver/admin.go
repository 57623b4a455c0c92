package grpcserver

import (
	"context"

	"github.com/smtpgate/smtpgate/pkg/buildinfo"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	adminv1 "github.com/smtpgate/smtpgate/proto/smtpgate/admin/v1"
)

// Admin answers smtpgate.admin.v1.AdminService/Status: the service's name,
// version and effective configuration (secrets redacted).
type Admin struct {
	adminv1.UnimplementedAdminServiceServer
	Service  string
	Owner    maincf.Owner
	Main     *maincf.Config
	Services []maincf.Service
}

// Status implements AdminService.Status.
func (a *Admin) Status(context.Context, *adminv1.StatusRequest) (*adminv1.StatusResponse, error) {
	bi := buildinfo.Get()
	out := &adminv1.StatusResponse{Service: a.Service, Version: bi.Version, Revision: bi.Revision,
		BuildDate: bi.Date, GoVersion: bi.GoVersion}
	if a.Main == nil {
		return out, nil
	}
	for _, p := range a.Main.Effective(a.Owner) {
		out.Parameters = append(out.Parameters, &adminv1.Parameter{Name: p.Name, Value: p.Value, Position: position(p.Pos)})
	}
	cat := a.Main.Catalogue()
	for _, svc := range a.Services {
		l := &adminv1.Listener{Name: svc.Name}
		for _, o := range svc.Overrides {
			d, known := cat.Def(o.Name)
			if known && d.Owner&a.Owner == 0 {
				continue
			}
			v := o.Value
			if d.Secret && v != "" {
				v = "(redacted)"
			}
			l.Overrides = append(l.Overrides, &adminv1.Parameter{Name: o.Name, Value: v, Position: position(o.Pos)})
		}
		out.Listeners = append(out.Listeners, l)
	}
	return out, nil
}

func position(p maincf.Pos) string {
	if p == (maincf.Pos{}) {
		return ""
	}
	return p.String()
}

// WithAdmin registers AdminService answered by a.
func WithAdmin(a *Admin) Option {
	return func(o *options) { o.admin = a }
}
