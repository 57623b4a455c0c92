package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// The scale cluster's fixed facts.
const (
	// clusterTrusted is the one client in mynetworks besides HAProxy's
	// own 127.0.0.1.
	clusterTrusted = "127.0.0.10"
	// clusterListed is in the DNS blocklist bl.test.
	clusterListed = "127.0.0.66"
	// clusterRateLimit is check_rate_limit msgs's count per sender.
	clusterRateLimit = 5
	// clusterMaxAuthFailures is smtpgate_auth_max_failures_per_client.
	clusterMaxAuthFailures = 4
	// clusterDNSBLReply is the refusal of clusterListed.
	clusterDNSBLReply = "554 5.7.1 Service unavailable; Client host [127.0.0.66] blocked using bl.test; listed for testing, see http://bl.test/"
)

// cluster is smtpgate scaled out on loopback: a real HAProxy (TCP mode,
// PROXY v2) in front of two edges, each reaching two policy and two auth
// replicas round robin through a DNS name with two addresses, all sharing
// one real redis-server (rate limits, DNS cache, AUTH throttling), and
// every edge handing off to one recording sink.
//
// Processes: edge1, edge2, policy1 (127.0.0.2), policy2 (127.0.0.3),
// auth1 (127.0.0.2), auth2 (127.0.0.3), each with its own configuration
// directory (the base main.cf plus its listen addresses); policy and auth
// read a master.cf with both edges' listeners. Each edge's banner ends in
// its name, so a client knows which edge HAProxy gave it.
type cluster struct {
	*stack
	sink       *recordingSink
	haproxyLog string
	dirs       map[string]string // process → configuration directory
	metrics    map[string]int    // process → metrics port
}

var clusterProcs = []struct{ name, svc, ip string }{
	{"auth1", "auth", "127.0.0.2"}, {"auth2", "auth", "127.0.0.3"},
	{"policy1", "policy", "127.0.0.2"}, {"policy2", "policy", "127.0.0.3"},
	{"edge1", "edge", "127.0.0.1"}, {"edge2", "edge", "127.0.0.1"},
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, conf: t.TempDir(), port: map[string]int{}, procs: map[string]*exec.Cmd{}, logs: map[string]string{}}
	c := &cluster{stack: s, dirs: map[string]string{}, metrics: map[string]int{}}
	t.Cleanup(s.stopAll)

	redis := redistest.Start(t)
	zone := startZone(t,
		map[string]string{
			"policy.scale.test.":  "127.0.0.2 127.0.0.3",
			"auth.scale.test.":    "127.0.0.2 127.0.0.3",
			"66.0.0.127.bl.test.": "127.0.0.2",
		},
		map[string]string{"66.0.0.127.bl.test.": "listed for testing, see http://bl.test/"})
	c.sink = startSink(t)
	for _, name := range []string{"policy", "auth", "edge1", "edge2", "haproxy"} {
		s.port[name] = freePort(t)
	}
	for _, p := range clusterProcs {
		c.metrics[p.name] = freePort(t)
	}
	certFile, keyFile := writeCert(t, s.conf)
	passwd, err := os.ReadFile(filepath.Join(root, "deploy/local/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	passwdFile := filepath.Join(s.conf, "passwd")
	write(t, passwdFile, string(passwd))
	mainCF, err := os.ReadFile(filepath.Join(root, "deploy/local/main.cf"))
	if err != nil {
		t.Fatal(err)
	}
	base := string(mainCF) + fmt.Sprintf(`
# --- scale test overrides ---
mynetworks = 127.0.0.1/32 %s/32
smtpgate_proxy_networks = 127.0.0.1/32
smtpgate_policy_service = dns://%s/policy.scale.test:%d
smtpgate_auth_service = dns://%s/auth.scale.test:%d
# The names resolve to loopback addresses, which check cannot know.
smtpgate_grpc_allow_plaintext = yes
smtpgate_policy_delegation_listen =
smtpgate_dovecot_auth_listen =
smtpgate_next_hop = smtp://%s
smtpd_tls_cert_file = %s
smtpd_tls_key_file = %s
smtpgate_passwd_file = %s
smtpgate_policy_timeout = 10s
smtpgate_auth_timeout = 10s
smtpgate_dns_servers = %s
smtpgate_dns_redis = %s
smtpgate_rate_limit_redis = %s
smtpgate_auth_redis = %s
smtpd_client_restrictions = permit_mynetworks, reject_rbl_client bl.test
smtpgate_rate_limits = { name = msgs, key = sender, count = %d, window = 1h }
smtpd_end_of_data_restrictions = check_rate_limit msgs
smtpd_sasl_auth_enable = yes
smtpgate_auth_max_failures_per_client = %d
smtpgate_auth_failure_delay = 10ms
smtpgate_auth_max_failure_delay = 10ms
`, clusterTrusted, zone, s.port["policy"], zone, s.port["auth"], c.sink.addr, certFile, keyFile, passwdFile,
		zone, redis.URL(), redis.URL(), redis.URL(), clusterRateLimit, clusterMaxAuthFailures)
	listener := func(edge string) string {
		return fmt.Sprintf("127.0.0.1:%d inet n - n - - smtpd\n  -o smtpd_upstream_proxy_protocol=haproxy\n", s.port[edge])
	}
	for _, p := range clusterProcs {
		dir := filepath.Join(s.conf, p.name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		c.dirs[p.name] = dir
		own := fmt.Sprintf("smtpgate_%s_metrics_listen = 127.0.0.1:%d\n", p.svc, c.metrics[p.name])
		master := listener("edge1") + listener("edge2")
		switch p.svc {
		case "policy", "auth":
			own += fmt.Sprintf("smtpgate_%s_listen = %s:%d\n", p.svc, p.ip, s.port[p.svc])
		case "edge":
			own += "smtpd_banner = $myhostname ESMTP " + p.name + "\n"
			master = listener(p.name)
		}
		write(t, filepath.Join(dir, "main.cf"), base+own)
		write(t, filepath.Join(dir, "master.cf"), master)
	}
	for _, p := range clusterProcs {
		if p.name == "auth1" || p.name == "policy1" || p.name == "edge1" {
			s.checkIn(p.svc, c.dirs[p.name])
		}
	}
	for _, p := range clusterProcs {
		addr := fmt.Sprintf("%s:%d", p.ip, s.port[p.svc])
		if p.svc == "edge" {
			addr = fmt.Sprintf("127.0.0.1:%d", s.port[p.name])
		}
		s.startAs(p.name, p.svc, c.dirs[p.name], []string{addr, fmt.Sprintf("127.0.0.1:%d", c.metrics[p.name])})
	}
	c.haproxyLog = startHAProxy(t, s.conf, s.port["haproxy"], []string{
		fmt.Sprintf("127.0.0.1:%d", s.port["edge1"]), fmt.Sprintf("127.0.0.1:%d", s.port["edge2"])},
		"inter 500ms fall 2 rise 2")
	return c
}

// greetConn keeps the first line the server sends: the edge's banner.
type greetConn struct {
	net.Conn
	mu       sync.Mutex
	greeting bytes.Buffer
}

func (g *greetConn) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	g.mu.Lock()
	if !bytes.Contains(g.greeting.Bytes(), []byte("\n")) {
		g.greeting.Write(p[:n])
	}
	g.mu.Unlock()
	return n, err
}

// edge names the edge from the banner ("220 mail.example.org ESMTP edge1").
func (g *greetConn) edge() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	line, _, _ := strings.Cut(g.greeting.String(), "\n")
	f := strings.Fields(line)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

// dialEdge opens an SMTP session from the source address from through
// HAProxy and returns it with the name of the edge that serves it. With
// want set it dials again (HAProxy balances round robin) until that edge
// answers.
func (c *cluster) dialEdge(from, want string) (*smtp.Client, string, error) {
	var lastErr error
	for range 20 {
		conn, err := dialConn(from, fmt.Sprintf("127.0.0.1:%d", c.port["haproxy"]), 60*time.Second)
		if err != nil {
			return nil, "", err
		}
		g := &greetConn{Conn: conn}
		sc, err := smtp.NewClient(g, "mail.example.org")
		if err != nil {
			conn.Close()
			lastErr = err
			if want == "" {
				return nil, "", err
			}
			continue
		}
		edge := g.edge()
		if want == "" || edge == want {
			return sc, edge, nil
		}
		_ = sc.Quit()
		sc.Close()
	}
	return nil, "", fmt.Errorf("no session on %s through HAProxy in 20 tries (last error: %v)", want, lastErr)
}

// metric sums the values of the samples of name, on the metrics endpoint of
// process, whose labels contain every one of labels (`stage="rcpt"`).
func (c *cluster) metric(process, name string, labels ...string) float64 {
	c.t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", c.metrics[process]))
	if err != nil {
		c.t.Fatalf("metrics of %s: %v", process, err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			c.t.Fatalf("metrics of %s: %q: %v", process, line, err)
		}
		sum += v
	}
	if err := sc.Err(); err != nil {
		c.t.Fatalf("metrics of %s: %v", process, err)
	}
	return sum
}

// haproxySays reports whether HAProxy's log holds text.
func (c *cluster) haproxySays(text string) bool {
	f, err := os.Open(c.haproxyLog)
	if err != nil {
		return false
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	return bytes.Contains(b, []byte(text))
}
