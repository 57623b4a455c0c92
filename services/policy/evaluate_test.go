package policy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/maincf"
)

// A refused Check evaluates its restrictions once: an external policy
// server is asked once, not again for the log's trace.
func TestRefusalEvaluatedOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var asked atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\n" {
						asked.Add(1)
						fmt.Fprint(c, "action=REJECT not today\n\n")
					}
				}
			}()
		}
	}()
	f, err := maincf.Parse("main.cf", strings.NewReader(mainCF+
		"smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service inet:"+ln.Addr().String()+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, serverSetup{Main: maincf.New(Catalogue(), f, t.TempDir())})
	resp, err := srv.handler.Check(context.Background(), rcptRequest("", "203.0.113.5", "john@example.org"))
	if err != nil || resp.GetVerdict().GetCode() != 554 {
		t.Fatalf("Check: %v %v", resp.GetVerdict(), err)
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("the policy server was asked %d times for one refused Check", n)
	}
}
