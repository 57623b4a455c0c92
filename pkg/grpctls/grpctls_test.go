package grpctls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/certtest"
	"github.com/smtpgate/smtpgate/pkg/maincf"
)

func config(t *testing.T, dir, text string) *maincf.Config {
	t.Helper()
	f, err := maincf.Parse("main.cf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	c := maincf.New(maincf.NewCatalogue(maincf.Shared()...), f, dir)
	if err := c.Validate(maincf.All); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLocalAddresses(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:10040":        true,
		"127.9.9.9:10040":        true,
		"[::1]:10040":            true,
		"localhost:10040":        true,
		"unix:/run/policy.sock":  true,
		"0.0.0.0:10040":          false,
		":10040":                 false,
		"[::]:10040":             false,
		"10.1.2.3:10040":         false,
		"policy.example:10040":   false,
		"127.0.0.1":              false, // not an address to listen on
		"localhost.example:1004": false,
	} {
		if got := LocalListen(addr); got != want {
			t.Errorf("listen %q: local = %v, want %v", addr, got, want)
		}
	}
	for target, want := range map[string]bool{
		"127.0.0.1:10040":                  true,
		"localhost:10040":                  true,
		"[::1]:10040":                      true,
		"dns:///localhost:10040":           true,
		"dns:localhost:10040":              true,
		"dns://8.8.8.8/127.0.0.1:10040":    true,
		"passthrough:///127.0.0.1:10040":   true,
		"unix:///run/smtpgate/policy.sock": true,
		"unix:policy.sock":                 true,
		"unix-abstract:smtpgate-policy":    true,
		"dns:///smtpgate-policy:10040":     false,
		"smtpgate-policy:10040":            false,
		"10.0.0.1:10040":                   false,
		"xds:///policy":                    false,
		"test:///replicas":                 false,
	} {
		if got := localTarget(target); got != want {
			t.Errorf("target %q: local = %v, want %v", target, got, want)
		}
	}
}

// Plaintext to or on an address that is not loopback is refused with the
// parameter, its file:line and the way out; allowed explicitly.
func TestPlaintextRefused(t *testing.T) {
	dir := t.TempDir()
	c := config(t, dir, "smtpgate_policy_listen = 0.0.0.0:10040\nsmtpgate_auth_service = dns:///smtpgate-auth:10050\n")
	_, err := ServerSecurity(c, "smtpgate_policy_listen")
	for _, want := range []string{"main.cf:1: smtpgate_policy_listen: ", `"0.0.0.0:10040" is not a loopback address`,
		"set smtpgate_grpc_tls_cert_file and smtpgate_grpc_tls_key_file", "smtpgate_grpc_allow_plaintext = yes"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("server error %v does not say %q", err, want)
		}
	}
	_, err = ClientSecurity(c, "smtpgate_auth_service")
	for _, want := range []string{"main.cf:2: smtpgate_auth_service: ", "set smtpgate_grpc_tls_ca_file", "smtpgate_grpc_allow_plaintext = yes"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("client error %v does not say %q", err, want)
		}
	}
	// The default addresses are loopback.
	c = config(t, dir, "")
	if sec, err := ServerSecurity(c, "smtpgate_auth_listen"); err != nil || sec.Mode != Plaintext {
		t.Errorf("loopback listener: %v, %v", sec.Mode, err)
	}
	if sec, err := ClientSecurity(c, "smtpgate_policy_service"); err != nil || sec.Mode != Plaintext {
		t.Errorf("loopback client: %v, %v", sec.Mode, err)
	}
	c = config(t, dir, "smtpgate_policy_listen = 0.0.0.0:10040\nsmtpgate_auth_service = dns:///smtpgate-auth:10050\nsmtpgate_grpc_allow_plaintext = yes\n")
	if _, err := ServerSecurity(c, "smtpgate_policy_listen"); err != nil {
		t.Errorf("allowed plaintext listener: %v", err)
	}
	if _, err := ClientSecurity(c, "smtpgate_auth_service"); err != nil {
		t.Errorf("allowed plaintext client: %v", err)
	}
}

func TestIncompleteSettings(t *testing.T) {
	dir := t.TempDir()
	certtest.NewCA(t, dir, "ca") // ca.pem, a certificate without its key
	for _, tc := range []struct{ main, server, client string }{
		{main: "smtpgate_grpc_tls_client_ca_file = ca.pem\n", server: "main.cf:1: smtpgate_grpc_tls_client_ca_file: mutual TLS needs a server certificate"},
		{main: "smtpgate_grpc_tls_key_file = key.pem\n", server: "main.cf:1: smtpgate_grpc_tls_key_file: set smtpgate_grpc_tls_cert_file too"},
		{main: "smtpgate_grpc_tls_client_cert_file = c.pem\n", client: "main.cf:1: smtpgate_grpc_tls_client_cert_file: a client certificate is for TLS: set smtpgate_grpc_tls_ca_file too"},
		{main: "smtpgate_grpc_tls_server_name = policy\n", client: "main.cf:1: smtpgate_grpc_tls_server_name: a server name is for TLS"},
		{main: "smtpgate_grpc_tls_cert_file = missing.pem\n", server: "missing.pem: no such file"},
		{main: "smtpgate_grpc_tls_cert_file = ca.pem\n", server: "smtpgate_grpc_tls_cert_file " + dir + "/ca.pem, smtpgate_grpc_tls_key_file " + dir + "/ca.pem"},
		{main: "smtpgate_grpc_tls_ca_file = main.cf\n", client: "smtpgate_grpc_tls_ca_file " + dir + "/main.cf: no PEM certificate in it"},
	} {
		if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(tc.main), 0o600); err != nil {
			t.Fatal(err)
		}
		c := config(t, dir, tc.main)
		if tc.server != "" {
			if _, err := ServerSecurity(c, "smtpgate_policy_listen"); err == nil || !strings.Contains(err.Error(), tc.server) {
				t.Errorf("%q: server error %v, want %q", tc.main, err, tc.server)
			}
		}
		if tc.client != "" {
			if _, err := ClientSecurity(c, "smtpgate_policy_service"); err == nil || !strings.Contains(err.Error(), tc.client) {
				t.Errorf("%q: client error %v, want %q", tc.main, err, tc.client)
			}
		}
	}
}

// served returns the common name of the certificate a server with creds
// presents, seen by a client trusting pool.
func served(t *testing.T, r *reloading, pool *x509.CertPool) (string, error) {
	t.Helper()
	cli, srv := net.Pipe()
	defer cli.Close()
	done := make(chan error, 1)
	go func() {
		_, _, err := r.ServerHandshake(srv)
		srv.Close()
		done <- err
	}()
	tc := tls.Client(cli, &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
	err := tc.HandshakeContext(context.Background())
	<-done
	if err != nil {
		return "", err
	}
	return tc.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

// A changed certificate is served from the next handshake on; one that
// does not load is logged once and the previous one stays.
func TestReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, dir, "ca")
	pool := ca.Pool()
	cert, key := ca.Server(t, "one")
	for from, to := range map[string]string{cert: "server.pem", key: "server-key.pem"} {
		if err := os.Rename(from, filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	c := config(t, dir, "smtpgate_grpc_tls_cert_file = server.pem\nsmtpgate_grpc_tls_key_file = server-key.pem\n")
	sec, err := ServerSecurity(c, "smtpgate_policy_listen")
	creds, mode := sec.Credentials(slog.New(slog.NewTextHandler(&logs, nil))), sec.Mode
	if err != nil || mode != TLS {
		t.Fatalf("Server: %v, %v", mode, err)
	}
	r := creds.(*reloading)
	if cn, err := served(t, r, pool); err != nil || cn != "one" {
		t.Fatalf("served %q, %v; want one", cn, err)
	}
	cert, key = ca.Server(t, "two")
	for from, to := range map[string]string{cert: "server.pem", key: "server-key.pem"} {
		if err := os.Rename(from, filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
	}
	if cn, err := served(t, r, pool); err != nil || cn != "two" {
		t.Errorf("after the change: served %q, %v; want two", cn, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server-key.pem"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if cn, err := served(t, r, pool); err != nil || cn != "two" {
			t.Errorf("after a broken key: served %q, %v; want two", cn, err)
		}
	}
	if n := strings.Count(logs.String(), "do not load; the previous ones stay in use"); n != 1 {
		t.Errorf("broken key logged %d times, want 1:\n%s", n, logs.String())
	}
}

// FuzzLocalTarget: any target string is classified without panicking,
// and a target called local names a loopback host or a unix socket.
func FuzzLocalTarget(f *testing.F) {
	for _, s := range []string{"127.0.0.1:10040", "dns:///localhost:1", "dns://8.8.8.8/[::1]:1", "unix:/x", "passthrough:///a:1",
		"dns:", "dns://", "[", "[::1", "localhost.", "0.0.0.0:1", "xds:///x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		if !localTarget(target) || strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
			return
		}
		rest := target
		for _, scheme := range []string{"dns:", "passthrough:"} {
			if r, ok := strings.CutPrefix(rest, scheme); ok {
				rest = r
				if r, ok := strings.CutPrefix(rest, "//"); ok {
					_, rest, _ = strings.Cut(r, "/")
				}
				break
			}
		}
		h := hostOf(rest)
		if ip := net.ParseIP(h); ip != nil && !ip.IsLoopback() {
			t.Errorf("%q called local, host %q", target, h)
		}
		if net.ParseIP(h) == nil && !strings.EqualFold(strings.TrimSuffix(h, "."), "localhost") {
			t.Errorf("%q called local, host %q", target, h)
		}
	})
}

// ServerSecurity reads the TLS files once, as a service's settings do;
// Credentials, when the service starts, serves what was read then and
// does not fail if the files broke in between (the next handshake logs
// that, and keeps the pair that loaded).
func TestSecurityReadOnce(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, dir, "ca")
	pool := ca.Pool()
	cert, key := ca.Server(t, "one")
	c := config(t, dir, "smtpgate_grpc_tls_cert_file = "+cert+"\nsmtpgate_grpc_tls_key_file = "+key+"\n")
	sec, err := ServerSecurity(c, "smtpgate_policy_listen")
	if err != nil || sec.Mode != TLS {
		t.Fatalf("ServerSecurity: %v, %v", sec.Mode, err)
	}
	if err := os.WriteFile(key, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	r := sec.Credentials(slog.New(slog.NewTextHandler(&logs, nil))).(*reloading)
	if cn, err := served(t, r, pool); err != nil || cn != "one" {
		t.Errorf("served %q, %v; want one, read by ServerSecurity", cn, err)
	}
	if !strings.Contains(logs.String(), "do not load; the previous ones stay in use") {
		t.Errorf("the broken key is not logged to the service's logger:\n%s", logs.String())
	}
}
