package grpcclient

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"golang.org/x/net/http2"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/smtpgate/smtpgate/pkg/grpcserver"
)

// recordingListener keeps what its connections read and wrote.
type recordingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*recordingConn
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rc := &recordingConn{Conn: c}
	l.mu.Lock()
	l.conns = append(l.conns, rc)
	l.mu.Unlock()
	return rc, nil
}

type recordingConn struct {
	net.Conn
	mu      sync.Mutex
	in, out bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.in.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *recordingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.out.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// frames decodes the HTTP/2 frames of one direction of a connection up
// to its GOAWAY (a server that stops pings after its GOAWAY, to learn when
// the client saw it): the kind of each, and the initial window size its
// SETTINGS announced.
func frames(t *testing.T, b []byte) (kinds map[http2.FrameType]int, window uint32) {
	t.Helper()
	b = bytes.TrimPrefix(b, []byte(http2.ClientPreface))
	fr := http2.NewFramer(nil, bytes.NewReader(b))
	fr.ReadMetaHeaders = nil
	kinds = map[http2.FrameType]int{}
	for {
		f, err := fr.ReadFrame()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return kinds, window
		}
		if err != nil {
			t.Fatalf("frame %d: %v", len(kinds), err)
		}
		if f.Header().Type == http2.FrameGoAway {
			return kinds, window
		}
		kinds[f.Header().Type]++
		if s, ok := f.(*http2.SettingsFrame); ok {
			if v, ok := s.Value(http2.SettingInitialWindowSize); ok {
				window = v
			}
		}
	}
}

// Both sides announce grpcserver.WindowSize and never ping to estimate
// the bandwidth: a burst of calls is HEADERS and DATA frames, with no
// PING in either direction.
func TestStaticWindowsNoPings(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &recordingListener{Listener: ln}
	srv := grpcserver.New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, rl) }()
	conn, err := Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := healthpb.NewHealthClient(conn)
	for range 200 {
		if _, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if len(rl.conns) != 1 {
		t.Fatalf("%d connections, want 1", len(rl.conns))
	}
	rc := rl.conns[0]
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, dir := range []struct {
		name string
		b    []byte
	}{{"client to server", rc.in.Bytes()}, {"server to client", rc.out.Bytes()}} {
		kinds, window := frames(t, dir.b)
		if kinds[http2.FrameHeaders] < 200 {
			t.Errorf("%s: %d HEADERS frames for 200 calls: not the recorded connection?", dir.name, kinds[http2.FrameHeaders])
		}
		if n := kinds[http2.FramePing]; n != 0 {
			t.Errorf("%s: %d PING frames, want none (BDP estimation is on)", dir.name, n)
		}
		if window != grpcserver.WindowSize {
			t.Errorf("%s: SETTINGS_INITIAL_WINDOW_SIZE %d, want %d", dir.name, window, grpcserver.WindowSize)
		}
	}
}
