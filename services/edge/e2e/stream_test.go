package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStreamLargeMessage sends a 5 MiB message with net/smtp through the
// real stack, with smtpgate_memory_message_limit = 65536 so that the
// edge streams it to the Maildir while it comes: the Maildir file holds
// the body byte for byte (with LF line ends), tmp/ is empty after the
// 250, and the edge logs the message as streamed.
func TestStreamLargeMessage(t *testing.T) {
	s := newStack(t, "smtpgate_memory_message_limit = 65536\n")
	token := newToken("stream")

	// Lines of random text, some with a leading dot (net/smtp stuffs them).
	r := rand.New(rand.NewPCG(3, 4))
	var body bytes.Buffer
	for body.Len() < 5<<20 {
		line := make([]byte, 1+r.IntN(300))
		for i := range line {
			line[i] = byte(' ' + r.IntN(95))
		}
		body.Write(line)
		body.WriteString("\r\n")
	}
	c, err := s.dial(Stranger, "mx", false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := startData(t, c, "someone@example.net", "john@example.org")
	fmt.Fprintf(w, "Subject: %s\r\n\r\n", token)
	if _, err := w.Write(body.Bytes()); err != nil {
		t.Fatal(err)
	}
	// While the content is read it goes on to the Maildir's tmp/, not
	// into memory; w.Close waits for the 250, given after the hand-off.
	if err := w.Close(); err != nil {
		t.Fatalf("end of data: %v", replyOf(err))
	}
	_ = c.Quit()

	file := s.maildirFile(token)
	_, got, ok := strings.Cut(file, "Subject: "+token+"\n\n")
	want := strings.ReplaceAll(body.String(), "\r\n", "\n")
	if !ok || sha256.Sum256([]byte(got)) != sha256.Sum256([]byte(want)) {
		t.Errorf("Maildir body has %d bytes, sha256 %x; sent %d bytes, sha256 %x", len(got), sha256.Sum256([]byte(got)), len(want), sha256.Sum256([]byte(want)))
	}
	if entries, err := os.ReadDir(filepath.Join(s.maildir, "tmp")); err != nil || len(entries) != 0 {
		t.Errorf("the Maildir's tmp/ holds %d files after the hand-off (%v)", len(entries), err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.log("edge"), "streamed=true") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(s.log("edge"), "streamed=true") {
		t.Errorf("the edge did not log the message as streamed:\n%s", s.log("edge"))
	}
}
