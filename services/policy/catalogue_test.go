package policy

import (
	"go/ast"
	"path/filepath"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/daemon"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/maincf/maincftest"
)

// compilerCalls are the restriction package's functions that read
// main.cf by name: only settings.go (Load) may call them.
var compilerCalls = map[string]bool{"Compile": true, "CompileWith": true, "GreylistParams": true}

// catalogued returns the catalogued parameter names that the non-test Go
// files of dir name in string literals, by file; in the package itself,
// a call of the compiler outside settings.go fails the test.
func catalogued(t *testing.T, cat *maincf.Catalogue, dir string) map[string]map[string]bool {
	t.Helper()
	return maincftest.NamedIn(t, cat, dir, func(f string, n ast.Node) {
		if sel, ok := n.(*ast.SelectorExpr); ok && dir == "." && f != "settings.go" {
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == "restriction" && compilerCalls[sel.Sel.Name] {
				t.Errorf("%s calls restriction.%s; only settings.go compiles the lists", f, sel.Sel.Name)
			}
		}
	})
}

// TestParametersReadOnlyInSettings: every parameter the policy service
// reads is read in settings.go, by the restriction compiler Load runs
// (internal/restriction: the lists and the Postfix parameters they
// use), or by pkg on policy's behalf (listed below, each checked to be
// named there); and no other source file of the package names a
// parameter of the catalogue or calls the compiler: the rest of the
// service sees only Settings.
func TestParametersReadOnlyInSettings(t *testing.T) {
	cat := Catalogue()
	// Read for the policy service by pkg, by the names settings.go hands
	// it or by names of its own.
	byPkg := map[string]string{
		"smtpgate_log_format": "daemon", "smtpgate_log_level": "daemon", "process_name": "daemon",
		"smtpgate_grpc_tls_cert_file": "grpctls", "smtpgate_grpc_tls_key_file": "grpctls", "smtpgate_grpc_tls_client_ca_file": "grpctls",
		"smtpgate_grpc_tls_ca_file": "grpctls", "smtpgate_grpc_tls_client_cert_file": "grpctls", "smtpgate_grpc_tls_client_key_file": "grpctls",
		"smtpgate_grpc_tls_server_name": "grpctls", "smtpgate_grpc_allow_plaintext": "grpctls",
		"smtpgate_grpc_edge_identities": "grpcserver", "smtpgate_grpc_policy_identities": "grpcserver", "smtpgate_grpc_operator_identities": "grpcserver",
	}
	// Read by pkg/daemon under a name it makes, or never read by name:
	// only expanded into other values ($mydomain into mydestination,
	// $reject_tempfail_action into the *_tempfail_action defaults).
	other := map[string]string{
		daemon.MetricsParam("policy"): "pkg/daemon.MetricsParam", daemon.PprofParam("policy"): "pkg/daemon.PprofParam",
		"mydomain": "expanded only", "mail_name": "expanded only", "reject_tempfail_action": "expanded only",
	}
	inPkg := map[string]bool{}
	named := map[string]map[string]bool{} // by pkg
	for name, pkg := range byPkg {
		if named[pkg] == nil {
			named[pkg] = map[string]bool{}
			for _, names := range catalogued(t, cat, filepath.Join("..", "..", "pkg", pkg)) {
				for n := range names {
					named[pkg][n] = true
				}
			}
		}
		if inPkg[name] = named[pkg][name]; !inPkg[name] {
			t.Errorf("%s is listed as read by pkg/%s, which does not name it", name, pkg)
		}
	}
	inSettings := map[string]bool{}
	for file, names := range catalogued(t, cat, ".") {
		for name := range names {
			if file == "settings.go" {
				inSettings[name] = true
			} else {
				t.Errorf("%s names the parameter %s; only settings.go reads parameters", file, name)
			}
		}
	}
	if len(inSettings) == 0 {
		t.Fatal("found no parameter names in settings.go")
	}
	inRestriction := map[string]bool{}
	for _, names := range catalogued(t, cat, filepath.Join("internal", "restriction")) {
		for name := range names {
			inRestriction[name] = true
		}
	}
	for _, name := range cat.Names() {
		d, _ := cat.Def(name)
		if d.Owner&maincf.Policy == 0 {
			if inSettings[name] {
				t.Errorf("settings.go reads %s, which the catalogue does not give the policy service", name)
			}
			continue
		}
		if !inSettings[name] && !inRestriction[name] && !inPkg[name] && other[name] == "" {
			t.Errorf("%s is the policy service's parameter but neither settings.go nor the restriction compiler reads it", name)
		}
	}
	for name := range other {
		if d, ok := cat.Def(name); !ok || d.Owner&maincf.Policy == 0 {
			t.Errorf("%s is listed as read elsewhere but is not the policy service's parameter", name)
		}
	}
}
