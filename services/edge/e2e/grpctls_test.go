package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMutualTLSStack runs the whole stack with mutual TLS on every gRPC
// hop (edge→policy, edge→auth, policy→auth for auth:users), each service
// with its own certificate: swaks submits with AUTH to a local user,
// which needs all three; an unknown local user is refused by name (so
// policy did reach auth); grpcurl works with an operator's certificate
// and is refused without one.
func TestMutualTLSStack(t *testing.T) {
	s, p := newMTLSStack(t, "")

	for _, svc := range []string{"policy", "auth"} {
		if log := s.log(svc); !strings.Contains(log, "security=mtls") {
			t.Errorf("smtpgate-%s does not say it serves mutual TLS:\n%s", svc, log)
		}
	}

	swaks := swaksPath(t)
	tok := newToken("mtls")
	out, err := swaksAsJohn(t, s.port["submission"], "PLAIN", "john@example.org", tok)
	if err != nil || !strings.Contains(string(out), "250 2.0.0 Ok: queued as") {
		t.Fatalf("swaks over the mutual-TLS stack: %v\n%s\n--- edge ---\n%s", err, out, s.log("edge"))
	}
	if got := s.maildirFile(tok); !strings.Contains(got, "for <john@example.org>;") {
		t.Errorf("delivered message:\n%s", got)
	}
	out, err = exec.Command(swaks, "--server", "127.0.0.1", "--port", itoa(s.port["mx"]),
		"--from", "someone@example.net", "--to", "nobody@example.org", "--timeout", "20").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "550 5.1.1 <nobody@example.org>: Recipient address rejected") {
		t.Errorf("unknown local user over the mutual-TLS stack: %v\n%s", err, out)
	}

	g := grpcurl(t)
	policy := "127.0.0.1:" + itoa(s.port["policy"])
	tlsFlags := p.grpcurlAs("smtpgate-operator")
	out, err = exec.Command(g, append(tlsFlags, "-d", `{"service":""}`, policy, "grpc.health.v1.Health/Check")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"SERVING"`) {
		t.Errorf("grpcurl health with the client certificate: %v\n%s", err, out)
	}
	out, err = exec.Command(g, append(tlsFlags, policy, "list")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "smtpgate.policy.v1.PolicyService") {
		t.Errorf("grpcurl list (reflection) with the client certificate: %v\n%s", err, out)
	}
	for name, args := range map[string][]string{
		"plaintext":             {"-connect-timeout", "5", "-plaintext", policy, "list"},
		"no client certificate": {"-connect-timeout", "5", "-cacert", p.ca.CertFile, policy, "list"},
	} {
		if out, err := exec.Command(g, args...).CombinedOutput(); err == nil {
			t.Errorf("grpcurl %s was answered:\n%s", name, out)
		}
	}
}

// TestPlaintextOffLoopbackRefused: without TLS, each binary's check (and
// its start, before it binds anything) refuses gRPC addresses that are
// not loopback, naming the parameter and the way out; the explicit
// switch allows them.
func TestPlaintextOffLoopbackRefused(t *testing.T) {
	dir, main := localConfig(t)
	certFile, keyFile := writeCert(t, dir)
	lines := strings.Count(string(main), "\n")
	open := string(main) + fmt.Sprintf(`smtpd_tls_cert_file = %s
smtpd_tls_key_file = %s
smtpgate_policy_listen = 0.0.0.0:10040
smtpgate_auth_listen = [::]:10050
smtpgate_policy_service = dns:///policy.example:10040
smtpgate_auth_service = 192.0.2.10:10050
`, certFile, keyFile)
	want := map[string][]string{
		"policy": {fmt.Sprintf(`main.cf:%d: smtpgate_policy_listen: "0.0.0.0:10040" is not a loopback address or unix socket`, lines+3),
			fmt.Sprintf(`main.cf:%d: smtpgate_auth_service: "192.0.2.10:10050" is not a loopback address`, lines+6)},
		"auth": {fmt.Sprintf(`main.cf:%d: smtpgate_auth_listen: "[::]:10050" is not a loopback address`, lines+4)},
		"edge": {fmt.Sprintf(`main.cf:%d: smtpgate_policy_service: "dns:///policy.example:10040" is not a loopback address`, lines+5),
			fmt.Sprintf(`main.cf:%d: smtpgate_auth_service: "192.0.2.10:10050" is not a loopback address`, lines+6)},
	}
	write(t, filepath.Join(dir, "main.cf"), open)
	for _, svc := range []string{"policy", "auth", "edge"} {
		for _, args := range [][]string{{"-c", dir, "check"}, {"-c", dir}} {
			out, err := exec.Command(filepath.Join(binDir, "smtpgate-"+svc), args...).CombinedOutput()
			if code := exitCode(err); code != 1 {
				t.Errorf("smtpgate-%s %s: exit %d, want 1\n%s", svc, strings.Join(args, " "), code, out)
			}
			for _, w := range append(want[svc], "smtpgate_grpc_allow_plaintext = yes if this network is trusted") {
				if !strings.Contains(string(out), w) {
					t.Errorf("smtpgate-%s %s does not say %q:\n%s", svc, strings.Join(args, " "), w, out)
				}
			}
		}
	}
	write(t, filepath.Join(dir, "main.cf"), open+"smtpgate_grpc_allow_plaintext = yes\n")
	// Allowed, but policy and auth warn: without client certificates
	// every caller may call every method.
	warn := map[string]string{
		"policy": "smtpgate-policy: warning: smtpgate_policy_listen 0.0.0.0:10040: no client certificates (smtpgate_grpc_tls_client_ca_file), so every caller that can connect may call every method",
		"auth":   "smtpgate-auth: warning: smtpgate_auth_listen [::]:10050: no client certificates",
	}
	for _, svc := range []string{"policy", "auth", "edge"} {
		out, err := exec.Command(filepath.Join(binDir, "smtpgate-"+svc), "-c", dir, "check").CombinedOutput()
		if err != nil || !strings.Contains(string(out), warn[svc]) || warn[svc] == "" && len(out) != 0 {
			t.Errorf("smtpgate-%s check with smtpgate_grpc_allow_plaintext = yes: %v\n%s", svc, err, out)
		}
	}
}
