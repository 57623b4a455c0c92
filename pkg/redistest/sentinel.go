package redistest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// MasterName is the name the Sentinels of StartSentinel know the primary by.
const MasterName = "smtpgate"

// SentinelSet is a primary, its replica and three Sentinels that watch
// them, on loopback.
type SentinelSet struct {
	// Primary and Replica are the servers as started; after a failover
	// the replica is the primary.
	Primary, Replica *Server
	Sentinels        []*Server
}

// URL is the set's redis+sentinel:// URL for database 0.
func (s *SentinelSet) URL() string {
	addrs := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		addrs[i] = n.Addr
	}
	return "redis+sentinel://" + strings.Join(addrs, ",") + "/" + MasterName + "/0"
}

// StartSentinel runs a primary, a replica of it and three Sentinels
// (redis-server --sentinel, quorum 2, the primary down after 1 s without
// an answer) and waits until the replica is in sync and every Sentinel
// knows the replica and the other Sentinels. Everything is killed when
// the test ends. It takes a few seconds: start it once per package.
func StartSentinel(t testing.TB) *SentinelSet {
	t.Helper()
	s := &SentinelSet{Primary: startServer(t, 0)}
	s.Replica = startServer(t, 0, "--replicaof", "127.0.0.1", strconv.Itoa(s.Primary.Port))
	waitFor(t, 20*time.Second, "the replica to sync", func() (bool, string) {
		out := cli(s.Replica.Port, "info", "replication")
		return strings.Contains(out, "master_link_status:up"), out
	})
	for range 3 {
		s.Sentinels = append(s.Sentinels, startSentinel(t, s.Primary.Port))
	}
	for _, n := range s.Sentinels {
		waitFor(t, 30*time.Second, "the sentinels to know each other and the replica", func() (bool, string) {
			out := cli(n.Port, "sentinel", "master", MasterName)
			return field(out, "num-slaves") == "1" && field(out, "num-other-sentinels") == "2", out
		})
	}
	return s
}

// PrimaryAddr asks a Sentinel which server is the primary now.
func (s *SentinelSet) PrimaryAddr(t testing.TB) string {
	t.Helper()
	out := strings.Fields(cli(s.Sentinels[0].Port, "sentinel", "get-master-addr-by-name", MasterName))
	if len(out) != 2 {
		t.Fatalf("sentinel get-master-addr-by-name: %q", out)
	}
	return out[0] + ":" + out[1]
}

// startSentinel runs redis-server --sentinel watching the primary on
// port primary.
func startSentinel(t testing.TB, primary int) *Server {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	port := freePort(t)
	text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile \"\"\n"+
		"sentinel monitor %s 127.0.0.1 %d 2\nsentinel down-after-milliseconds %[3]s 1000\n"+
		"sentinel failover-timeout %[3]s 10000\nsentinel parallel-syncs %[3]s 1\n", port, dir, MasterName, primary)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return startProcess(t, port, conf, "--sentinel")
}

// cli runs redis-cli against a loopback port and returns its output.
func cli(port int, args ...string) string {
	out, err := exec.Command(CLI, append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(port)}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("redis-cli: %v: %s", err, out)
	}
	return string(out)
}

// field finds name's value in redis-cli's one-per-line field, value
// output.
func field(out, name string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		if strings.TrimSpace(lines[i]) == name {
			return strings.TrimSpace(lines[i+1])
		}
	}
	return ""
}

// waitFor polls ok until it holds; after limit the test fails with what
// was seen last.
func waitFor(t testing.TB, limit time.Duration, what string, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		done, seen := ok()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; last seen:\n%s", limit, what, bytes.TrimSpace([]byte(seen)))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
