// Package postfixtest runs a throwaway Postfix smtpd on loopback for tests
// that compare smtpgate with the real thing. It is test support only: no
// non-test code imports it.
//
// The instance is a pure front door. It listens on 127.0.0.1 at a free
// port, keeps its queue, data and log under a temporary directory, and hands
// every accepted message to the discard transport, so it never delivers
// anywhere. It trusts nothing but its own configuration; callers add
// restrictions and lookup tables through Options.
//
// Running Postfix needs root and the Debian postfix package installed
// unconfigured with an /etc/postfix/main.cf (scripts/deps --test does both);
// docs/postfix-on-loopback.md records why most settings below are there.
// Unlike that page, Start does not run "postfix start": it lays out the
// queue itself and runs the master directly, which saves postfix-script's
// seconds of permission checks. Stopping it is what "postfix stop" does,
// without postfix-script.
package postfixtest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options configure one instance.
type Options struct {
	// Main holds extra main.cf lines (restrictions etc.). They are
	// appended after the harness's own lines, so they win.
	Main string
	// Files are written into the instance directory before Postfix starts
	// (lookup tables): file name → content.
	Files map[string]string
	// Postmap names the Files to compile with "postmap hash:<path>".
	Postmap []string
	// Nameserver, when set, is the IPv4 address of a DNS server on port
	// 53 that this Postfix asks, and nothing else: the master runs in a
	// private mount namespace (unshare(1)) where /etc/resolv.conf names
	// only it, so the machine's resolver configuration is not touched.
	// Main must then say smtpd_peername_lookup = yes for Postfix to
	// resolve client names.
	Nameserver string
}

// Postfix is a running instance.
type Postfix struct {
	dir   string // config directory: main.cf, master.cf, tables, maillog
	queue string
	addr  string
	log   string
}

// Addr returns the smtpd address, "127.0.0.1:port".
func (p *Postfix) Addr() string { return p.addr }

// Dir returns the instance directory; the files from Options.Files are at
// Dir()/name.
func (p *Postfix) Dir() string { return p.dir }

// Log returns the contents of the instance's maillog_file.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// commands are the Postfix programs Start runs.
var commands = struct{ postmap, master string }{
	"/usr/sbin/postmap", "/usr/lib/postfix/sbin/master",
}

// needs is the hint every set-up failure ends with.
const needs = "run scripts/deps --test (as root) to install Postfix, and run these tests as root"

// Start runs a throwaway Postfix smtpd on 127.0.0.1:<free port> from a
// temporary directory and stops it at t.Cleanup. Any problem, including a
// missing Postfix or not being root, fails the test: it never skips.
func Start(t testing.TB, o Options) *Postfix {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("postfixtest: Postfix can only be started as root (euid %d); %s", os.Geteuid(), needs)
	}
	for _, c := range []string{commands.postmap, commands.master} {
		if _, err := os.Stat(c); err != nil {
			t.Fatalf("postfixtest: Postfix is not installed (%v); %s", err, needs)
		}
	}

	owner, err := user.Lookup("postfix")
	if err != nil {
		t.Fatalf("postfixtest: %v; %s", err, needs)
	}
	postdrop, err := user.LookupGroup("postdrop")
	if err != nil {
		t.Fatalf("postfixtest: %v; %s", err, needs)
	}

	// Postfix wants the whole config directory tree owned by root, and the
	// queue directory's subdirectories owned by postfix, so the queue
	// lives beside the config directory, not in it. The base is 0755: the
	// daemons run as postfix and must reach the queue.
	base, err := os.MkdirTemp("", "postfixtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	p := &Postfix{dir: filepath.Join(base, "conf"), queue: filepath.Join(base, "queue")}
	p.log = filepath.Join(p.dir, "maillog")
	if err := layout(base, p.dir, p.queue, atoi(owner.Uid), atoi(postdrop.Gid)); err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	for name, content := range o.Files {
		if name != filepath.Base(name) || name == "main.cf" || name == "master.cf" || name == "maillog" {
			t.Fatalf("postfixtest: file name %q: want a plain name other than main.cf, master.cf and maillog", name)
		}
		if err := os.WriteFile(filepath.Join(p.dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	p.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	token := instanceToken()
	write(t, filepath.Join(p.dir, "main.cf"), mainCF(base, p.dir, p.queue, token)+"\n# --- Options.Main ---\n"+o.Main+"\n")
	write(t, filepath.Join(p.dir, "master.cf"), masterCF(port))
	for _, name := range o.Postmap {
		if _, ok := o.Files[name]; !ok {
			t.Fatalf("postfixtest: Postmap names %q, which is not in Files", name)
		}
		out, err := exec.Command(commands.postmap, "-c", p.dir, "hash:"+filepath.Join(p.dir, name)).CombinedOutput()
		if err != nil {
			t.Fatalf("postfixtest: postmap %s: %v\n%s%s", name, err, out, p.Log())
		}
	}

	t.Cleanup(func() { p.stop(t) })
	// "postfix start" would first run postfix-script's checks of every
	// file's owner and mode, which take seconds (over ten on a busy
	// machine); layout did what they would fix, so start the master as
	// postfix-script does after them. -w returns once it runs.
	cmd := exec.Command(commands.master, "-c", p.dir, "-w")
	if o.Nameserver != "" {
		if net.ParseIP(o.Nameserver).To4() == nil {
			t.Fatalf("postfixtest: Nameserver %q: want an IPv4 address", o.Nameserver)
		}
		// A private mount namespace whose /etc/resolv.conf names the
		// test's server: the master and its daemons stay in it.
		rc := filepath.Join(base, "resolv.conf")
		write(t, rc, "nameserver "+o.Nameserver+"\noptions timeout:2 attempts:2\n")
		cmd = exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
			`mount --bind "$1" /etc/resolv.conf && exec "$2" -c "$3" -w`, "sh", rc, commands.master, p.dir)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("postfixtest: %s: %v\n%s\n--- syslog ---\n%s--- maillog ---\n%s", strings.Join(cmd.Args, " "), err, out, p.startErrors(), p.Log())
	}
	if err := p.waitReady(token, 15*time.Second); err != nil {
		t.Fatalf("postfixtest: Postfix does not answer on %s: %v\n--- maillog ---\n%s", p.addr, err, p.Log())
	}
	return p
}

// layout makes the directories: the config directory (root), the queue
// with the subdirectories and modes of /etc/postfix/postfix-files, and the
// data directory.
func layout(base, dir, queue string, postfix, postdrop int) error {
	type d struct {
		path     string
		mode     os.FileMode
		uid, gid int
	}
	dirs := []d{{base, 0o755, 0, 0}, {dir, 0o755, 0, 0}, {queue, 0o755, 0, 0},
		{filepath.Join(queue, "pid"), 0o755, 0, 0},
		{filepath.Join(queue, "maildrop"), 0o730, postfix, postdrop},
		{filepath.Join(queue, "public"), 0o710, postfix, postdrop},
		{filepath.Join(base, "data"), 0o700, postfix, 0},
	}
	for _, name := range []string{"active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace"} {
		dirs = append(dirs, d{filepath.Join(queue, name), 0o700, postfix, 0})
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return err
		}
		if err := os.Chmod(d.path, d.mode); err != nil { // past the umask
			return err
		}
		if err := os.Chown(d.path, d.uid, d.gid); err != nil {
			return err
		}
	}
	return nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// startErrors starts the master again with a datagram socket bound at
// /dev/log, and returns what it logged there: the master reports fatal
// start-up errors only to syslog. It does nothing when /dev/log exists
// (a syslog daemon has the messages).
func (p *Postfix) startErrors() string {
	const devLog = "/dev/log"
	if _, err := os.Lstat(devLog); err == nil {
		return "(see the system log: " + devLog + " exists)\n"
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: devLog, Net: "unixgram"})
	if err != nil {
		return fmt.Sprintf("(cannot listen on %s: %v)\n", devLog, err)
	}
	defer os.Remove(devLog)
	defer c.Close()
	done := make(chan struct{})
	go func() {
		_ = exec.Command(commands.master, "-c", p.dir, "-w").Run()
		close(done)
	}()
	var b strings.Builder
	buf := make([]byte, 8192)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			deadline = time.Now().Add(200 * time.Millisecond)
			done = nil
		default:
		}
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := c.Read(buf)
		if n > 0 {
			b.WriteString(strings.TrimRight(string(buf[:n]), "\x00\n") + "\n")
		}
		if err != nil && time.Now().After(deadline) {
			break
		}
	}
	if b.Len() == 0 {
		return "(nothing)\n"
	}
	return b.String()
}

// mainCF is the harness's own main.cf.
func mainCF(base, dir, queue, token string) string {
	return fmt.Sprintf(`# postfixtest: a throwaway Postfix that listens on loopback and delivers
# nowhere. Lines after "Options.Main" below come from the test and win.
compatibility_level = 3.6
queue_directory = %[2]s
data_directory = %[1]s/data
# Postfix's own log file, written by postlogd; the prefixes must allow it.
maillog_file = %[3]s/maillog
maillog_file_prefixes = %[3]s
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mail.example.org
mydomain = example.org
mydestination = $mydomain, localhost
mynetworks = 127.0.0.1/32
# Empty: unknown local users are not rejected (smtpgate has no user list).
local_recipient_maps =
alias_maps =
alias_database =
# Every accepted message is thrown away.
default_transport = discard
local_transport = discard
relay_transport = discard
virtual_transport = discard
# The token proves that the port answering is this instance.
smtpd_banner = $myhostname ESMTP Postfix (postfixtest %[4]s)
# Scripted dialogues make many errors on purpose: no tarpit, no cut-off.
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
# No client host name lookup (unless Options.Main turns it on with a
# Nameserver): without a test DNS server, every client is "unknown", as
# for smtpgate when its DNS server knows no name.
smtpd_peername_lookup = no
# The SMTP client never runs (everything is discarded), but say it anyway.
smtp_dns_support_level = disabled
`, base, queue, dir, token)
}

// masterCF runs smtpd on the port and only the services a front door
// needs, none chrooted (the temporary queue is no chroot jail).
func masterCF(port int) string {
	return fmt.Sprintf(`127.0.0.1:%d inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`, port)
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Ports below the kernel's ephemeral range (32768 and up on Linux), so that
// a port picked here cannot also be handed to another test's listen on
// port 0 while the master has yet to bind it; the master binds with
// SO_REUSEPORT and would not notice a second Postfix on the same port, so
// each port is used once per process.
const portLow, portHigh = 20000, 32768

var ports struct {
	sync.Mutex
	used map[int]bool
}

func freePort() (int, error) {
	ports.Lock()
	defer ports.Unlock()
	if ports.used == nil {
		ports.used = map[int]bool{}
	}
	for range 100 {
		var b [2]byte
		_, _ = rand.Read(b[:])
		port := portLow + (int(b[0])<<8|int(b[1]))%(portHigh-portLow)
		if ports.used[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		ports.used[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no free port in %d-%d", portLow, portHigh-1)
}

func instanceToken() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// waitReady waits until the port greets. The master binds with
// SO_REUSEPORT, so a busy port does not make it fail: a 220 greeting must
// carry this instance's token. (A client restriction with
// smtpd_delay_reject = no may replace the greeting with a rejection.)
func (p *Postfix) waitReady(token string, timeout time.Duration) error {
	start := time.Now()
	for {
		code, msg, err := p.greeting()
		if err == nil {
			if code == 220 && !strings.Contains(msg, token) {
				return fmt.Errorf("another server answers: %q", msg)
			}
			return nil
		}
		if time.Since(start) > timeout {
			return err
		}
		if log := p.Log(); strings.Contains(log, " fatal: ") || strings.Contains(log, "bad command startup") {
			return fmt.Errorf("%v; smtpd cannot start", err)
		}
		if _, perr := p.masterPID(); perr != nil && time.Since(start) > 3*time.Second {
			return fmt.Errorf("%v; master is not running: %v", err, perr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// greeting connects, reads the greeting and says QUIT.
func (p *Postfix) greeting() (int, string, error) {
	c, err := net.DialTimeout("tcp", p.addr, time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	tp := textproto.NewConn(c)
	code, msg, err := tp.ReadResponse(0)
	if code == 0 {
		return 0, "", fmt.Errorf("reading the greeting: %w", err)
	}
	_ = tp.PrintfLine("QUIT")
	_, _, _ = tp.ReadResponse(0)
	return code, msg, nil
}

// masterPID returns the PID of the instance's master process.
func (p *Postfix) masterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(p.queue, "pid", "master.pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// stop ends the instance as "postfix stop" does, by a SIGTERM to its
// master (which passes it on to its process group), and kills that
// process group when the master outlives it by 10 seconds, as
// postfix-script's "stop with force" does. postfix-script itself is not
// run: its "master -t" probes have been seen to hang on a loaded machine,
// which hung the test's cleanup with them.
func (p *Postfix) stop(t testing.TB) {
	pid, err := p.masterPID()
	if err != nil {
		return // it never started
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("postfixtest: SIGTERM to master %d: %v", pid, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			t.Errorf("postfixtest: master %d outlived its SIGTERM by 10s; killed its process group", pid)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive tells whether pid runs. A zombie does not: the daemonized master's
// parent is init, which may be slow to reap it (or never, in a sandbox).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return !errors.Is(err, syscall.ESRCH)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
