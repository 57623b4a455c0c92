package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The memory attacks of issue 16, played against the real edge with a
// memory budget, while its resident memory is read from /proc: many
// sessions that each hold a thousand recipients with large ORCPT
// parameters, or a thousand long recipient addresses, or an unfinished
// megabyte of DATA, or a line of several megabytes. The edge must stay
// under smtpgate_memory_budget all along (VmHWM, the peak), answer the
// attacker as Postfix would (452 4.5.3 past smtpd_recipient_limit,
// 452 4.3.1 when the budget is spent, content streamed to the next hop,
// here the Maildir's tmp/), and deliver a legitimate client's message afterwards.

// memoryBudget is the budget the attacks run against: about three times
// the edge's resident size at rest.
const memoryBudget = 64 << 20

// attackSessions is how many sessions attack at once.
const attackSessions = 100

func TestMemoryBudgetAttacks(t *testing.T) {
	// A MiB of content may be held in memory per message, as long as
	// the budget has room.
	s := newStack(t, fmt.Sprintf("smtpgate_memory_budget = %d\nsmtpgate_memory_message_limit = 1048576\nmessage_size_limit = 4000000\n", memoryBudget))
	spool := filepath.Join(s.maildir, "tmp")
	pid := s.procs["edge"].Process.Pid
	before := procMemory(t, pid)
	t.Logf("edge at rest: VmRSS %d KiB, VmHWM %d KiB", before["VmRSS"]>>10, before["VmHWM"]>>10)

	t.Run("RecipientsWithORCPT", func(t *testing.T) {
		// RCPT TO:<john@example.org> ORCPT=rfc822;<1.9 KB>: the
		// command line is far larger than what the session needs to
		// keep of it.
		orcpt := "rfc822;" + strings.Repeat("x", 1900) + "@example.org"
		replies := attack(t, s, attackSessions, func(i int) []string {
			lines := make([]string, 0, 1001)
			for range 1001 {
				lines = append(lines, "RCPT TO:<john@example.org> ORCPT="+orcpt)
			}
			return lines
		}, nil, nil)
		for i, r := range replies {
			// smtpd_recipient_limit = 1000: the 1001st is refused as
			// Postfix refuses it.
			if got := r[len(r)-1]; got != "452 4.5.3 Error: too many recipients" {
				t.Errorf("session %d: 1001st RCPT answered %q, want 452 4.5.3 Error: too many recipients", i, got)
				break
			}
			if ok := count(r, "250 "); ok != 1000 {
				t.Errorf("session %d: %d recipients accepted, want 1000", i, ok)
				break
			}
		}
		s.assertUnderBudget(t, pid)
	})

	t.Run("LongRecipientAddresses", func(t *testing.T) {
		// Addresses of 1,000 bytes (the most a mailbox may have) to
		// another domain, relayed for a client in mynetworks: 100 ×
		// 1,000 of them would be 100 MB.
		replies := attack(t, s, attackSessions, func(i int) []string {
			lines := make([]string, 0, 1000)
			for j := range 1000 {
				local := fmt.Sprintf("s%dr%d-", i, j) + strings.Repeat("y", 988)
				lines = append(lines, "RCPT TO:<"+local[:988]+"@example.net>")
			}
			return lines
		}, nil, nil)
		storage := 0
		for _, r := range replies {
			storage += count(r, "452 4.3.1 Insufficient system storage")
		}
		if storage == 0 {
			t.Errorf("no RCPT was answered 452 4.3.1 Insufficient system storage; first session's replies: %q ... %q", replies[0][:3], last(replies[0]))
		}
		s.assertUnderBudget(t, pid)
	})

	t.Run("UnfinishedData", func(t *testing.T) {
		// A megabyte of content each (under smtpgate_memory_message_limit,
		// so that each would be kept in memory), the final dot never
		// sent. While they wait, all but the few the budget has room
		// for stream to the Maildir's tmp/, and a legitimate client's
		// message goes through.
		body := strings.Repeat(strings.Repeat("z", 76)+"\r\n", 1000000/78)
		attack(t, s, attackSessions, func(int) []string {
			return []string{"RCPT TO:<john@example.org>"}
		}, viaDATA(func(w *bufio.Writer) bool {
			fmt.Fprintf(w, "Subject: unfinished\r\n\r\n%s", body)
			return false
		}), func() {
			// The budget's eighth (8 MiB) holds 8 of them at most; the
			// edge may still be reading the others' content.
			n := awaitFiles(spool, attackSessions-8)
			if n < attackSessions-8 {
				t.Errorf("%d of %d unfinished messages streamed to %s, want all but 8 at most", n, attackSessions, spool)
			}
			t.Logf("%d of %d unfinished messages streamed to the next hop", n, attackSessions)
			token := newToken("memory-during")
			if err := s.send(message{from: Trusted, listener: "mx", sender: "alice@example.net", rcpts: []string{"john@example.org"}, token: token}); err != nil {
				t.Errorf("legitimate message during the attack: %s", replyOf(err))
			} else if n := s.maildirCounts(false)[token]; n != 1 {
				t.Errorf("legitimate message delivered %d times, want once", n)
			}
		})
		s.assertUnderBudget(t, pid)
	})

	t.Run("UnfinishedBDAT", func(t *testing.T) {
		// A BDAT chunk of a megabyte each (CHUNKING, RFC 3030), all but
		// its last kilobyte sent: the same budget holds for it.
		chunk := strings.Repeat(strings.Repeat("b", 76)+"\r\n", 1000000/78)
		// The DATA attackers' files in tmp/ go when their sessions end.
		for deadline := time.Now().Add(10 * time.Second); spoolFiles(spool) > 0 && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		if n := spoolFiles(spool); n > 0 {
			t.Fatalf("%d files left in tmp/ 10 s after the sessions that wrote them ended", n)
		}
		attack(t, s, attackSessions, func(int) []string {
			return []string{"RCPT TO:<john@example.org>"}
		}, func(w *bufio.Writer, _ *rawSMTP) (bool, error) {
			fmt.Fprintf(w, "BDAT %d LAST\r\n%s", len(chunk), chunk[:len(chunk)-1000])
			return false, nil
		}, func() {
			if n := awaitFiles(spool, attackSessions-8); n < attackSessions-8 {
				t.Errorf("%d of %d unfinished chunks streamed to %s, want all but 8 at most", n, attackSessions, spool)
			}
		})
		s.assertUnderBudget(t, pid)
	})

	t.Run("HugeLines", func(t *testing.T) {
		// One line of 5 MB each, then the final dot: past
		// message_size_limit (4 MB here), it is refused as Postfix
		// refuses it, and never held whole.
		line := strings.Repeat("L", 5<<20)
		replies := attack(t, s, attackSessions/2, func(int) []string {
			return []string{"RCPT TO:<john@example.org>"}
		}, viaDATA(func(w *bufio.Writer) bool {
			fmt.Fprintf(w, "Subject: huge\r\n\r\n%s\r\n.\r\n", line)
			return true
		}), nil)
		for i, r := range replies {
			if want := []string{"250 2.1.5 Ok", "552 5.3.4 Message size exceeds fixed limit"}; strings.Join(r, "|") != strings.Join(want, "|") {
				t.Fatalf("session %d: RCPT and end of data answered %q, want %q", i, r, want)
			}
		}
		s.assertUnderBudget(t, pid)
	})

	t.Run("LongLineDelivered", func(t *testing.T) {
		// A message with a line of 1 MB under the size limit is taken
		// and written whole to the Maildir, as Postfix's local(8) and
		// virtual(8) write it.
		c, err := s.dial(Trusted, "mx", false)
		if err != nil {
			t.Fatal(err)
		}
		token := newToken("longline")
		line := strings.Repeat("0123456789", 1<<17)
		w := startData(t, c, "alice@example.net", "john@example.org")
		fmt.Fprintf(w, "Subject: %s\r\n\r\n%s\r\n", token, line)
		if err := w.Close(); err != nil {
			t.Fatalf("message with a 1.3 MB line: %s", replyOf(err))
		}
		_ = c.Quit()
		if got := s.maildirFile(token); !strings.Contains(got, "\n"+line+"\n") {
			t.Errorf("the Maildir file does not hold the line whole (%d bytes)", len(got))
		}
		s.assertUnderBudget(t, pid)
	})

	// The edge is still there for everyone else, and nothing the
	// attackers left unfinished stayed in tmp/.
	token := newToken("memory")
	if err := s.send(message{from: Trusted, listener: "mx", sender: "alice@example.net", rcpts: []string{"john@example.org"}, token: token}); err != nil {
		t.Fatalf("legitimate message after the attacks: %s", replyOf(err))
	}
	if n := s.maildirTokens()[token]; n != 1 {
		t.Errorf("legitimate message delivered %d times, want once", n)
	}
	if entries, _ := os.ReadDir(spool); len(entries) != 0 {
		t.Errorf("the Maildir's tmp/ holds %d files after the attackers left", len(entries))
	}
	s.assertUnderBudget(t, pid)
}

// assertUnderBudget fails the test when the edge's resident memory ever
// passed the budget.
func (s *stack) assertUnderBudget(t *testing.T, pid int) {
	t.Helper()
	m := procMemory(t, pid)
	t.Logf("edge: VmRSS %d KiB, VmHWM %d KiB (budget %d KiB)", m["VmRSS"]>>10, m["VmHWM"]>>10, memoryBudget>>10)
	if m["VmHWM"] >= memoryBudget {
		t.Errorf("the edge's resident memory reached %d KiB, over smtpgate_memory_budget = %d KiB", m["VmHWM"]>>10, memoryBudget>>10)
	}
}

// procMemory reads the Vm* lines of /proc/PID/status, in bytes.
func procMemory(t *testing.T, pid int) map[string]int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the edge's memory: %v", err)
	}
	m := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "Vm") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 2 && f[1] == "kB" {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			m[name] = n << 10
		}
	}
	if m["VmHWM"] == 0 {
		t.Fatalf("no VmHWM in /proc/%d/status", pid)
	}
	return m
}

// attack opens n sessions from Trusted on the MX listener; each sends
// EHLO and MAIL, then the lines rcpts(i) gives, pipelined, and reads
// their replies (a MAIL refused with 452 4.3.1 is the session's only
// reply); with content, it then sends DATA and content, and when
// content says it finished the message, adds the reply to the final dot
// to the session's replies. When every session has done so (all of them hold what they
// sent at the same time), during runs, then they all close. It returns each session's
// replies to its lines.
func attack(t *testing.T, s *stack, n int, rcpts func(i int) []string, content func(w *bufio.Writer, raw *rawSMTP) (finished bool, err error), during func()) [][]string {
	t.Helper()
	replies := make([][]string, n)
	errs := make([]error, n)
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			readied := false
			defer func() {
				if !readied {
					ready.Done()
				}
			}()
			raw, err := s.dialListener(Trusted, "mx", 5*time.Minute)
			if err != nil {
				errs[i] = err
				return
			}
			defer raw.close()
			bw := bufio.NewWriterSize(raw.conn, 64<<10)
			if r := raw.lastLine(); !strings.HasPrefix(r, "220") {
				errs[i] = fmt.Errorf("greeting %q", r)
				return
			}
			for _, c := range []string{"EHLO attacker.example.net", "MAIL FROM:<attacker@example.net>"} {
				fmt.Fprintf(bw, "%s\r\n", c)
				_ = bw.Flush()
				r := raw.lastLine()
				if r == "452 4.3.1 Insufficient system storage" && strings.HasPrefix(c, "MAIL") {
					// The budget is spent: this session holds nothing.
					replies[i] = []string{r}
					return
				}
				if !strings.HasPrefix(r, "250") {
					errs[i] = fmt.Errorf("%s: %q", c, r)
					return
				}
			}
			lines := rcpts(i)
			// The replies are read while the commands are written, so
			// that neither side waits for the other's buffer.
			got := make(chan []string, 1)
			go func() {
				rs := make([]string, 0, len(lines))
				for range lines {
					rs = append(rs, raw.lastLine())
				}
				got <- rs
			}()
			for _, l := range lines {
				fmt.Fprintf(bw, "%s\r\n", l)
			}
			_ = bw.Flush()
			replies[i] = <-got
			if content != nil {
				finished, err := content(bw, raw)
				if err != nil {
					errs[i] = err
					return
				}
				if err := bw.Flush(); err != nil {
					errs[i] = fmt.Errorf("content: %w", err)
					return
				}
				if finished {
					replies[i] = append(replies[i], raw.lastLine())
				}
			}
			readied = true
			ready.Done()
			<-release
		}()
	}
	ready.Wait()
	// Every session holds its part now; the edge has read what the
	// sessions wrote once it answered or once the content is in its
	// buffers: give it a moment to take in the last bytes.
	time.Sleep(2 * time.Second)
	if during != nil {
		during()
	}
	close(release)
	done.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("attacking session %d: %v", i, err)
		}
	}
	return replies
}

// viaDATA sends DATA, waits for the 354, and has write send the content
// (and, when it says it finished the message, the final dot).
func viaDATA(write func(w *bufio.Writer) (finished bool)) func(w *bufio.Writer, raw *rawSMTP) (bool, error) {
	return func(w *bufio.Writer, raw *rawSMTP) (bool, error) {
		fmt.Fprintf(w, "DATA\r\n")
		_ = w.Flush()
		if r := raw.lastLine(); !strings.HasPrefix(r, "354") {
			return false, fmt.Errorf("DATA: %q", r)
		}
		return write(w), nil
	}
}

// awaitFiles waits up to 30 s for dir to hold n files, and returns how
// many it holds.
func awaitFiles(dir string, n int) int {
	for deadline := time.Now().Add(30 * time.Second); spoolFiles(dir) < n && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	return spoolFiles(dir)
}

func spoolFiles(dir string) int {
	entries, _ := os.ReadDir(dir)
	return len(entries)
}

func count(rs []string, prefix string) int {
	n := 0
	for _, r := range rs {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

func last(rs []string) string {
	if len(rs) == 0 {
		return ""
	}
	return rs[len(rs)-1]
}

// TestLongLinesFoldedForNextHop: a message with a 1.3 MB body line and a
// 3,000-byte header line reaches an SMTP next hop (go-smtp's server,
// which refuses lines over 2,000 bytes) with every line broken at
// smtp_line_length_limit (998) bytes by <CR><LF><SPACE>, as Postfix's
// smtp(8) sends it; joined again, the lines are the client's.
func TestLongLinesFoldedForNextHop(t *testing.T) {
	hop := startNextHop(t, false)
	s := newStack(t, "smtpgate_next_hop = smtp://"+hop.addr+"\n")
	token := newToken("folded")
	header := "X-Long: " + strings.Repeat("h", 3000)
	body := strings.Repeat("0123456789", 1<<17)
	c, err := s.dial(Trusted, "mx", false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := startData(t, c, "alice@example.net", "john@example.org")
	fmt.Fprintf(w, "Subject: %s\r\n%s\r\n\r\n%s\r\n.dot-led line\r\n", token, header, body)
	if err := w.Close(); err != nil {
		t.Fatalf("message with long lines: %s", replyOf(err))
	}
	_ = c.Quit()
	data := hop.message(t, token).data
	lines := strings.Split(strings.TrimSuffix(data, "\r\n"), "\r\n")
	long := 0
	for i, l := range lines {
		if len(l) > 998 {
			t.Fatalf("line %d reached the next hop with %d bytes", i, len(l))
		}
		if len(l) == 998 {
			long++
		}
	}
	if long < len(body)/998 {
		t.Errorf("%d lines of 998 bytes, want the body line broken into at least %d", long, len(body)/998)
	}
	joined := strings.ReplaceAll(data, "\r\n ", "")
	for _, want := range []string{"\r\n" + header + "\r\n", "\r\n" + body + "\r\n", "\r\n.dot-led line\r\n"} {
		if !strings.Contains(joined, want) {
			t.Errorf("joined again, the content lacks the line %.40q… (%d bytes)", want, len(want)-4)
		}
	}
}
