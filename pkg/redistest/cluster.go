package redistest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// CLI is the redis-cli that joins a Cluster.
const CLI = "/usr/bin/redis-cli"

// Cluster is a running Redis Cluster of masters without replicas, on
// loopback.
type Cluster struct {
	// Nodes are the masters, in the order their slots were assigned.
	Nodes []*Server
}

// URL is the cluster's redis+cluster:// URL, every master a seed.
func (c *Cluster) URL() string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// StartCluster runs masters redis-servers (at least 3) with
// cluster-enabled yes, joins them with redis-cli --cluster create (the
// 16384 slots split evenly) and waits until every node reports
// cluster_state:ok. The servers are killed when the test ends. Start it
// once per package: it takes a few seconds.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	if _, err := os.Stat(CLI); err != nil {
		t.Fatalf("%s is needed (install redis-server with scripts/deps --test): %v", CLI, err)
	}
	c := &Cluster{}
	for range masters {
		dir := t.TempDir()
		c.Nodes = append(c.Nodes, startServer(t, clusterPort(t), "--cluster-enabled", "yes",
			"--cluster-config-file", dir+"/nodes.conf", "--cluster-node-timeout", "5000",
			"--cluster-require-full-coverage", "yes"))
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command(CLI, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range c.Nodes {
		for {
			info, err := exec.Command(CLI, "-h", "127.0.0.1", "-p", strconv.Itoa(n.Port), "cluster", "info").Output()
			if err == nil && bytes.Contains(info, []byte("cluster_state:ok")) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ok after 30s: %v\n%s", n.Addr, err, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return c
}

// clusterPort finds a free loopback port whose cluster bus port (+10000)
// is free too.
func clusterPort(t testing.TB) int {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if port+10000 > 65535 {
			ln.Close()
			continue
		}
		bus, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000))
		ln.Close()
		if err != nil {
			continue
		}
		bus.Close()
		return port
	}
	t.Fatal("no free port pair for a cluster node")
	return 0
}

// KeysPerNode counts, on each master in Nodes' order, the keys that match
// the glob pattern (redis-cli --scan).
func (c *Cluster) KeysPerNode(t testing.TB, pattern string) []int {
	t.Helper()
	counts := make([]int, len(c.Nodes))
	for i, n := range c.Nodes {
		out, err := exec.Command(CLI, "-h", "127.0.0.1", "-p", strconv.Itoa(n.Port), "--scan", "--pattern", pattern).Output()
		if err != nil {
			t.Fatalf("redis-cli --scan on %s: %v", n.Addr, err)
		}
		counts[i] = bytes.Count(out, []byte("\n"))
	}
	return counts
}
