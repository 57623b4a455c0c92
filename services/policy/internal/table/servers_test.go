package table

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tableServer is a socketmap or tcp_table server written for the tests:
// it answers from a map, and some keys make it misbehave.
type tableServer struct {
	t     *testing.T
	ln    net.Listener
	proto string // "socketmap" or "tcp"
	data  map[string]string
	// conns and queries count what it saw.
	conns, queries atomic.Int64
	// dropIdle closes every connection after one answer.
	dropIdle atomic.Bool
	wg       sync.WaitGroup
	mu       sync.Mutex
	open     []net.Conn
}

func startTableServer(t *testing.T, network, proto string) *tableServer {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "map.sock")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &tableServer{t: t, ln: ln, proto: proto, data: map[string]string{
		"lisa@example.com":     "OK",
		"john@example.com":     "REJECT no thanks",
		"with space@x":         "100% sure\nsecond line",
		"5:hello,":             "netstring in a key",
		"empty@example.com":    "",
		"K'; DROP TABLE x; --": "quoted",
	}}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.stop)
	return s
}

func (s *tableServer) stop() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *tableServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.conns.Add(1)
		s.mu.Lock()
		s.open = append(s.open, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				var key string
				if s.proto == "socketmap" {
					q, err := readNetstring(r, 1<<20)
					if err != nil {
						return
					}
					name, k, _ := strings.Cut(string(q), " ")
					if name != "virtual" {
						io.WriteString(c, netstring("PERM unknown map "+name))
						continue
					}
					key = k
				} else {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					k, ok := hexUnquote(strings.TrimPrefix(strings.TrimSuffix(line, "\n"), "get "))
					if !ok {
						io.WriteString(c, "500 bad%20request\n")
						continue
					}
					key = k
				}
				s.queries.Add(1)
				if !s.answer(c, key) {
					return
				}
				if s.dropIdle.Load() {
					return
				}
			}
		}()
	}
}

func netstring(s string) string { return strconv.Itoa(len(s)) + ":" + s + "," }

// answer replies to key; false closes the connection.
func (s *tableServer) answer(c net.Conn, key string) bool {
	sock := s.proto == "socketmap"
	reply := func(sockmap, tcp string) {
		if sock {
			io.WriteString(c, netstring(sockmap))
		} else {
			io.WriteString(c, tcp+"\n")
		}
	}
	switch key {
	case "temp":
		reply("TEMP database down", "400 database%20down")
	case "perm":
		reply("PERM bad query", "499 weird")
	case "timeout":
		reply("TIMEOUT slow backend", "600 what")
	case "garbage":
		if sock {
			io.WriteString(c, "x:y,")
		} else {
			io.WriteString(c, "hello\n")
		}
	case "huge":
		if sock {
			io.WriteString(c, netstring("OK "+strings.Repeat("x", socketmapMaxReply)))
		} else {
			io.WriteString(c, "200 "+strings.Repeat("x", tcpMaxReply)+"\n")
		}
	case "hang":
		time.Sleep(2 * time.Second)
		return false
	case "close":
		return false
	default:
		v, ok := s.data[key]
		switch {
		case !ok:
			reply("NOTFOUND ", "500 not%20found")
		default:
			reply("OK "+v, "200 "+hexQuote(v))
		}
	}
	return true
}

func serverSpec(s *tableServer, network string) string {
	if s.proto == "tcp" {
		return "tcp:" + s.ln.Addr().String()
	}
	return "socketmap:" + map[string]string{"tcp": "inet", "unix": "unix"}[network] + ":" + s.ln.Addr().String() + ":virtual"
}

// Both protocols, socketmap on both socket kinds: found, not found,
// every failure a temporary one, keys passed as data.
func TestServerTables(t *testing.T) {
	for _, c := range []struct{ network, proto string }{{"tcp", "socketmap"}, {"unix", "socketmap"}, {"tcp", "tcp"}} {
		t.Run(c.proto+"-"+c.network, func(t *testing.T) {
			s := startTableServer(t, c.network, c.proto)
			tb, err := Open(serverSpec(s, c.network), Options{QueryTimeout: 500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer tb.(io.Closer).Close()
			if !tb.Pattern() {
				t.Error("a server table gets partial keys; Postfix gives it the whole key only")
			}
			checkLookups(t, tb, []lookupCase{
				hit("lisa@example.com", "OK"),
				hit("john@example.com", "REJECT no thanks"),
				miss("Lisa@example.com"), // the key is sent as it is: the server decides about case
				miss("nobody@example.com"),
				hit("with space@x", "100% sure\nsecond line"),
				hit("5:hello,", "netstring in a key"),
				hit("empty@example.com", ""),
				hit("K'; DROP TABLE x; --", "quoted"),
			})
			if n := s.conns.Load(); n != 1 {
				t.Errorf("%d connections for sequential lookups; want 1, reused", n)
			}
			ctx := context.Background()
			for _, key := range []string{"temp", "perm", "timeout", "garbage", "huge", "hang", "close"} {
				v, ok, err := tb.Lookup(ctx, key)
				if !errors.Is(err, ErrLookup) || ok {
					t.Errorf("Lookup(%q) = %q, %v, %v; want an ErrLookup", key, v, ok, err)
				}
			}
			// The table recovers from each failure.
			checkLookups(t, tb, []lookupCase{hit("lisa@example.com", "OK")})

			// A NUL, and for socketmap a key over 10000 bytes, are not
			// found without asking.
			before := s.queries.Load()
			checkLookups(t, tb, []lookupCase{miss("lisa@example.com\x00x")})
			if c.proto == "socketmap" {
				checkLookups(t, tb, []lookupCase{miss(strings.Repeat("a", socketmapMaxQuery+1))})
			}
			if s.queries.Load() != before {
				t.Error("a key that must not be asked was sent")
			}

			// The server closes idle connections: the next lookup reconnects
			// (Postfix retries a broken connection once).
			s.dropIdle.Store(true)
			checkLookups(t, tb, []lookupCase{hit("lisa@example.com", "OK"), hit("lisa@example.com", "OK")})
			s.dropIdle.Store(false)

			// Many lookups at once share at most PoolSize connections.
			var wg sync.WaitGroup
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if v, ok, err := tb.Lookup(ctx, "lisa@example.com"); v != "OK" || !ok || err != nil {
						t.Errorf("concurrent lookup: %q, %v, %v", v, ok, err)
					}
				}()
			}
			wg.Wait()

			if err := tb.(Prober).Probe(ctx); err != nil {
				t.Errorf("probe: %v", err)
			}
			// The server goes away: lookups fail, the probe says so.
			s.stop()
			if _, _, err := tb.Lookup(ctx, "lisa@example.com"); !errors.Is(err, ErrLookup) {
				t.Errorf("server down: err = %v; want an ErrLookup", err)
			}
			if err := tb.(Prober).Probe(ctx); err == nil {
				t.Error("probe of a stopped server: no error")
			}
		})
	}
}

// A server that comes back is used again.
func TestServerTableRecovers(t *testing.T) {
	s := startTableServer(t, "tcp", "socketmap")
	addr := s.ln.Addr().String()
	tb, err := Open("socketmap:inet:"+addr+":virtual", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.(io.Closer).Close()
	checkLookups(t, tb, []lookupCase{hit("lisa@example.com", "OK")})
	s.stop()
	if _, _, err := tb.Lookup(context.Background(), "lisa@example.com"); !errors.Is(err, ErrLookup) {
		t.Fatalf("server down: err = %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("cannot listen on %s again: %v", addr, err)
	}
	s2 := &tableServer{t: t, ln: ln, proto: "socketmap", data: map[string]string{"lisa@example.com": "back"}}
	s2.wg.Add(1)
	go s2.serve()
	defer s2.stop()
	checkLookups(t, tb, []lookupCase{hit("lisa@example.com", "back")})
}

func TestServerTableOpenErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"socketmap:inet:127.0.0.1:1":       "want inet:host:port", // "1" is the map name
		"socketmap:inet:127.0.0.1:1:":      "socketmap needs server:mapname",
		"socketmap:127.0.0.1:1:virtual":    "want inet:host:port or unix:/path",
		"socketmap:inet:localhost:virtual": "want inet:host:port",
		"socketmap:virtual":                "socketmap needs server:mapname",
		"tcp:localhost":                    "want tcp:host:port",
	} {
		if _, err := Open(spec, Options{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q): %v; want %q", spec, err, want)
		}
	}
}

func TestHexQuote(t *testing.T) {
	for raw, quoted := range map[string]string{
		"lisa@example.com": "lisa@example.com",
		"a b%c":            "a%20b%25c",
		"tab\there\n":      "tab%09here%0A",
		"é":                "%C3%A9",
		"\x7f":             "%7F",
	} {
		if got := hexQuote(raw); got != quoted {
			t.Errorf("hexQuote(%q) = %q; want %q", raw, got, quoted)
		}
		if got, ok := hexUnquote(quoted); !ok || got != raw {
			t.Errorf("hexUnquote(%q) = %q, %v; want %q", quoted, got, ok, raw)
		}
	}
	for _, bad := range []string{"%", "%4", "%zz", "a%g0"} {
		if _, ok := hexUnquote(bad); ok {
			t.Errorf("hexUnquote(%q) accepted", bad)
		}
	}
	if got, ok := hexUnquote("%4a%4A"); !ok || got != "JJ" {
		t.Errorf("lower-case hex: %q, %v", got, ok)
	}
}
