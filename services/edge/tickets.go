package edge

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"
)

// sessionTickets is how the listeners resume TLS sessions: the lifetime
// of a ticket (smtpd_tls_session_cache_timeout; 0 turns resumption off)
// and the keys that encrypt them (smtpgate_tls_session_ticket_keys_file;
// nil lets crypto/tls make and rotate its own, per process).
type sessionTickets struct {
	timeout time.Duration
	keys    [][32]byte
	// now is the clock; time.Now unless a test sets it.
	now func() time.Time
}

// minSessionTimeout is Postfix's floor for smtpd_tls_session_cache_timeout:
// a positive value below it counts as it.
const minSessionTimeout = 2 * time.Minute

// issuedTag marks the SessionState.Extra entry that holds when a ticket
// was issued (8 bytes, Unix seconds, big-endian after the tag).
var issuedTag = []byte("smtpgate-issued:")

// readTicketKeys reads a ticket keys file: one key a line, 64 hex digits
// (32 bytes); blank lines and lines starting with # are skipped. The key
// bytes never appear in an error.
func readTicketKeys(path string) ([][32]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys [][32]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var k [32]byte
		if len(line) != 64 {
			return nil, fmt.Errorf("%s:%d: a ticket key is 64 hex digits (openssl rand -hex 32), got %d characters", path, n, len(line))
		}
		if _, err := hex.Decode(k[:], []byte(line)); err != nil {
			return nil, fmt.Errorf("%s:%d: a ticket key is 64 hex digits (openssl rand -hex 32): not hexadecimal", path, n)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no ticket key in the file", path)
	}
	return keys, nil
}

// apply sets cfg's session resumption: off, or tickets under the shared
// keys (when there are) that are honoured for t.timeout after they were
// issued.
func (t sessionTickets) apply(cfg *tls.Config) {
	if t.timeout <= 0 {
		cfg.SessionTicketsDisabled = true
		return
	}
	if len(t.keys) > 0 {
		cfg.SetSessionTicketKeys(t.keys)
	}
	timeout := max(t.timeout, minSessionTimeout)
	now := t.now
	if now == nil {
		now = time.Now
	}
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		stamp := binary.BigEndian.AppendUint64(bytes.Clone(issuedTag), uint64(now().Unix()))
		ss.Extra = append(ss.Extra, stamp)
		return cfg.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := cfg.DecryptTicket(identity, cs)
		if ss == nil || err != nil {
			// Not ours, or under a key no longer in the file: a
			// full handshake.
			return nil, nil
		}
		for _, e := range ss.Extra {
			if rest, ok := bytes.CutPrefix(e, issuedTag); ok && len(rest) == 8 {
				issued := time.Unix(int64(binary.BigEndian.Uint64(rest)), 0)
				if now().Sub(issued) <= timeout {
					return ss, nil
				}
			}
		}
		return nil, nil
	}
}
