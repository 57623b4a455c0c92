package policy

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/redis/go-redis/v9"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

// blStub is a DNS server on 127.0.0.1 that lists 127.0.0.2 in bl.test
// and knows nothing else; it counts its queries.
type blStub struct {
	addr    string
	queries atomic.Int64
}

func (s *blStub) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	switch {
	case strings.EqualFold(q.Name, "2.0.0.127.bl.test.") && q.Qtype == dns.TypeA:
		rr, _ := dns.NewRR("2.0.0.127.bl.test. 300 IN A 127.0.0.2")
		m.Answer = []dns.RR{rr}
	case strings.EqualFold(q.Name, "2.0.0.127.bl.test.") && q.Qtype == dns.TypeTXT:
		rr, _ := dns.NewRR(`2.0.0.127.bl.test. 300 IN TXT "test entry"`)
		m.Answer = []dns.RR{rr}
	default:
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

func startBLStub(t *testing.T) *blStub {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &blStub{addr: pc.LocalAddr().String()}
	srv := &dns.Server{PacketConn: pc, Handler: s}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return s
}

// startRedis runs a throwaway /usr/bin/redis-server on a free port,
// killed by its process id at the end of the test; it returns the port.
func startRedis(t *testing.T) int {
	t.Helper()
	const bin = "/usr/bin/redis-server"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is needed (install it with scripts/deps --test): %v", bin, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c.Ping(context.Background()).Err() == nil {
			return port
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on port %d does not answer", port)
		}
	}
}

func dnsServer(t *testing.T, extra string) *Server {
	t.Helper()
	f, err := maincf.Parse("main.cf", strings.NewReader(mainCF+extra))
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, serverSetup{Main: maincf.New(Catalogue(), f, t.TempDir())})
	return srv
}

func checkRBL(t *testing.T, srv *Server) {
	t.Helper()
	resp, err := srv.handler.Check(context.Background(), rcptRequest("", "127.0.0.2", "john@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	v := resp.GetVerdict()
	want := "Service unavailable; Client host [127.0.0.2] blocked using bl.test; test entry"
	if v.GetAction() != policyv1.Action_ACTION_REJECT || v.GetCode() != 554 || v.GetEnhancedCode() != "5.7.1" || v.GetText() != want {
		t.Fatalf("verdict %v, want 554 5.7.1 %s", v, want)
	}
}

// Two policy replicas share DNS answers through Redis: what the first
// asked, the second reads from Redis without asking DNS.
func TestDNSBLSharedThroughRedis(t *testing.T) {
	stub := startBLStub(t)
	port := startRedis(t)
	extra := "smtpgate_dns_servers = " + stub.addr + "\nsmtpgate_dns_redis = redis://127.0.0.1:" + strconv.Itoa(port) + "/0\n" +
		"smtpd_client_restrictions = reject_rbl_client bl.test\n"
	one, two := dnsServer(t, extra), dnsServer(t, extra)

	checkRBL(t, one)
	asked := stub.queries.Load()
	if asked == 0 {
		t.Fatal("the first replica asked no DNS")
	}
	// Wait for the first replica's answers to be in Redis.
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
	defer c.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if keys, _ := c.Keys(context.Background(), "smtpgate:dns:*").Result(); len(keys) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no answers written to Redis")
		}
	}
	checkRBL(t, two)
	st := two.DNSStats()
	if st.RedisHits < 2 || st.Misses != 0 || stub.queries.Load() != asked {
		t.Errorf("second replica: %+v, DNS queries %d -> %d; want Redis hits for A and TXT and no query", st, asked, stub.queries.Load())
	}
}

// Redis down: the lookups go to DNS and the check still works.
func TestDNSBLWithRedisDown(t *testing.T) {
	stub := startBLStub(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	srv := dnsServer(t, "smtpgate_dns_servers = "+stub.addr+"\nsmtpgate_dns_redis = redis://127.0.0.1:"+strconv.Itoa(port)+"/0\n"+
		"smtpd_client_restrictions = reject_rbl_client bl.test\n")
	checkRBL(t, srv)
	if st := srv.DNSStats(); st.RedisFallbacks == 0 {
		t.Errorf("stats %+v: want Redis fallbacks", st)
	}
}

func TestBadDNSRedisURLIsNotShown(t *testing.T) {
	f, err := maincf.Parse("main.cf", strings.NewReader(mainCF+"smtpgate_dns_redis = http://user:s3cret@example.net\nsmtpd_client_restrictions = reject_rbl_client bl.test\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = validate(maincf.New(Catalogue(), f, t.TempDir()), nil)
	if err == nil || !strings.Contains(err.Error(), "smtpgate_dns_redis") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Validate: %v; want an error about smtpgate_dns_redis without the password", err)
	}
}
