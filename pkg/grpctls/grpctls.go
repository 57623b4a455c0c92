// Package grpctls secures the gRPC connections between smtpgate services:
// the transport credentials of a gRPC listener (smtpgate_policy_listen,
// smtpgate_auth_listen) and of a client (smtpgate_policy_service,
// smtpgate_auth_service), from the smtpgate_grpc_tls_* parameters of
// main.cf.
//
//   - A listener serves TLS when smtpgate_grpc_tls_cert_file is set, and
//     mutual TLS (a client certificate signed by one of those CAs is
//     required) when smtpgate_grpc_tls_client_ca_file is set too.
//   - A client speaks TLS when smtpgate_grpc_tls_ca_file is set, verifies
//     the server's certificate against that file only, for the host of the
//     target or smtpgate_grpc_tls_server_name, and presents
//     smtpgate_grpc_tls_client_cert_file when it is set.
//   - Without TLS, the address must be loopback (127.0.0.0/8, ::1,
//     localhost) or a unix socket, unless smtpgate_grpc_allow_plaintext =
//     yes: plaintext on a network is the operator's explicit choice.
//   - TLS 1.2 at least, always.
//
// The files are read again at every new connection's handshake; when their
// content changed, the new certificates and CAs are used from that
// handshake on (a pair that does not load is logged, and the previous one
// stays). Connections already open keep the session they negotiated.
//
// Trust: the certificate, key and CA files named in main.cf are the
// operator's and trusted; a peer is trusted only when its certificate
// verifies against the configured CAs (a server for the target's name, a
// client for mutual TLS). Private keys are never logged.
package grpctls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/smtpgate/smtpgate/pkg/maincf"
)

// The parameters, in main.cf.
const (
	// Server side: the certificate of every gRPC listener, and the CAs of
	// the client certificates it requires (mutual TLS).
	CertFile     = "smtpgate_grpc_tls_cert_file"
	KeyFile      = "smtpgate_grpc_tls_key_file"
	ClientCAFile = "smtpgate_grpc_tls_client_ca_file"
	// Client side: the CAs the servers' certificates are verified
	// against (setting it turns TLS on), the client's own certificate,
	// and the name to verify instead of the target's host.
	CAFile         = "smtpgate_grpc_tls_ca_file"
	ClientCertFile = "smtpgate_grpc_tls_client_cert_file"
	ClientKeyFile  = "smtpgate_grpc_tls_client_key_file"
	ServerName     = "smtpgate_grpc_tls_server_name"
	// Both: plaintext to or on an address that is not loopback.
	AllowPlaintext = "smtpgate_grpc_allow_plaintext"
)

// Mode says how a connection is secured, for the logs.
type Mode string

// The modes.
const (
	Plaintext Mode = "plaintext"
	TLS       Mode = "tls"
	MutualTLS Mode = "mtls"
)

// Security is how one gRPC listener or client is secured, read from
// main.cf once (by a service's settings) and turned into credentials when
// the service is built.
type Security struct {
	// Mode says how, for the logs.
	Mode Mode
	// creds are insecure credentials, or a *reloading with no logger.
	creds credentials.TransportCredentials
}

// Credentials returns the transport credentials; log (nil: none) gets the
// reloads of the TLS files. The files read by ServerSecurity or
// ClientSecurity are not read again until a handshake finds them changed.
func (s Security) Credentials(log *slog.Logger) credentials.TransportCredentials {
	r, ok := s.creds.(*reloading)
	if !ok || log == nil {
		return s.creds
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return &reloading{files: r.files, load: r.load, log: log, content: r.content, creds: r.creds, failed: r.failed}
}

// ServerSecurity reads the security of the gRPC listener whose address is
// main.cf's listenParam, and its TLS files. The error names the parameter
// at fault and its file:line.
func ServerSecurity(c *maincf.Config, listenParam string) (Security, error) {
	cert, key, ca := c.Path(CertFile), c.Path(KeyFile), c.Path(ClientCAFile)
	switch {
	case cert == "" && key != "":
		return Security{}, c.Errorf(KeyFile, "set %s too", CertFile)
	case cert == "" && ca != "":
		return Security{}, c.Errorf(ClientCAFile, "mutual TLS needs a server certificate: set %s and %s too", CertFile, KeyFile)
	case cert == "":
		if err := plaintextOK(c, listenParam, LocalListen(c.Get(listenParam))); err != nil {
			return Security{}, err
		}
		return Security{Mode: Plaintext, creds: insecure.NewCredentials()}, nil
	}
	mode := TLS
	files := []string{cert, key}
	if ca != "" {
		mode = MutualTLS
		files = append(files, ca)
	}
	load := func(b [][]byte) (*tls.Config, error) {
		kp, err := tls.X509KeyPair(b[0], b[1])
		if err != nil {
			return nil, fmt.Errorf("%s %s, %s %s: %w", CertFile, cert, KeyFile, key, err)
		}
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{kp}}
		if ca != "" {
			pool, err := certPool(ClientCAFile, ca, b[2])
			if err != nil {
				return nil, err
			}
			cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		return cfg, nil
	}
	r, err := newReloading(files, load)
	if err != nil {
		return Security{}, fmt.Errorf("%s: %w", c.Pos(CertFile), err)
	}
	return Security{Mode: mode, creds: r}, nil
}

// ClientSecurity reads the security of the client of the target in
// main.cf's targetParam (a gRPC target: host:port, dns:///host:port,
// unix:/path), and its TLS files.
func ClientSecurity(c *maincf.Config, targetParam string) (Security, error) {
	ca, cert, key, name := c.Path(CAFile), c.Path(ClientCertFile), c.Path(ClientKeyFile), c.Get(ServerName)
	switch {
	case ca == "" && cert != "":
		return Security{}, c.Errorf(ClientCertFile, "a client certificate is for TLS: set %s too", CAFile)
	case ca == "" && name != "":
		return Security{}, c.Errorf(ServerName, "a server name is for TLS: set %s too", CAFile)
	case cert == "" && key != "":
		return Security{}, c.Errorf(ClientKeyFile, "set %s too", ClientCertFile)
	case ca == "":
		if err := plaintextOK(c, targetParam, localTarget(c.Get(targetParam))); err != nil {
			return Security{}, err
		}
		return Security{Mode: Plaintext, creds: insecure.NewCredentials()}, nil
	}
	mode := TLS
	files := []string{ca}
	if cert != "" {
		mode = MutualTLS
		files = append(files, cert, key)
	}
	load := func(b [][]byte) (*tls.Config, error) {
		pool, err := certPool(CAFile, ca, b[0])
		if err != nil {
			return nil, err
		}
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: name}
		if cert != "" {
			kp, err := tls.X509KeyPair(b[1], b[2])
			if err != nil {
				return nil, fmt.Errorf("%s %s, %s %s: %w", ClientCertFile, cert, ClientKeyFile, key, err)
			}
			// Always sent: Go would leave out a certificate whose issuer
			// is not among the CAs the server names.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &kp, nil }
		}
		return cfg, nil
	}
	r, err := newReloading(files, load)
	if err != nil {
		return Security{}, fmt.Errorf("%s: %w", c.Pos(CAFile), err)
	}
	return Security{Mode: mode, creds: r}, nil
}

// plaintextOK applies the loopback rule to the address in param.
func plaintextOK(c *maincf.Config, param string, local bool) error {
	if local || c.Bool(AllowPlaintext) {
		return nil
	}
	side := fmt.Sprintf("set %s and %s (TLS; with %s, mutual TLS)", CertFile, KeyFile, ClientCAFile)
	if strings.HasSuffix(param, "_service") {
		side = fmt.Sprintf("set %s (TLS; with %s and %s, mutual TLS)", CAFile, ClientCertFile, ClientKeyFile)
	}
	return c.Errorf(param, "%q is not a loopback address or unix socket, and gRPC without TLS is refused there: %s, or %s = yes if this network is trusted",
		c.Get(param), side, AllowPlaintext)
}

func certPool(param, path string, pemData []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", param, path)
	}
	return pool, nil
}

// LocalListen reports whether a listen address ("host:port" or
// "unix:/path") is reachable from this machine only.
func LocalListen(addr string) bool {
	if strings.HasPrefix(addr, "unix:") {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	return err == nil && loopbackHost(host)
}

// localTarget reports whether every address a gRPC client target names
// is on this machine. Unknown schemes are not.
func localTarget(target string) bool {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	for _, scheme := range []string{"dns:", "passthrough:"} {
		if rest, ok := strings.CutPrefix(target, scheme); ok {
			// dns:host:port, dns:///host:port or dns://resolver/host:port.
			if r, ok := strings.CutPrefix(rest, "//"); ok {
				_, rest, _ = strings.Cut(r, "/")
			}
			return loopbackHost(hostOf(rest))
		}
	}
	return loopbackHost(hostOf(target))
}

// hostOf is the host of "host:port", "[v6]:port", "host" or "v6".
func hostOf(a string) string {
	if h, _, err := net.SplitHostPort(a); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
}

func loopbackHost(h string) bool {
	if strings.EqualFold(strings.TrimSuffix(h, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// reloading is TLS transport credentials built from files, rebuilt when
// their content changes.
type reloading struct {
	files []string
	load  func([][]byte) (*tls.Config, error)
	log   *slog.Logger

	mu      sync.Mutex
	content [][]byte
	creds   credentials.TransportCredentials
	// failed is the content that last failed to load (logged once).
	failed [][]byte
}

func newReloading(files []string, load func([][]byte) (*tls.Config, error)) (*reloading, error) {
	r := &reloading{files: files, load: load, log: slog.New(slog.DiscardHandler)}
	content, err := r.read()
	if err != nil {
		return nil, err
	}
	cfg, err := load(content)
	if err != nil {
		return nil, err
	}
	r.content, r.creds = content, credentials.NewTLS(cfg)
	return r, nil
}

func (r *reloading) read() ([][]byte, error) {
	out := make([][]byte, len(r.files))
	for i, f := range r.files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read TLS file: %w", err)
		}
		out[i] = b
	}
	return out, nil
}

func same(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// current returns the credentials for a new handshake, reloading the
// files when they changed.
func (r *reloading) current() credentials.TransportCredentials {
	r.mu.Lock()
	defer r.mu.Unlock()
	content, err := r.read()
	if err == nil && same(content, r.content) {
		return r.creds
	}
	if err == nil {
		var cfg *tls.Config
		if cfg, err = r.load(content); err == nil {
			r.content, r.creds, r.failed = content, credentials.NewTLS(cfg), nil
			r.log.Info("gRPC TLS files reloaded", "files", r.files)
			return r.creds
		}
	}
	if content == nil || !same(content, r.failed) {
		r.failed = content
		r.log.Error("gRPC TLS files changed but do not load; the previous ones stay in use", "files", r.files, "err", err)
	}
	return r.creds
}

// ClientHandshake and ServerHandshake use the current files. Errors are
// passed on as they are: gRPC reads their type.
func (r *reloading) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return r.current().ClientHandshake(ctx, authority, conn)
}

// A refused client is logged (gRPC itself does not say): a client
// without a certificate, or with one of another CA, is a configuration
// problem to see on the server too. A peer that closes before the
// handshake (a TCP probe) is not.
func (r *reloading) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, info, err := r.current().ServerHandshake(conn)
	if err != nil && !errors.Is(err, io.EOF) {
		r.log.Warn("gRPC TLS handshake refused", "client", conn.RemoteAddr().String(), "err", err)
	}
	return c, info, err
}

func (r *reloading) Info() credentials.ProtocolInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.creds.Info()
}

// Clone returns r: its state is shared and safe for concurrent use.
func (r *reloading) Clone() credentials.TransportCredentials { return r }

// OverrideServerName is not supported (gRPC no longer calls it); use
// smtpgate_grpc_tls_server_name.
func (r *reloading) OverrideServerName(string) error {
	return errors.New("grpctls: set smtpgate_grpc_tls_server_name instead")
}
