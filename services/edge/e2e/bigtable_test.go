package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bigTableEntries is the size of TestBigTableMemory's access table: issue
// 19's million entries, and its budget for them.
const (
	bigTableEntries = 1_000_000
	bigTableBudget  = 200 << 20
)

// TestBigTableMemory starts the real smtpgate-policy with a
// check_recipient_access hash: table of a million entries: its resident
// memory stays under 200 MiB once the table is loaded and across a
// reload of it, every entry tried through the real stack is refused with
// its own text and a key not in the table is not, and a change to the
// file reaches the RCPT replies without a restart.
func TestBigTableMemory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big_access")
	writeBig := func(probe string) {
		t.Helper()
		f, err := os.Create(path + ".new")
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		for i := range bigTableEntries {
			fmt.Fprintf(w, "user%d@big.example REJECT no mail for user %d\n", i, i)
		}
		fmt.Fprintf(w, "probe@big.example %s\n", probe)
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	writeBig("REJECT probe before")
	s := newStack(t, "smtpd_recipient_restrictions = check_recipient_access hash:"+path+", permit_mynetworks, reject_unauth_destination\n")
	pid := s.procs["policy"].Process.Pid

	rcpt := func(to string) string {
		t.Helper()
		return s.rcptReply(t, "127.0.0.1", "sender@example.net", to)
	}
	for _, i := range []int{0, 1, 4242, 500_000, bigTableEntries - 1} {
		to := fmt.Sprintf("user%d@big.example", i)
		if got, want := rcpt(to), fmt.Sprintf("554 5.7.1 <%s>: Recipient address rejected: no mail for user %d", to, i); got != want {
			t.Errorf("RCPT TO:<%s>: %q, want %q", to, got, want)
		}
	}
	if got := rcpt(fmt.Sprintf("user%d@big.example", bigTableEntries)); got != "ok" {
		t.Errorf("a recipient not in the table, from mynetworks: %s", got)
	}
	loaded := procMemory(t, pid)
	t.Logf("policy with %d entries: VmRSS %d MiB, VmHWM %d MiB (the load's peak)", bigTableEntries, loaded["VmRSS"]>>20, loaded["VmHWM"]>>20)
	if loaded["VmRSS"] > bigTableBudget {
		t.Errorf("policy's resident memory with a %d-entry table is %d MiB, over %d MiB", bigTableEntries, loaded["VmRSS"]>>20, bigTableBudget>>20)
	}

	// A reload: the probe flips; RCPTs go on being answered meanwhile.
	writeBig("OK probe after")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := rcpt("probe@big.example")
		if got == "ok" {
			break
		}
		if !strings.HasPrefix(got, "554 5.7.1 <probe@big.example>: Recipient address rejected: probe before") {
			t.Fatalf("RCPT TO:<probe@big.example> during the reload: %q", got)
		}
		if time.Now().After(deadline) {
			t.Fatal("the changed table never reached the RCPT replies")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The reload hands its scratch memory back to the kernel right after
	// the new table is in use: give that a moment on a loaded machine.
	reloaded := procMemory(t, pid)
	for end := time.Now().Add(time.Minute); reloaded["VmRSS"] > bigTableBudget && time.Now().Before(end); {
		time.Sleep(200 * time.Millisecond)
		reloaded = procMemory(t, pid)
	}
	t.Logf("policy after a reload: VmRSS %d MiB, VmHWM %d MiB (two tables at once while the new one loads)", reloaded["VmRSS"]>>20, reloaded["VmHWM"]>>20)
	if reloaded["VmRSS"] > bigTableBudget {
		t.Errorf("policy's resident memory after a reload of the %d-entry table is %d MiB, over %d MiB", bigTableEntries, reloaded["VmRSS"]>>20, bigTableBudget>>20)
	}
}
