package e2e

import (
	"fmt"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// Two edge binaries count one client's connections on a real 3-master
// Redis Cluster named by a redis+cluster:// URL: of 10 connections at
// once, spread over the two edges, exactly 3 get the greeting and the
// others Postfix's 421; after 2 close, exactly 2 more are admitted.
func TestConnectionLimitOnRedisCluster(t *testing.T) {
	const limit = 3
	cl := redistest.StartCluster(t, 3)
	s := newStack(t, fmt.Sprintf(`smtpd_client_connection_count_limit = %d
smtpgate_connection_limit_redis = %s
`, limit, cl.URL()))
	secondMetrics := freePort(t)
	s.secondEdge("127.0.0.2", secondMetrics)
	edges := s.mxOn("127.0.0.1", "127.0.0.2")

	open := admitAtOnce(t, edges, 10, func(int) string { return Stranger }, func(int) string { return tooMany })
	if len(open) != limit {
		t.Fatalf("%d of 10 connections admitted across the two edges, want exactly %d", len(open), limit)
	}
	open[0].quit(t)
	open[1].quit(t)
	open = open[2:]
	for i := range 2 {
		open = append(open, connectUntilAdmitted(t, edges[i%2]))
	}
	for _, addr := range edges {
		if g := connect(t, addr); g.reply != tooMany {
			t.Errorf("%s: over the limit again: %q, want %q", addr, g.reply, tooMany)
			g.conn.Close()
		}
	}
	// The open connections are leases on the cluster.
	if n := cl.KeysPerNode(t, "smtpgate:anvil:*"); n[0]+n[1]+n[2] == 0 {
		t.Errorf("no connection-limit key on the cluster: %v", n)
	}
	for _, g := range open {
		g.quit(t)
	}
	for i, port := range []int{s.port["edge-metrics"], secondMetrics} {
		if v := metric(t, port, "smtpgate_edge_connection_limit_fallbacks_total"); v != "" && v != "0" {
			t.Errorf("edge %d fell back %s times on a healthy cluster", i+1, v)
		}
	}
}
