package grpcserver

import (
	"context"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/buildinfo"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	adminv1 "github.com/smtpgate/smtpgate/proto/smtpgate/admin/v1"
)

func TestAdminStatus(t *testing.T) {
	f, err := maincf.Parse("main.cf", strings.NewReader("myhostname = mail.example.org\nsmtpgate_auth_redis = redis://u:s3cret@127.0.0.1:6379/0\n"))
	if err != nil {
		t.Fatal(err)
	}
	services, err := maincf.ParseMaster("master.cf", strings.NewReader("127.0.0.1:2587 inet n - n - - smtpd\n  -o smtpd_sasl_security_options=noanonymous\n"))
	if err != nil {
		t.Fatal(err)
	}
	// The auth service's secret, and a parameter of another service.
	cat := maincf.NewCatalogue(append(maincf.Shared(),
		maincf.Def{Name: "smtpgate_auth_redis", Owner: maincf.Auth, Secret: true},
		maincf.Def{Name: "smtpd_relay_restrictions", Default: "permit_mynetworks", Owner: maincf.Policy, Listener: true},
		maincf.Def{Name: "smtpd_sasl_security_options", Owner: maincf.Auth, Listener: true})...)
	a := &Admin{Service: "auth", Owner: maincf.Auth, Main: maincf.New(cat, f, t.TempDir()), Services: services}
	st, err := a.Status(context.Background(), &adminv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*adminv1.Parameter{}
	for _, p := range st.GetParameters() {
		got[p.GetName()] = p
	}
	if p := got["myhostname"]; p.GetValue() != "mail.example.org" || p.GetPosition() != "main.cf:1" {
		t.Errorf("myhostname: %v", p)
	}
	if p := got["smtpgate_auth_redis"]; p.GetValue() != "(redacted)" {
		t.Errorf("a secret shown: %v", p)
	}
	if _, ok := got["smtpd_relay_restrictions"]; ok {
		t.Error("another service's parameter listed")
	}
	if l := st.GetListeners(); len(l) != 1 || len(l[0].GetOverrides()) != 1 || l[0].GetOverrides()[0].GetValue() != "noanonymous" {
		t.Errorf("listeners: %v", l)
	}
	if st.GetService() != "auth" || st.GetGoVersion() == "" {
		t.Errorf("status: %v", st)
	}
	// The build is what --version prints (pkg/buildinfo).
	if bi := buildinfo.Get(); st.GetVersion() != bi.Version || st.GetRevision() != bi.Revision ||
		st.GetBuildDate() != bi.Date || st.GetGoVersion() != bi.GoVersion {
		t.Errorf("status build %q %q %q %q, want %+v", st.GetVersion(), st.GetRevision(), st.GetBuildDate(), st.GetGoVersion(), bi)
	}
}
