package smtpd

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/listener"
)

// xclientHosts lets the test client (127.0.0.1) use XCLIENT.
func xclientHosts(t testing.TB, items ...string) func(*Listener) {
	return func(l *Listener) {
		n, err := listener.ParseNetworks(items)
		if err != nil {
			t.Fatal(err)
		}
		l.XCLIENTHosts = n
	}
}

func TestXCLIENTAdvertised(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts []string
		want  bool
	}{
		{"authorized", []string{"127.0.0.0/8"}, true},
		{"negated", []string{"!127.0.0.1", "127.0.0.0/8"}, false},
		{"empty list", nil, false},
		{"other network", []string{"192.0.2.0/24"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, permit, xclientHosts(t, tc.hosts...))
			c := h.dial()
			c.reply()
			got := c.do("EHLO proxy.example.net", "250")
			const kw = "250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT|"
			if strings.Contains(got, kw) != tc.want {
				t.Errorf("EHLO = %q; XCLIENT advertised: %v, want %v", got, !tc.want, tc.want)
			}
			if !tc.want {
				c.do("XCLIENT ADDR=192.0.2.1", "550 5.7.0 Error: insufficient authorization")
			}
		})
	}
}

func TestXCLIENTReplies(t *testing.T) {
	h := newHarness(t, permit, xclientHosts(t, "127.0.0.1"))
	c := h.dial()
	c.reply()
	c.do("EHLO proxy.example.net", "250")
	for _, step := range [][2]string{
		{"XCLIENT", "501 5.5.4 Syntax: XCLIENT attribute=value..."},
		{"XCLIENT ADDR", "501 5.5.4 Error: attribute=value expected"},
		{"XCLIENT ADDR=", "501 5.5.4 Error: attribute=value expected"},
		{"XCLIENT NAME=" + strings.Repeat("a", 256), "501 5.5.4 Error: attribute value too long"},
		{"XCLIENT FOO=bar", "501 5.5.4 Bad XCLIENT attribute name: FOO"},
		{"XCLIENT ADDR=1.2.3", "501 5.5.4 Bad ADDR syntax: 1.2.3"},
		{"XCLIENT ADDR=2001:db8::1", "501 5.5.4 Bad ADDR syntax: 2001:db8::1"},
		{"XCLIENT ADDR=[192.0.2.1]", "501 5.5.4 Bad ADDR syntax: [192.0.2.1]"},
		{"XCLIENT PORT=65536x", "501 5.5.4 Bad PORT syntax: 65536x"},
		{"XCLIENT PROTO=LMTP", "501 5.5.4 Bad PROTO syntax: LMTP"},
		{"XCLIENT NAME=-bad-.example", "501 5.5.4 Bad NAME syntax: -bad-.example"},
		{"XCLIENT DESTADDR=x", "501 5.5.4 Bad DESTADDR syntax: x"},
		{"XCLIENT DESTPORT=-1", "501 5.5.4 Bad DESTPORT syntax: -1"},
		// A refused command changes nothing: still the proxy's session.
		{"MAIL FROM:<a@example.net>", "250 2.1.0 Ok"},
		{"XCLIENT ADDR=192.0.2.1", "503 5.5.1 Error: MAIL transaction in progress"},
		{"RSET", "250"},
		{"XCLIENT ADDR=192.0.2.1 NAME=client.example.com", "220 mail.example.org ESMTP smtpgate"},
		// Authorization follows the client XCLIENT named (Postfix 3.7).
		{"XCLIENT HELO=client.example.com PROTO=ESMTP", "550 5.7.0 Error: insufficient authorization"},
	} {
		c.do(step[0], step[1])
	}
	for _, r := range h.requests() {
		if r.GetStage() == policyv1.Stage_STAGE_MAIL && r.GetSession().GetClientAddress() != "127.0.0.1" {
			t.Errorf("the refused XCLIENTs changed the client: %v", r.GetSession())
		}
	}
}

func TestXCLIENTImpersonates(t *testing.T) {
	h := newHarness(t, relayDenied, xclientHosts(t, "127.0.0.1", "[2001:db8::]/32"))
	c := h.dial()
	c.reply()
	c.do("EHLO proxy.example.net", "250")
	// xtext: "+2E" is ".", the login has a "+" in it ("+2B").
	c.do("XCLIENT NAME=client+2Eexample.com ADDR=IPV6:2001:DB8::1 PORT=4711 LOGIN=lisa+2Bx DESTADDR=192.0.2.25 DESTPORT=25", "220 mail.example.org ESMTP smtpgate")
	got := c.do("EHLO client.example.com", "250")
	if strings.Contains(got, "AUTH") {
		t.Errorf("AUTH offered after XCLIENT LOGIN=: %q", got)
	}
	c.do("MAIL FROM:<a@example.net>", "250")
	c.do("RCPT TO:<john@example.org>", "250")
	c.do("DATA", "354")
	c.send("Subject: x\r\n\r\nhi\r\n.\r\n")
	c.reply()
	c.do("XCLIENT NAME=[TEMPUNAVAIL] ADDR=[UNAVAILABLE] PORT=[UNAVAILABLE] HELO=[UNAVAILABLE] LOGIN=[UNAVAILABLE]", "220")
	c.do("MAIL FROM:<b@example.net>", "250")
	c.do("QUIT", "221")

	var got1, got2 []*policyv1.CheckRequest
	for _, r := range h.requests() {
		switch r.GetSession().GetOrigin() {
		case policyv1.Origin_ORIGIN_XCLIENT:
			if r.GetSession().GetClientAddress() == "2001:db8::1" {
				got1 = append(got1, r)
			} else {
				got2 = append(got2, r)
			}
		case policyv1.Origin_ORIGIN_SOCKET:
			if r.GetSession().GetClientAddress() != "127.0.0.1" {
				t.Errorf("socket origin with %v", r.GetSession())
			}
		}
	}
	var stages []string
	for _, r := range got1 {
		stages = append(stages, strings.TrimPrefix(r.GetStage().String(), "STAGE_"))
	}
	// The fresh greeting: the connect-stage check runs again.
	if diff := cmp.Diff("CONNECT HELO MAIL RCPT DATA END_OF_DATA", strings.Join(stages, " ")); diff != "" {
		t.Errorf("stages as the impersonated client (-want +got):\n%s", diff)
	}
	s := got1[3].GetSession()
	want := struct{ Name, Rev, Port, Srv, SrvPort, User, Method, Proto string }{"client.example.com", "client.example.com", "4711", "192.0.2.25", "25", "lisa+x", "XCLIENT", "ESMTP"}
	have := struct{ Name, Rev, Port, Srv, SrvPort, User, Method, Proto string }{s.GetClientName(), s.GetReverseClientName(), itoa(s.GetClientPort()), s.GetServerAddress(), itoa(s.GetServerPort()), s.GetSasl().GetUsername(), s.GetSasl().GetMethod(), s.GetProtocol()}
	if diff := cmp.Diff(want, have); diff != "" {
		t.Errorf("RCPT session facts (-want +got):\n%s", diff)
	}
	if len(got2) != 2 {
		t.Fatalf("after the second XCLIENT: %d requests", len(got2))
	}
	s = got2[1].GetSession()
	if s.GetClientAddress() != "unknown" || s.GetClientName() != "unknown" || s.GetClientPort() != 0 || s.GetHeloName() != "" || s.GetSasl() != nil || s.GetProtocol() != "" {
		t.Errorf("[UNAVAILABLE] values: %v", s)
	}
	// The names carry their status: OK for a NAME=, a temporary failure
	// for [TEMPUNAVAIL] (reject_unknown_client_hostname's 450), the
	// reverse name of the earlier NAME= kept, as Postfix's xclient_cmd.
	if a, b := got1[3].GetSession(), s; a.GetClientNameStatus() != policyv1.NameStatus_NAME_STATUS_OK || a.GetReverseClientNameStatus() != policyv1.NameStatus_NAME_STATUS_OK ||
		b.GetClientNameStatus() != policyv1.NameStatus_NAME_STATUS_TEMPORARY || b.GetReverseClientName() != "client.example.com" {
		t.Errorf("name statuses: after NAME=client.example.com %v/%v, after NAME=[TEMPUNAVAIL] %v (reverse %q %v)",
			a.GetClientNameStatus(), a.GetReverseClientNameStatus(), b.GetClientNameStatus(), b.GetReverseClientName(), b.GetReverseClientNameStatus())
	}
	msgs := h.sink.messages()
	if len(msgs) != 1 || !strings.HasPrefix(msgs[0], "Received: from client.example.com (client.example.com [2001:db8::1])") {
		t.Errorf("message = %q", msgs)
	}
}

func TestXCLIENTRefusedAtConnect(t *testing.T) {
	stranger := func(req *policyv1.CheckRequest) (*policyv1.Verdict, error) {
		if req.GetStage() == policyv1.Stage_STAGE_CONNECT && req.GetSession().GetClientAddress() == "192.0.2.9" {
			return &policyv1.Verdict{Action: policyv1.Action_ACTION_REJECT, Code: 554, EnhancedCode: "5.7.1", Text: "<unknown[192.0.2.9]>: Client host rejected: Access denied"}, nil
		}
		return permit(req)
	}
	h := newHarness(t, stranger, xclientHosts(t, "127.0.0.1"))
	c := h.dial()
	c.reply()
	c.do("XCLIENT ADDR=192.0.2.9", "554 5.7.1 <unknown[192.0.2.9]>: Client host rejected")
	c.do("HELO x", "503 5.7.0 Error: access denied for unknown[192.0.2.9]")
	// 192.0.2.9 may not use XCLIENT.
	c.do("XCLIENT ADDR=192.0.2.10", "503 5.7.0 Error: access denied for unknown[192.0.2.9]")
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
