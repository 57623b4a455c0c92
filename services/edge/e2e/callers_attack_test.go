package e2e

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/smtpgate/smtpgate/pkg/certtest"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
)

// mtlsPKI is the certificates of a mutual-TLS stack: one per service,
// named by its process (smtpgate-edge, smtpgate-policy, smtpgate-auth:
// the default identities), an operator's, and an attacker's signed by the
// same CA but named for no role.
type mtlsPKI struct {
	ca   *certtest.CA
	cert map[string][2]string // name → cert, key
}

// newMTLSStack runs the stack with mutual TLS on every gRPC hop, as the
// shipped deployments do: one main.cf, each service presenting its own
// certificate (${process_name}), roles from the default identities.
func newMTLSStack(t *testing.T, extraMain string) (*stack, *mtlsPKI) {
	t.Helper()
	dir := t.TempDir()
	p := &mtlsPKI{ca: certtest.NewCA(t, dir, "ca"), cert: map[string][2]string{}}
	for _, svc := range []string{"smtpgate-edge", "smtpgate-policy", "smtpgate-auth"} {
		c, k := p.ca.Peer(t, svc)
		p.cert[svc] = [2]string{c, k}
	}
	for _, name := range []string{"smtpgate-operator", "mallory"} {
		c, k := p.ca.Client(t, name)
		p.cert[name] = [2]string{c, k}
	}
	s := newStack(t, fmt.Sprintf(`
smtpgate_grpc_tls_cert_file = %[1]s/${process_name}.pem
smtpgate_grpc_tls_key_file = %[1]s/${process_name}-key.pem
smtpgate_grpc_tls_client_ca_file = %[2]s
smtpgate_grpc_tls_ca_file = %[2]s
smtpgate_grpc_tls_client_cert_file = %[1]s/${process_name}.pem
smtpgate_grpc_tls_client_key_file = %[1]s/${process_name}-key.pem
%[3]s`, dir, p.ca.CertFile, extraMain))
	return s, p
}

// grpcurlAs returns grpcurl's arguments for the caller holding name's
// certificate ("" for none).
func (p *mtlsPKI) grpcurlAs(name string) []string {
	args := []string{"-connect-timeout", "10", "-cacert", p.ca.CertFile}
	if name != "" {
		args = append(args, "-cert", p.cert[name][0], "-key", p.cert[name][1])
	}
	return args
}

// TestCallersAttack plays the callers of issue 16 against the real
// binaries with mutual TLS: whoever reaches the gRPC ports without a
// certificate is stopped at the handshake; a certificate of the right CA
// but the wrong role gets PermissionDenied for Authenticate (with a
// made-up client address and tls=true), LookupUser, Explain, Status and
// reflection, and the same refusal for a user that exists and one that
// does not; operators get what they need; the edge, with its own
// certificate, still authenticates a submission and delivers it; and a
// holder of policy's certificate hammering LookupUser is stopped by the
// per-caller limit, which policy meets with 451 4.3.0. An edge with a
// certificate of the wrong role gets 421 4.3.0 at the greeting.
func TestCallersAttack(t *testing.T) {
	g := grpcurl(t)
	s, p := newMTLSStack(t, "smtpgate_auth_lookup_rate_limit = 2\n")
	policy, auth := "127.0.0.1:"+itoa(s.port["policy"]), "127.0.0.1:"+itoa(s.port["auth"])
	submission := "127.0.0.1:" + itoa(s.port["submission"])
	grpcurl := func(as string, args ...string) (string, error) {
		out, err := exec.Command(g, append(p.grpcurlAs(as), args...)...).CombinedOutput()
		return string(out), err
	}
	plain := base64.StdEncoding.EncodeToString([]byte("\x00john@example.org\x00guess-1"))
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// The methods are called with their .proto, not through reflection,
	// so that the refusal is the method's own.
	proto := func(svc string) []string {
		return []string{"-import-path", filepath.Join(root, "proto"), "-proto", "smtpgate/" + svc + "/v1/" + svc + ".proto"}
	}
	with := func(a []string, b ...string) []string { return append(append([]string{}, a...), b...) }
	attacks := map[string][]string{
		"Authenticate": with(proto("auth"), "-d", `{"start":{"mechanism":"PLAIN","session":{"listener":"`+submission+`","client_address":"198.51.100.`+
			`7","tls":true},"has_initial_response":true,"initial_response":"`+plain+`"}}`, auth, "smtpgate.auth.v1.AuthService/Authenticate"),
		"LookupUser john":   with(proto("auth"), "-d", `{"username":"john@example.org"}`, auth, "smtpgate.auth.v1.AuthService/LookupUser"),
		"LookupUser nobody": with(proto("auth"), "-d", `{"username":"nobody@example.org"}`, auth, "smtpgate.auth.v1.AuthService/LookupUser"),
		"Explain": with(proto("policy"), "-d", `{"check":{"stage":"STAGE_RCPT","session":{"client_address":"192.0.2.7","helo_name":"x"},`+
			`"transaction":{"sender":"a@example.net","recipient":"lisa@example.com"}}}`, policy, "smtpgate.policy.v1.PolicyService/Explain"),
		"Status policy":     with(proto("admin"), policy, "smtpgate.admin.v1.AdminService/Status"),
		"Status auth":       with(proto("admin"), auth, "smtpgate.admin.v1.AdminService/Status"),
		"reflection policy": {policy, "list"},
		"reflection auth":   {auth, "list"},
	}
	// What each attack would give away if answered.
	secrets := []string{"mynetworks", "127.0.0.1/32", "exists", "john@example.org", "RESULT_", "smtpgate.policy.v1.PolicyService", "smtpgate.auth.v1.AuthService", "passwd"}

	t.Run("no certificate", func(t *testing.T) {
		// Refused at the handshake, so grpcurl waits out its connect
		// timeout: three attacks, plaintext and TLS without a
		// certificate.
		for _, name := range []string{"LookupUser john", "Authenticate", "Status auth"} {
			args := attacks[name]
			for _, mode := range [][]string{{"-plaintext"}, {"-cacert", p.ca.CertFile}} {
				out, err := exec.Command(g, append(append([]string{"-connect-timeout", "3"}, mode...), args...)...).CombinedOutput()
				if err == nil || strings.Contains(string(out), "PermissionDenied") {
					t.Errorf("%s without a certificate %v: got past the handshake: %v\n%s", name, mode, err, out)
				}
				for _, secret := range secrets {
					if strings.Contains(string(out), secret) && !strings.Contains(strings.Join(args, " "), secret) {
						t.Errorf("%s without a certificate gave away %q:\n%s", name, secret, out)
					}
				}
			}
		}
	})

	t.Run("wrong role", func(t *testing.T) {
		// mallory: a valid certificate of no role. The edge's and
		// policy's own certificates are not operators', and only the
		// edge may say which client is authenticating.
		cases := map[string][]string{"mallory": nil, "smtpgate-edge": {"Explain", "Status policy", "Status auth", "reflection policy", "reflection auth"},
			"smtpgate-policy":   {"Authenticate", "Explain", "Status policy", "Status auth", "reflection policy", "reflection auth"},
			"smtpgate-operator": {"Authenticate", "LookupUser john", "LookupUser nobody"}}
		for as, only := range cases {
			outs := map[string]string{}
			for name, args := range attacks {
				if only != nil && !contains(only, name) {
					continue
				}
				out, err := grpcurl(as, args...)
				outs[name] = out
				// The method's refusal (grpcurl's words for a failed
				// call), or reflection's for list: "permission denied"
				// and nothing more.
				want := "Code: PermissionDenied\n  Message: permission denied\n"
				if strings.HasPrefix(name, "reflection") {
					want = "code = PermissionDenied desc = permission denied\n"
				}
				if err == nil || !strings.HasSuffix(out, want) {
					t.Errorf("%s, %s: want PermissionDenied (%q): %v\n%s", as, name, want, err, out)
					continue
				}
				for _, secret := range secrets {
					if strings.Contains(out, secret) && !strings.Contains(strings.Join(args, " "), secret) {
						t.Errorf("%s, %s gave away %q:\n%s", as, name, secret, out)
					}
				}
			}
			// Nothing to enumerate: the answer for a user that exists is
			// the answer for one that does not.
			if a, b := outs["LookupUser john"], outs["LookupUser nobody"]; a != b {
				t.Errorf("%s: LookupUser tells john from nobody:\n%s\n---\n%s", as, a, b)
			}
		}
		// The made-up client address never reached the throttle.
		if log := s.log("auth"); strings.Contains(log, "198.51.100.7") {
			t.Errorf("auth saw the attacker's made-up client address:\n%s", log)
		}
		if log := s.log("auth"); !strings.Contains(log, `"gRPC call refused"`) && !strings.Contains(log, "gRPC call refused") || !strings.Contains(log, "caller=mallory") {
			t.Errorf("auth did not log the refused caller:\n%s", log)
		}
	})

	t.Run("operator", func(t *testing.T) {
		if out, err := grpcurl("smtpgate-operator", policy, "list"); err != nil || !strings.Contains(out, "smtpgate.policy.v1.PolicyService") {
			t.Errorf("operator list: %v\n%s", err, out)
		}
		if out, err := grpcurl("smtpgate-operator", attacks["Explain"]...); err != nil || !strings.Contains(out, "reject_unauth_destination") {
			t.Errorf("operator Explain: %v\n%s", err, out)
		}
		if out, err := grpcurl("smtpgate-operator", auth, "smtpgate.admin.v1.AdminService/Status"); err != nil || !strings.Contains(out, "smtpgate_passwd_file") {
			t.Errorf("operator Status: %v\n%s", err, out)
		}
	})

	t.Run("edge works", func(t *testing.T) {
		tok := newToken("callers")
		out, err := swaksAsJohn(t, s.port["submission"], "PLAIN", "lisa@example.com", tok)
		if err != nil || !strings.Contains(string(out), "235 2.7.0 Authentication successful") || !strings.Contains(string(out), "250 2.0.0 Ok: queued as") {
			t.Fatalf("swaks AUTH and relay over the mutual-TLS stack: %v\n%s\n--- edge ---\n%s", err, out, s.log("edge"))
		}
		if got := s.maildirFile(tok); !strings.Contains(got, "Subject: "+tok) {
			t.Errorf("delivered message:\n%s", got)
		}
	})

	t.Run("impostor edge", func(t *testing.T) {
		// An edge presenting a certificate of the CA without the edge
		// role (mallory's) is refused by policy and auth, and fails
		// closed: nothing is relayed, no password is checked.
		mx, sub := freePort(t), freePort(t)
		dir := t.TempDir()
		for _, name := range []string{"main.cf", "master.cf", "passwd"} {
			b, err := os.ReadFile(filepath.Join(s.conf, name))
			if err != nil {
				t.Fatal(err)
			}
			text := string(b)
			switch name {
			case "master.cf":
				text = strings.NewReplacer("127.0.0.1:"+itoa(s.port["mx"]), "127.0.0.1:"+itoa(mx),
					"127.0.0.1:"+itoa(s.port["submission"]), "127.0.0.1:"+itoa(sub),
					"127.0.0.1:"+itoa(s.port["submissions"]), "127.0.0.1:"+itoa(freePort(t))).Replace(text)
			case "main.cf":
				text += fmt.Sprintf("smtpgate_edge_metrics_listen = 127.0.0.1:%d\nsmtpgate_grpc_tls_client_cert_file = %s\nsmtpgate_grpc_tls_client_key_file = %s\n",
					freePort(t), p.cert["mallory"][0], p.cert["mallory"][1])
			}
			write(t, filepath.Join(dir, name), text)
		}
		s.startAs("impostor-edge", "edge", dir, []string{"127.0.0.1:" + itoa(mx), "127.0.0.1:" + itoa(sub)})
		swaks := swaksPath(t)
		out, err := swaksAsJohn(t, sub, "PLAIN", "lisa@example.com", "")
		// policy refuses the connect stage's Check: the greeting is
		// 421 4.3.0, before any AUTH.
		if err == nil || !strings.Contains(string(out), "<** 421 4.3.0 ") || strings.Contains(string(out), "235 ") {
			t.Errorf("AUTH through the impostor edge: %v\n%s", err, out)
		}
		t.Logf("AUTH through the impostor edge:\n%s", lastLines(string(out), 4))
		out, err = exec.Command(swaks, "--server", "127.0.0.1", "--port", itoa(mx), "--from", "someone@example.net",
			"--to", "john@example.org", "--timeout", "20").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "<** 421 4.3.0 ") || strings.Contains(string(out), "250 2.0.0 Ok: queued") {
			t.Errorf("mail through the impostor edge: %v\n%s", err, out)
		}
		t.Logf("mail through the impostor edge:\n%s", lastLines(string(out), 4))
		if log := s.log("policy"); !strings.Contains(log, "method=/smtpgate.policy.v1.PolicyService/Check caller=mallory") {
			t.Errorf("policy did not log the impostor edge's refused Check:\n%s", log)
		}
		s.kill("impostor-edge")
	})

	t.Run("LookupUser rate limit", func(t *testing.T) {
		// policy's own certificate, in the attacker's hands: allowed,
		// but at 2 calls a second (smtpgate_auth_lookup_rate_limit).
		conn := dialAs(t, p, auth, "smtpgate-policy")
		c := authv1.NewAuthServiceClient(conn)
		var passed, refused atomic.Int64
		lookup := func(ctx context.Context, i int) {
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := c.LookupUser(cctx, &authv1.LookupUserRequest{Username: fmt.Sprintf("user%d@example.org", i)})
			ccancel()
			switch status.Code(err) {
			case codes.OK:
				passed.Add(1)
			case codes.ResourceExhausted:
				refused.Add(1)
			case codes.Canceled:
			default:
				t.Errorf("LookupUser with policy's certificate: %v", err)
			}
		}
		start := time.Now()
		for i := 0; i < 1000 && refused.Load() == 0; i++ {
			lookup(context.Background(), i)
		}
		elapsed := time.Since(start)
		// A burst of 2, and 2 a second after it (policy's own calls
		// count against the same identity).
		if most := 2 + int(elapsed.Seconds()*2) + 1; refused.Load() == 0 || passed.Load() > int64(most) {
			t.Errorf("in %v: %d LookupUser calls passed, %d refused; want a refusal after at most %d", elapsed, passed.Load(), refused.Load(), most)
		}
		t.Logf("in %v: %d LookupUser calls passed before the first refusal", elapsed, passed.Load())

		// The attacker goes on; policy shares the exhausted count (same
		// identity): its lookup of a local recipient fails closed.
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1000; ctx.Err() == nil && i < 100000; i++ {
				lookup(ctx, i)
			}
		}()
		var last string
		for range 5 {
			cl, err := s.dial(Stranger, "mx", false)
			if err != nil {
				t.Fatal(err)
			}
			err = transact(cl, message{sender: "someone@example.net", rcpts: []string{"nobody@example.org"}})
			cl.Close()
			if last = replyOf(err); strings.HasPrefix(last, "451 4.3.0") {
				break
			}
		}
		cancel()
		wg.Wait()
		if !strings.HasPrefix(last, "451 4.3.0") {
			t.Errorf("RCPT to a local user while the limit is exhausted: %s, want 451 4.3.0", last)
		}
		if log := s.log("auth"); !strings.Contains(log, "caller=smtpgate-policy") || !strings.Contains(log, "code=ResourceExhausted") {
			t.Errorf("auth did not log the limited caller:\n%s", log)
		}
		if log := s.log("policy"); !strings.Contains(log, "ResourceExhausted") {
			t.Errorf("policy did not log why the RCPT was deferred:\n%s", log)
		}
		t.Logf("RCPT while limited: %s", last)
		elapsed = time.Since(start)
		t.Logf("in %v: %d LookupUser calls passed, %d refused", elapsed, passed.Load(), refused.Load())
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// dialAs opens a gRPC connection to addr with name's certificate.
func dialAs(t *testing.T, p *mtlsPKI, addr, name string) *grpc.ClientConn {
	t.Helper()
	pool := p.ca.Pool()
	kp, err := tls.LoadX509KeyPair(p.cert[name][0], p.cert[name][1])
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{kp}})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
