package edge

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/certtest"
)

// newTicketKey is one key line of a ticket keys file.
func newTicketKey(t *testing.T) string {
	t.Helper()
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(k[:])
}

// replica is one edge's listener TLS configuration under tickets.
func replica(t *testing.T, cert tls.Certificate, tickets sessionTickets) *tls.Config {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	tickets.apply(cfg)
	return cfg
}

// handshake connects a client with cache to a server under cfg over
// loopback TCP, reads one byte the server writes after its handshake (so
// that a TLS 1.3 ticket reaches the cache) and says whether the session
// was resumed.
func handshake(t *testing.T, cfg *tls.Config, cache tls.ClientSessionCache, maxVersion uint16) bool {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		s := tls.Server(c, cfg)
		if err := s.Handshake(); err != nil {
			served <- err
			return
		}
		_, err = s.Write([]byte("x"))
		served <- err
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
		ServerName: "mail.example.org", InsecureSkipVerify: true, //nolint:gosec // the test's own certificate
		ClientSessionCache: cache, MaxVersion: maxVersion,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	return conn.ConnectionState().DidResume
}

// TestSessionTicketsAcrossReplicas: a client resumes on another replica
// that reads the same keys, through a key rotation, and not on one with
// other keys, after the timeout, or with resumption off; in TLS 1.3 and 1.2.
func TestSessionTicketsAcrossReplicas(t *testing.T) {
	cert := certtest.SelfSignedCert(t, "mail.example.org")
	k1, k2, k3 := newTicketKey(t), newTicketKey(t), newTicketKey(t)
	dir := t.TempDir()
	keys := func(lines ...string) [][32]byte {
		t.Helper()
		path := filepath.Join(dir, "tickets")
		if err := os.WriteFile(path, []byte("# shared by every edge\n\n"+strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ks, err := readTicketKeys(path)
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			now := time.Unix(1_800_000_000, 0)
			clock := func() time.Time { return now }
			shared := sessionTickets{timeout: time.Hour, keys: keys(k1), now: clock}
			edge1, edge2 := replica(t, cert, shared), replica(t, cert, shared)
			other := replica(t, cert, sessionTickets{timeout: time.Hour, keys: keys(k3), now: clock})
			own := replica(t, cert, sessionTickets{timeout: time.Hour, now: clock})
			cache := tls.NewLRUClientSessionCache(8)
			if handshake(t, edge1, cache, version) {
				t.Fatal("first connection resumed a session it never had")
			}
			if !handshake(t, edge2, cache, version) {
				t.Fatal("edge2, with edge1's keys, did not resume edge1's session")
			}
			if handshake(t, other, cache, version) {
				t.Fatal("a replica with other keys resumed the session")
			}
			// other's full handshake left its own ticket in the cache.
			if handshake(t, edge1, cache, version) {
				t.Fatal("edge1 resumed a ticket of other keys")
			}
			if handshake(t, own, cache, version) {
				t.Fatal("a replica with its own keys resumed edge1's session")
			}
			// Rotation: a new key in front, the old one kept.
			handshake(t, edge1, cache, version)
			rotated := replica(t, cert, sessionTickets{timeout: time.Hour, keys: keys(k2, k1), now: clock})
			if !handshake(t, rotated, cache, version) {
				t.Fatal("after a new key was put in front, a ticket under the old one was refused")
			}
			// That resumption issued a ticket under k2: the old key can go.
			if !handshake(t, replica(t, cert, sessionTickets{timeout: time.Hour, keys: keys(k2), now: clock}), cache, version) {
				t.Fatal("a ticket under the new key was refused once the old key was dropped")
			}
			// The timeout counts from the ticket's issue.
			handshake(t, edge1, cache, version)
			now = now.Add(time.Hour + time.Second)
			if handshake(t, edge2, cache, version) {
				t.Fatal("a ticket past smtpd_tls_session_cache_timeout was honoured")
			}
			// Resumption off: no ticket issued, none honoured.
			off := replica(t, cert, sessionTickets{timeout: 0, keys: keys(k1), now: clock})
			handshake(t, edge1, cache, version)
			if handshake(t, off, cache, version) {
				t.Fatal("smtpd_tls_session_cache_timeout = 0 resumed a session")
			}
		})
	}
}

// TestSessionTicketsMinimumTimeout: as in Postfix, a positive timeout under
// two minutes counts as two minutes.
func TestSessionTicketsMinimumTimeout(t *testing.T) {
	cert := certtest.SelfSignedCert(t, "mail.example.org")
	now := time.Unix(1_800_000_000, 0)
	cfg := replica(t, cert, sessionTickets{timeout: time.Second, now: func() time.Time { return now }})
	cache := tls.NewLRUClientSessionCache(8)
	handshake(t, cfg, cache, 0)
	now = now.Add(90 * time.Second)
	if !handshake(t, cfg, cache, 0) {
		t.Fatal("a 90 s old ticket was refused under a 1 s timeout (Postfix's floor is 2 minutes)")
	}
	now = now.Add(121 * time.Second)
	if handshake(t, cfg, cache, 0) {
		t.Fatal("a ticket past the 2 minute floor was honoured")
	}
}

// TestReadTicketKeysErrors: a bad keys file is refused with its line, and
// never with the key material in the message.
func TestReadTicketKeysErrors(t *testing.T) {
	dir := t.TempDir()
	good := newTicketKey(t)
	for name, tc := range map[string]struct{ content, want string }{
		"short":   {good[:63] + "\n", ":1: a ticket key is 64 hex digits"},
		"not hex": {"# comment\n" + strings.Repeat("zz", 32) + "\n", ":2: a ticket key is 64 hex digits (openssl rand -hex 32): not hexadecimal"},
		"empty":   {"# nothing yet\n", "no ticket key in the file"},
		"second":  {good + "\n" + good[:10] + "\n", ":2: a ticket key is 64 hex digits"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := readTicketKeys(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), good[:10]) || strings.Contains(err.Error(), "zzzz") {
				t.Fatalf("the error shows key material: %v", err)
			}
		})
	}
	if _, err := readTicketKeys(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing keys file was accepted")
	}
}
