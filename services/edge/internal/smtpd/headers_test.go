package smtpd

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestHeaderNames(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		want          []string
	}{
		{"plain", "From: a@b\r\nSubject: x\r\n\r\nDate: not a header\r\n", []string{"from", "subject"}},
		{"folded", "Subject: x\r\n y\r\n\tz\r\nMessage-ID: <1@b>\r\n\r\n", []string{"message-id", "subject"}},
		{"no body", "DATE: Fri, 4 Dec 2026 12:00:00 +0000\r\n", []string{"date"}},
		{"body without an empty line", "Subject: x\r\nthis is text\r\nDate: x\r\n", []string{"subject"}},
		{"no header", "hello\r\nDate: x\r\n", nil},
		{"empty", "", nil},
		{"space before the colon is no field", "Subject : x\r\nDate: y\r\n\r\n", nil},
		{"long line", "X-Long: " + strings.Repeat("a", 10000) + "\r\nDate: y\r\n\r\n", []string{"date", "x-long"}},
	} {
		names := headerNames([]byte(tc.content))
		var got []string
		for _, n := range []string{"date", "from", "message-id", "subject", "x-long"} {
			if names[n] {
				got = append(got, n)
			}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: (-want +got)\n%s", tc.name, diff)
		}
	}
}

// dateLine is Postfix's mail_date form: day of month padded with a space.
var dateLine = regexp.MustCompile(`^(Resent-)?Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), [ 123]\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(.+\)\r\n$`)

func TestMissingHeaders(t *testing.T) {
	at := time.Date(2026, 12, 4, 12, 5, 9, 0, time.UTC)
	got := missingHeaders(map[string]bool{"subject": true}, "0123456789AB", "mail.example.org", at)
	if len(got) != 2 || got[0] != "Message-Id: <20261204120509.0123456789AB@mail.example.org>\r\n" || !dateLine.MatchString(got[1]) {
		t.Fatalf("missingHeaders = %q", got)
	}
	// Day 4 is single-digit in every zone at noon UTC: "Fri,  4 Dec".
	if !strings.Contains(got[1], ",  ") {
		t.Errorf("the day of month is not padded with a space: %q", got[1])
	}
	d, err := time.Parse("Mon, _2 Jan 2006 15:04:05 -0700", strings.TrimSpace(strings.TrimPrefix(got[1][:strings.Index(got[1], " (")], "Date:")))
	if err != nil || !d.Equal(at) {
		t.Errorf("Date %q reads as %v (%v), want %v", got[1], d, err, at)
	}
	if got := missingHeaders(map[string]bool{"date": true, "message-id": true}, "Q", "h", at); len(got) != 0 {
		t.Errorf("both present: added %q", got)
	}
	if got := missingHeaders(map[string]bool{"date": true}, "Q", "h", at); len(got) != 1 || !strings.HasPrefix(got[0], "Message-Id: <") {
		t.Errorf("Date present: added %q", got)
	}
	// A resent message gets the Resent- fields, even with Date and
	// Message-Id present.
	got = missingHeaders(map[string]bool{"date": true, "message-id": true, "resent-from": true}, "Q", "h", at)
	if len(got) != 2 || got[0] != "Resent-Message-Id: <20261204120509.Q@h>\r\n" || !dateLine.MatchString(got[1]) || !strings.HasPrefix(got[1], "Resent-Date: ") {
		t.Errorf("resent: added %q", got)
	}
}

// TestSubmissionAddsHeaders: on a submission listener a message without
// Message-Id and Date gets both right after the Received header; one
// with them gets none; an MX listener never adds them.
func TestSubmissionAddsHeaders(t *testing.T) {
	send := func(h *harness, content string) string {
		t.Helper()
		before := len(h.sink.messages())
		c := h.dial()
		startTx(c)
		c.do("DATA", "354")
		c.send(content + ".\r\n")
		expect(c, "250 2.0.0 Ok: queued as ")
		c.do("QUIT", "221")
		msgs := h.sink.messages()
		if len(msgs) != before+1 {
			t.Fatalf("%d messages", len(msgs))
		}
		return msgs[before]
	}
	sub := newHarness(t, permit, func(l *Listener) { l.Submission = true })
	msg := send(sub, "Subject: bare\r\n\r\nhi\r\n")
	lines := strings.Split(msg, "\r\n")
	i := 1 // the Received header's last line
	for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "\t") {
		i++
	}
	if !strings.HasPrefix(lines[0], "Received: ") || i+3 >= len(lines) ||
		!regexp.MustCompile(`^Message-Id: <\d{14}\.[0-9A-F]{12}@mail\.example\.org>$`).MatchString(lines[i+1]) ||
		!dateLine.MatchString(lines[i+2]+"\r\n") || lines[i+3] != "Subject: bare" {
		t.Errorf("submission: Message-Id and Date not right after the Received header:\n%s", msg)
	}
	msg = send(sub, "Date: Fri, 4 Dec 2026 12:00:00 +0000\r\nMessage-ID: <x@client>\r\nSubject: full\r\n\r\nhi\r\n")
	if strings.Count(msg, "Message-I") != 1 || strings.Count(msg, "Date: ") != 1 {
		t.Errorf("submission: headers added to a message that had them:\n%s", msg)
	}
	mx := newHarness(t, permit, nil)
	if msg := send(mx, "Subject: bare\r\n\r\nhi\r\n"); strings.Contains(msg, "Message-Id:") || strings.Contains(msg, "\r\nDate:") {
		t.Errorf("MX listener added headers:\n%s", msg)
	}
}

// FuzzHeaderNames: any content is read, and the names found are
// lower-case field names (no white space, no colon).
func FuzzHeaderNames(f *testing.F) {
	for _, s := range []string{"Subject: x\r\n\r\nbody\r\n", "Date: x\r\n y\r\nResent-From: a\r\n\r\n", "no header\r\n", "X:" + strings.Repeat("y", 5000) + "\r\nDate: z\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, content string) {
		names := headerNames([]byte(content))
		for n := range names {
			if n == "" || n != strings.ToLower(n) || strings.ContainsAny(n, " \t\r\n:") {
				t.Fatalf("headerNames(%q) found %q", content, n)
			}
		}
	})
}
