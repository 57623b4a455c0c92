package restriction

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smtpgate/smtpgate/pkg/maincf"
)

// check_policy_service: delegation to an external policy server over
// Postfix's SMTP access policy delegation protocol (SMTPD_POLICY_README),
// inet:host:port or unix:/path, with Postfix's per-service settings
// ({ inet:host:port, timeout=10s, default_action=DUNNO, ... }) and
// smtpd_policy_service_* defaults. The server's action is evaluated like
// an access table value. Connections are reused; a server that fails
// (connect, timeout, malformed reply) gets its default_action.

// policyService is one configured server, shared by every evaluation.
type policyService struct {
	spec          string // as configured, for the trace and logs
	network, addr string
	timeout       time.Duration
	maxIdle       time.Duration
	maxTTL        time.Duration
	tryLimit      int
	retryDelay    time.Duration
	defaultAction string
	context       string
	env           *accessEnv

	mu   sync.Mutex
	idle []*policyConn
}

type policyConn struct {
	c       net.Conn
	r       *bufio.Reader
	born    time.Time
	lastUse time.Time
}

func (p *policyService) Name() string { return "check_policy_service " + p.spec }

// parsePolicyService reads "inet:host:port", "unix:/path" or "{ inet:...,
// name=value, ... }" with the smtpd_policy_service_* defaults from get.
func parsePolicyService(spec string, get func(string) string) (*policyService, error) {
	parseDur := maincf.ParseDuration
	dur := func(name string) (time.Duration, error) {
		d, err := parseDur(get(name))
		if err != nil {
			return 0, fmt.Errorf("%s = %w", name, err)
		}
		return d, nil
	}
	p := &policyService{spec: spec, defaultAction: get("smtpd_policy_service_default_action"), context: get("smtpd_policy_service_policy_context")}
	var err error
	if p.timeout, err = dur("smtpd_policy_service_timeout"); err != nil {
		return nil, err
	}
	if p.maxIdle, err = dur("smtpd_policy_service_max_idle"); err != nil {
		return nil, err
	}
	if p.maxTTL, err = dur("smtpd_policy_service_max_ttl"); err != nil {
		return nil, err
	}
	if p.retryDelay, err = dur("smtpd_policy_service_retry_delay"); err != nil {
		return nil, err
	}
	if p.tryLimit, err = strconv.Atoi(get("smtpd_policy_service_try_limit")); err != nil || p.tryLimit < 1 {
		return nil, fmt.Errorf("smtpd_policy_service_try_limit: want a whole number of at least 1")
	}
	endpoint := spec
	if strings.HasPrefix(spec, "{") {
		inner := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(spec, "{"), "}"))
		parts := strings.Split(inner, ",")
		endpoint = strings.TrimSpace(parts[0])
		for _, kv := range parts[1:] {
			name, value, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok {
				return nil, fmt.Errorf("check_policy_service %s: %q is not name=value", spec, kv)
			}
			name, value = strings.TrimSpace(name), strings.TrimSpace(value)
			switch name {
			case "timeout":
				p.timeout, err = parseDur(value)
			case "max_idle":
				p.maxIdle, err = parseDur(value)
			case "max_ttl":
				p.maxTTL, err = parseDur(value)
			case "retry_delay":
				p.retryDelay, err = parseDur(value)
			case "try_limit":
				p.tryLimit, err = strconv.Atoi(value)
			case "default_action":
				p.defaultAction = value
			case "policy_context":
				p.context = value
			default:
				return nil, fmt.Errorf("check_policy_service %s: unknown setting %q", spec, name)
			}
			if err != nil {
				return nil, fmt.Errorf("check_policy_service %s: %s: %w", spec, name, err)
			}
		}
	}
	switch {
	case strings.HasPrefix(endpoint, "inet:"):
		p.network, p.addr = "tcp", strings.TrimPrefix(endpoint, "inet:")
		if _, _, err := net.SplitHostPort(p.addr); err != nil {
			return nil, fmt.Errorf("check_policy_service %s: want inet:host:port", spec)
		}
	case strings.HasPrefix(endpoint, "unix:"):
		p.network, p.addr = "unix", strings.TrimPrefix(endpoint, "unix:")
		if !strings.HasPrefix(p.addr, "/") {
			return nil, fmt.Errorf("check_policy_service %s: want unix:/absolute/path (smtpgate has no Postfix queue directory)", spec)
		}
	default:
		return nil, fmt.Errorf("check_policy_service %s: want inet:host:port or unix:/path", spec)
	}
	return p, nil
}

func (p *policyService) Eval(ctx context.Context, in *Input) (Outcome, error) {
	req := policyRequest(in.Facts, p.context)
	var action string
	var err error
	for try := 0; try < p.tryLimit; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-time.After(p.retryDelay):
			}
			if ctx.Err() != nil {
				break
			}
		}
		if action, err = p.ask(ctx, req); err == nil {
			break
		}
	}
	if err != nil {
		in.st.warnings = append(in.st.warnings, fmt.Sprintf("check_policy_service %s: %v; default_action %s", p.spec, err, p.defaultAction))
		action = p.defaultAction
	}
	in.lookup(Lookup{Table: "policy " + p.spec, Key: in.Facts.Stage.String(), Found: err == nil, Value: action})
	return p.env.result(ctx, in, p.spec, action, in.Name(), in.Class)
}

// ask sends one request and reads the action, on a reused or new
// connection.
func (p *policyService) ask(ctx context.Context, req string) (string, error) {
	c, err := p.conn(ctx)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(p.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.c.SetDeadline(deadline)
	if _, err := c.c.Write([]byte(req)); err != nil {
		c.c.Close()
		return "", fmt.Errorf("send: %w", err)
	}
	action, err := readPolicyReply(c.r)
	if err != nil {
		c.c.Close()
		return "", err
	}
	c.lastUse = time.Now()
	p.put(c)
	return action, nil
}

func (p *policyService) conn(ctx context.Context) (*policyConn, error) {
	now := time.Now()
	p.mu.Lock()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(c.lastUse) < p.maxIdle && now.Sub(c.born) < p.maxTTL {
			p.mu.Unlock()
			return c, nil
		}
		c.c.Close()
	}
	p.mu.Unlock()
	d := net.Dialer{Timeout: p.timeout}
	nc, err := d.DialContext(ctx, p.network, p.addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return &policyConn{c: nc, r: bufio.NewReader(nc), born: now, lastUse: now}, nil
}

// put keeps a connection for reuse (a few at most).
func (p *policyService) put(c *policyConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= 8 {
		c.c.Close()
		return
	}
	p.idle = append(p.idle, c)
}

// readPolicyReply reads "name=value" lines up to the empty line and
// returns the action; other attributes are skipped, as Postfix does.
func readPolicyReply(r *bufio.Reader) (string, error) {
	action, found := "", false
	for n := 0; ; n++ {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("read reply: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if !found {
				return "", errors.New("reply without action=")
			}
			return action, nil
		}
		if n > 100 || len(line) > 4096 {
			return "", errors.New("reply too long")
		}
		if v, ok := strings.CutPrefix(line, "action="); ok {
			action, found = v, true
		}
	}
}

// policyRequest writes Postfix's attribute set for the stage
// (check_policy_service() in smtpd_check.c).
func policyRequest(f *Facts, policyContext string) string {
	state := map[Stage]string{Connect: "CONNECT", HELO: "EHLO", Mail: "MAIL", Rcpt: "RCPT", Data: "DATA",
		EndOfData: "END-OF-MESSAGE", ETRN: "ETRN", VRFY: "VRFY"}[f.Stage]
	count := 0
	if f.Stage == Data || f.Stage == EndOfData {
		count = f.RecipientCount
	}
	reverse := f.ReverseClientName
	if reverse == "" {
		reverse = "unknown"
	}
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '\n' || r == '\r' || r == 0 {
				return ' '
			}
			return r
		}, s)
	}
	attrs := [][2]string{
		{"request", "smtpd_access_policy"},
		{"protocol_state", state},
		{"protocol_name", "ESMTP"},
		{"client_address", f.clientAddr()},
		{"client_name", f.clientName()},
		{"reverse_client_name", reverse},
		{"helo_name", f.HELO},
		{"sender", f.Sender},
		{"recipient", f.Recipient},
		{"recipient_count", strconv.Itoa(count)},
		{"queue_id", ""},
		{"instance", f.SessionID},
		{"size", "0"},
		{"etrn_domain", f.ETRNDomain},
		{"stress", stressAttr(f.Stress)},
		{"sasl_method", f.SASLMethod},
		{"sasl_username", f.SASLUsername},
		{"sasl_sender", ""},
		{"ccert_subject", ""},
		{"ccert_issuer", ""},
		{"ccert_fingerprint", ""},
		{"ccert_pubkey_fingerprint", ""},
		{"encryption_protocol", ""},
		{"encryption_cipher", ""},
		{"encryption_keysize", "0"},
		{"policy_context", policyContext},
	}
	var b strings.Builder
	for _, a := range attrs {
		b.WriteString(a[0] + "=" + clean(a[1]) + "\n")
	}
	b.WriteString("\n")
	return b.String()
}

// stressAttr is the "stress" attribute: "yes" when the edge was under
// stress, empty otherwise, as Postfix's smtpd sends $stress.
func stressAttr(on bool) string {
	if on {
		return "yes"
	}
	return ""
}
