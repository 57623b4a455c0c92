package redistest

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	if err := ping(s.Addr); err != nil {
		t.Fatalf("PING: %v", err)
	}
	s.Stop()
	if err := ping(s.Addr); err == nil {
		t.Fatal("the server answers after Stop")
	}
	again := StartOn(t, s.Port)
	if err := ping(again.Addr); err != nil || again.Addr != s.Addr {
		t.Fatalf("restart on %d: %v (%s)", s.Port, err, again.Addr)
	}
}

func TestStartCluster(t *testing.T) {
	c := StartCluster(t, 3)
	if len(c.Nodes) != 3 || !strings.HasPrefix(c.URL(), "redis+cluster://127.0.0.1:") || strings.Count(c.URL(), ",") != 2 {
		t.Fatalf("cluster %s", c.URL())
	}
	for _, n := range c.Nodes {
		out, err := exec.Command(CLI, "-p", strconv.Itoa(n.Port), "cluster", "info").Output()
		if err != nil || !strings.Contains(string(out), "cluster_state:ok") || !strings.Contains(string(out), "cluster_known_nodes:3") {
			t.Fatalf("node %s: %v\n%s", n.Addr, err, out)
		}
	}
	// Keys stored through redis-cli -c are found spread over the masters.
	for i := range 60 {
		if out, err := exec.Command(CLI, "-c", "-p", strconv.Itoa(c.Nodes[0].Port), "set", "k"+strconv.Itoa(i), "v").CombinedOutput(); err != nil {
			t.Fatalf("SET: %v: %s", err, out)
		}
	}
	total := 0
	for i, n := range c.KeysPerNode(t, "k*") {
		if n == 0 {
			t.Errorf("master %d holds no key", i)
		}
		total += n
	}
	if total != 60 {
		t.Errorf("%d keys found, want 60", total)
	}
}
