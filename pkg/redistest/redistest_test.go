package redistest

import "testing"

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
