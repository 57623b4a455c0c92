package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// mapServer is a socketmap (netstring) or tcp_table server written for
// the test, answering from a map.
type mapServer struct {
	ln     net.Listener
	proto  string
	data   map[string]string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

func startMapServer(t *testing.T, addr, proto string, data map[string]string) *mapServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &mapServer{ln: ln, proto: proto, data: data}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.stop)
	return s
}

func (s *mapServer) stop() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.ln.Close()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *mapServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				if s.proto == "socketmap" {
					var n int
					if _, err := fmt.Fscanf(r, "%d:", &n); err != nil || n > 100000 {
						return
					}
					buf := make([]byte, n+1)
					if _, err := io.ReadFull(r, buf); err != nil || buf[n] != ',' {
						return
					}
					_, key, _ := strings.Cut(string(buf[:n]), " ")
					reply := "NOTFOUND "
					if v, ok := s.data[key]; ok {
						reply = "OK " + v
					}
					io.WriteString(c, strconv.Itoa(len(reply))+":"+reply+",")
					continue
				}
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				key := strings.TrimSuffix(strings.TrimPrefix(line, "get "), "\n")
				if v, ok := s.data[key]; ok {
					io.WriteString(c, "200 "+strings.ReplaceAll(v, " ", "%20")+"\n")
				} else {
					io.WriteString(c, "500 not%20found\n")
				}
			}
		}()
	}
}

// socketmap: serves the virtual mailboxes and tcp: a sender access
// table through the real stack; the socketmap server stopped mid-run
// defers (451 4.3.0), and the site recovers when it is back.
func TestServerTablesAttack(t *testing.T) {
	mapAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	tcpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	mailboxes := map[string]string{"lisa@example.com": "example.com/lisa/"}
	sm := startMapServer(t, mapAddr, "socketmap", mailboxes)
	startMapServer(t, tcpAddr, "tcp", map[string]string{"spammer@example.net": "REJECT", "example.net": "DUNNO"})
	s := newStack(t, fmt.Sprintf(`
virtual_mailbox_domains = example.com
virtual_mailbox_maps = socketmap:inet:%s:mailbox
smtpd_sender_restrictions = check_sender_access tcp:%s
`, mapAddr, tcpAddr))

	expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@example.com"), "ok")
	expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "nobody@example.com"),
		"550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table")
	expectPrefix(t, s.rcptReply(t, Stranger, "spammer@example.net", "lisa@example.com"), "554 5.7.1 <spammer@example.net>: Sender address rejected: Access denied")
	// Keys are data: netstring and %XX syntax in an address do not
	// change what is asked.
	expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", `"6:OK x,"@example.com`), "550 5.1.1")
	expectPrefix(t, s.rcptReply(t, Stranger, `"spammer@example.net 200"@example.org`, "lisa@example.com"), "ok")

	sm.stop()
	expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@example.com"), "451 4.3.0 <lisa@example.com>: Temporary lookup failure")
	startMapServer(t, mapAddr, "socketmap", mailboxes)
	expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "lisa@example.com"), "ok")
	expectPrefix(t, s.rcptReply(t, Stranger, "someone@example.net", "nobody@example.com"), "550 5.1.1")
}
