package redisclient

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/redistest"
)

func TestOpen(t *testing.T) {
	if _, err := Open("http://user:s3cret@example.org", time.Second); !errors.Is(err, ErrURL) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("bad URL: %v", err)
	}
	srv := redistest.Start(t)
	c, err := Open(srv.URL(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	srv.Stop()
	if err := c.Ping(context.Background()).Err(); err == nil {
		t.Fatal("PING succeeded on a stopped server")
	}
}
