package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// grpcurlVersion is the grpcurl the tests install from the Go module
// proxy.
const grpcurlVersion = "v1.9.3"

// grpcurl returns the path of a grpcurl binary, installing the pinned
// version into the user cache directory when it is not there yet.
func grpcurl(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "smtpgate-tools", "grpcurl-"+grpcurlVersion)
	path := filepath.Join(bin, "grpcurl")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	cmd := exec.Command("go", "install", "github.com/fullstorydev/grpcurl/cmd/grpcurl@"+grpcurlVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOWORK=off")
	cmd.Dir = t.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("installing grpcurl %s from the Go module proxy: %v\n%s", grpcurlVersion, err, out)
	}
	return path
}

// TestGRPCurl runs the real grpcurl against the running services, as the
// README shows: list and describe through reflection, health, Check and
// Explain with JSON facts, and AuthService/Mechanisms.
func TestGRPCurl(t *testing.T) {
	g := grpcurl(t)
	s := newStack(t, "")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(g, append([]string{"-plaintext"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	policy, auth := "127.0.0.1:"+itoa(s.port["policy"]), "127.0.0.1:"+itoa(s.port["auth"])

	for addr, want := range map[string][]string{
		policy: {"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "smtpgate.policy.v1.PolicyService"},
		auth:   {"grpc.health.v1.Health", "smtpgate.auth.v1.AuthService"},
	} {
		out := run(addr, "list")
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("grpcurl list %s lacks %s:\n%s", addr, w, out)
			}
		}
		if out := run("-d", `{"service":""}`, addr, "grpc.health.v1.Health/Check"); !strings.Contains(out, `"SERVING"`) {
			t.Errorf("health of %s: %s", addr, out)
		}
	}
	// Version and effective configuration, secrets redacted.
	for addr, svc := range map[string]string{policy: "policy", auth: "auth"} {
		var st struct {
			Service, Version, GoVersion string
			Parameters                  []struct{ Name, Value, Position string }
		}
		if err := json.Unmarshal([]byte(run(addr, "smtpgate.admin.v1.AdminService/Status")), &st); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, p := range st.Parameters {
			if p.Name == "myhostname" && p.Value == "mail.example.org" && strings.Contains(p.Position, "main.cf:") {
				found = true
			}
		}
		if st.Service != svc || st.Version == "" || st.GoVersion == "" || !found {
			t.Errorf("Status of %s: %+v", svc, st)
		}
	}
	if out := run(policy, "describe", "smtpgate.policy.v1.PolicyService"); !strings.Contains(out, "rpc Explain ( .smtpgate.policy.v1.ExplainRequest ) returns ( .smtpgate.policy.v1.ExplainResponse )") {
		t.Errorf("describe PolicyService:\n%s", out)
	}

	facts := `{"stage":"STAGE_RCPT","session":{"client_address":"192.0.2.7","helo_name":"x.example.net"},
		"transaction":{"sender":"a@example.net","recipient":"lisa@example.com"}}`
	var check struct {
		Verdict struct {
			Action, Text, Restriction string
			Code                      int
		}
	}
	if err := json.Unmarshal([]byte(run("-d", facts, policy, "smtpgate.policy.v1.PolicyService/Check")), &check); err != nil {
		t.Fatal(err)
	}
	if check.Verdict.Action != "ACTION_REJECT" || check.Verdict.Code != 554 || check.Verdict.Text != "<lisa@example.com>: Relay access denied" {
		t.Errorf("Check: %+v", check.Verdict)
	}
	var explain struct {
		Lists []string
		Steps []struct{ List, Restriction, Result string }
	}
	if err := json.Unmarshal([]byte(run("-d", `{"check":`+facts+`}`, policy, "smtpgate.policy.v1.PolicyService/Explain")), &explain); err != nil {
		t.Fatal(err)
	}
	last := explain.Steps[len(explain.Steps)-1]
	if len(explain.Lists) == 0 || last.Restriction != "reject_unauth_destination" || last.Result != "REFUSE" {
		t.Errorf("Explain: lists %v, steps %+v", explain.Lists, explain.Steps)
	}
	if out := run("-d", `{"session":{"listener":"127.0.0.1:`+itoa(s.port["submission"])+`","tls":true}}`, auth, "smtpgate.auth.v1.AuthService/Mechanisms"); !strings.Contains(out, "SCRAM-SHA-256") || !strings.Contains(out, "PLAIN") {
		t.Errorf("Mechanisms: %s", out)
	}
}
