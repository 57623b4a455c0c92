package e2e

import (
	"fmt"
	"net/smtp"
	"regexp"
	"strings"
	"testing"
)

// testSubmissionHeaders: a message without Message-ID and Date sent on
// the submission listener (STARTTLS, AUTH PLAIN) arrives at the next hop
// with both, in Postfix cleanup's forms, right after the edge's Received
// header; the same message sent to the MX listener arrives with neither.
func testSubmissionHeaders(t *testing.T, s *stack, hop *nextHop) {
	send := func(listener string, auth smtp.Auth, sender, rcpt, token string) {
		t.Helper()
		c, err := s.dial(Stranger, listener, false)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.example.net"); err != nil {
			t.Fatal(err)
		}
		if auth != nil {
			if err := c.StartTLS(tlsConfig()); err != nil {
				t.Fatal(err)
			}
			if err := c.Auth(auth); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Mail(sender); err != nil {
			t.Fatal(replyOf(err))
		}
		if err := c.Rcpt(rcpt); err != nil {
			t.Fatal(replyOf(err))
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nno Message-ID, no Date\r\n", sender, rcpt, token)
		if err := w.Close(); err != nil {
			t.Fatalf("end of data on %s: %v", listener, replyOf(err))
		}
		_ = c.Quit()
	}

	sub := newToken("submission-headers")
	send("submission", plain(JohnPassword), "john@example.org", "lisa@example.com", sub)
	m := hop.message(t, sub)
	head, _, _ := strings.Cut(m.data, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	i := 0 // the Received header's last line
	for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "\t") {
		i++
	}
	msgID := regexp.MustCompile(`^Message-Id: <\d{14}\.([0-9A-F]+)@mail\.example\.org>$`)
	date := regexp.MustCompile(`^Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), [ 123]\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(.+\)$`)
	if !strings.HasPrefix(lines[0], "Received: ") || i+2 >= len(lines) || !msgID.MatchString(lines[i+1]) || !date.MatchString(lines[i+2]) {
		t.Fatalf("submission: no Message-Id and Date right after the Received header:\n%s", head)
	}
	// The Message-Id carries the queue id the Received header names.
	if id := msgID.FindStringSubmatch(lines[i+1])[1]; !strings.Contains(head, " id "+id) {
		t.Errorf("Message-Id's queue id %s is not the Received header's:\n%s", id, head)
	}

	mx := newToken("mx-headers")
	send("mx", nil, "someone@example.net", "john@example.org", mx)
	m = hop.message(t, mx)
	head, _, _ = strings.Cut(m.data, "\r\n\r\n")
	if strings.Contains(strings.ToLower(head), "\nmessage-id:") || strings.Contains(strings.ToLower(head), "\ndate:") {
		t.Errorf("MX: headers added:\n%s", head)
	}
}
