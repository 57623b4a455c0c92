package handoff

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/logtest"
	"github.com/smtpgate/smtpgate/services/edge/internal/handoff/handofftest"
)

// TestRelayFoldsLongLines: a line of a megabyte reaches an SMTP or LMTP
// next hop broken into lines of at most smtp_line_length_limit (or
// lmtp_line_length_limit) bytes with <CR><LF><SPACE>, as Postfix sends
// it, and a next hop that refuses lines over 2000 bytes takes it. With
// the limit off, the line goes whole and that next hop refuses it.
func TestRelayFoldsLongLines(t *testing.T) {
	line := strings.Repeat("0123456789", 1<<17) // 1,310,720 bytes
	msg := "Subject: long\r\n\r\n" + line + "\r\n.leading dot\r\n"
	for _, tc := range []struct {
		name  string
		lmtp  bool
		opts  Options
		limit int
	}{
		{"smtp", false, Options{LineLengthLimit: 998, LMTPLineLengthLimit: 500}, 998},
		{"lmtp", true, Options{LineLengthLimit: 500, LMTPLineLengthLimit: 998}, 998},
		{"off", false, Options{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Like go-smtp's server by default, the next hop refuses
			// lines over 2000 bytes.
			hop := handofftest.StartWith(t, "127.0.0.1:0", handofftest.Options{LMTP: tc.lmtp, Keep: true})
			var logs logtest.Buffer
			tc.opts.Hostname, tc.opts.Timeout = "edge.example", 10*time.Second
			tc.opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			r := &Relay{Network: "tcp", Addr: hop.Addr(), LMTP: tc.lmtp, Opts: tc.opts}
			ctx := context.Background()
			tx, err := r.Begin(ctx, Envelope{Sender: "a@example.net", QueueID: "4F00D1E5C0DE"})
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Rcpt(ctx, "b@example.org", RecipientDSN{}); err != nil {
				t.Fatal(err)
			}
			err = tx.Data(ctx, strings.NewReader(msg))
			// Logged once, in Postfix's smtp(8) words.
			want := fmt.Sprintf("4F00D1E5C0DE: breaking line > %d bytes with <CR><LF>SPACE", tc.limit)
			if n := strings.Count(logs.String(), "breaking line"); tc.limit > 0 && (n != 1 || !strings.Contains(logs.String(), want)) {
				t.Errorf("log %q, want %q once", logs.String(), want)
			}
			if tc.limit == 0 {
				if err == nil {
					t.Fatal("a 1.3 MB line went whole and the next hop took it; want its refusal")
				}
				return
			}
			if err != nil {
				t.Fatalf("Data: %v", err)
			}
			data := hop.Contents()
			if len(data) != 1 {
				t.Fatalf("next hop got %d messages", len(data))
			}
			got := strings.ReplaceAll(data[0], "\r\n", "\n")
			lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
			for i, l := range lines {
				if len(l) > tc.limit {
					t.Fatalf("line %d has %d bytes, over %d", i, len(l), tc.limit)
				}
				if i > 2 && i < len(lines)-1 && !strings.HasPrefix(l, " ") {
					t.Fatalf("continuation line %d does not start with a space: %.20q", i, l)
				}
			}
			// Undoing the folds gives the message back.
			if unfolded := strings.ReplaceAll(got, "\n ", ""); unfolded != strings.ReplaceAll(msg, "\r\n", "\n") {
				t.Errorf("unfolded content differs from what was sent")
			}
			if last := lines[len(lines)-1]; last != ".leading dot" {
				t.Errorf("last line %q, want the dot-led line whole", last)
			}
		})
	}
}
