package telemetry_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/telemetry"
)

func TestServePprof(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- telemetry.ServePprof(ctx, lis) }()
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get("http://" + lis.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s\n%s", path, resp.Status, body)
		}
		return string(body)
	}
	// What `go tool pprof http://ADDR/debug/pprof/heap` reads.
	if body := get("/debug/pprof/heap?debug=1"); !strings.Contains(body, "heap profile:") {
		t.Errorf("heap profile missing:\n%.300s", body)
	}
	if body := get("/debug/pprof/goroutine?debug=1"); !strings.Contains(body, "goroutine profile:") {
		t.Errorf("goroutine profile missing:\n%.300s", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServePprof = %v", err)
	}
}
