package e2e

// The differential test: the same scripted SMTP dialogues, from the same
// source address, against a real Postfix (pkg/postfixtest) and against
// smtpgate, both configured with the same restriction lines. The reply
// codes must agree step by step, except where a scenario names a
// documented difference (docs/postfix-differences.md).
//
// One file per scenario in testdata/differential:
//
//	# scenario: what the file is about
//	main: smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
//	file: helo_access = localhost.localdomain OK
//	dialogue: stranger relays
//	from: 127.0.0.66
//	differs: 3 D2: why (D2 is a "## D2" heading of the differences doc)
//	> EHLO client.example.net
//	> RCPT TO:<b@example.com>
//	>> MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>
//
// A ">> " line is written at once, its commands separated by a literal
// \r\n (RFC 2920 pipelining); its replies are steps k, k/2, k/3...
//
// "main:" lines go to both servers' main.cf, after a common block (see
// common); "${tables}" in them is the directory of the "file:" tables
// (several "file:" lines with one name make a table of several lines;
// each is also compiled with postmap for Postfix, while smtpgate reads the
// source text). Each dialogue runs on a fresh connection to each server.
// Step 0 is the greeting, step k the reply to the k-th "> " line, and after
// a DATA that both answer with 354 the test sends a small message, whose
// final dot's reply is step "k.". Steps compare the reply code, and the
// enhanced status code when both give one.
//
// "dns:" lines (before the first dialogue) are records in zone-file
// syntax ("mail.example.net. 300 IN A 127.0.0.67") of a DNS server that
// both servers ask, Postfix with smtpd_peername_lookup = yes; names it
// lacks are NXDOMAIN, names with a "servfail" label SERVFAIL.
//
// A file named *.pending.txt uses restrictions smtpgate does not have yet:
// it is listed, not run, and not counted.

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"

	"github.com/smtpgate/smtpgate/pkg/postfixtest"
)

// common is given to both servers before a scenario's lines, so that they
// start from the same place: the harness's and deploy/local's domains and
// networks, and deploy/local's relay rule (Postfix's default is
// defer_unauth_destination); deploy/local's data restriction is Postfix's
// default (none) here, as in every other restriction list.
const common = `mydestination = $mydomain, localhost
mynetworks = 127.0.0.1/32
local_recipient_maps =
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_data_restrictions =
`

const differencesDoc = "docs/postfix-differences.md"

var allTables = flag.Bool("difftables", false, "log the side-by-side table of every differential dialogue")

type scenario struct {
	file  string // base name
	title string
	main  []string
	files map[string]string
	// dns are the records of the scenario's DNS server, which both
	// servers ask (Postfix from a private mount namespace whose
	// resolv.conf names it): without any, neither resolves names.
	dns       []string
	dialogues []*dialogue
}

type dialogue struct {
	name    string
	line    int // in the scenario file
	from    string
	cmds    []string
	differs map[string]string // step → reason
}

// parseScenario reads one scenario file.
func parseScenario(path string) (*scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sc := &scenario{file: filepath.Base(path), files: map[string]string{}}
	var d *dialogue
	for i, raw := range strings.Split(string(b), "\n") {
		n := i + 1
		line := strings.TrimRight(raw, " \t\r")
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s", sc.file, n, fmt.Sprintf(format, args...))
		}
		if group, ok := strings.CutPrefix(line, ">> "); ok {
			// Several commands in one write, separated by a literal
			// \r\n: RFC 2920 pipelining, wanted or not.
			if d == nil {
				return nil, bad("command outside a dialogue")
			}
			d.cmds = append(d.cmds, groupPrefix+group)
			continue
		}
		if cmd, ok := strings.CutPrefix(line, "> "); ok {
			if d == nil {
				return nil, bad("command outside a dialogue")
			}
			d.cmds = append(d.cmds, cmd)
			continue
		}
		if t, ok := strings.CutPrefix(line, "# scenario:"); ok {
			sc.title = strings.TrimSpace(t)
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return nil, bad("want key: value, or > command")
		}
		val = strings.TrimSpace(val)
		switch key {
		case "main", "file":
			if d != nil {
				return nil, bad("%s: after the first dialogue", key)
			}
			if key == "main" {
				sc.main = append(sc.main, val)
				break
			}
			name, content, ok := strings.Cut(val, "=")
			name = strings.TrimSpace(name)
			if !ok || name == "" || strings.ContainsAny(name, "/ ") {
				return nil, bad("want file: name = table line")
			}
			sc.files[name] += strings.TrimSpace(content) + "\n"
		case "dns":
			if d != nil {
				return nil, bad("dns: after the first dialogue")
			}
			if _, err := dns.NewRR(val); err != nil {
				return nil, bad("dns: want a record in zone-file syntax: %v", err)
			}
			sc.dns = append(sc.dns, val)
		case "dialogue":
			d = &dialogue{name: val, line: n, differs: map[string]string{}}
			sc.dialogues = append(sc.dialogues, d)
		case "from":
			if d == nil || net.ParseIP(val) == nil || !strings.HasPrefix(val, "127.") {
				return nil, bad("from: wants a 127.x.y.z address inside a dialogue")
			}
			d.from = val
		case "differs":
			if d == nil {
				return nil, bad("differs: outside a dialogue")
			}
			step, reason, _ := strings.Cut(val, " ")
			if !regexp.MustCompile(`^\d+\.?$`).MatchString(step) || !regexp.MustCompile(`^D\d+: \S`).MatchString(reason) {
				return nil, bad("want differs: <step> D<n>: <reason>, D<n> naming a heading of %s", differencesDoc)
			}
			d.differs[step] = reason
		default:
			return nil, bad("unknown key %q", key)
		}
	}
	if len(sc.dialogues) == 0 {
		return nil, fmt.Errorf("%s: no dialogue", sc.file)
	}
	for _, d := range sc.dialogues {
		if d.from == "" || len(d.cmds) == 0 {
			return nil, fmt.Errorf("%s:%d: dialogue %q needs from: and commands", sc.file, d.line, d.name)
		}
	}
	return sc, nil
}

// reply is what one server said at one step.
type reply struct {
	code     int    // 0: no reply (see text)
	enhanced string // RFC 3463 code, if the first line has one
	text     string // first line
}

var enhancedCode = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}\b`)

func (r reply) String() string {
	if r.code == 0 {
		return "(" + r.text + ")"
	}
	return strconv.Itoa(r.code) + " " + r.text
}

// agrees compares codes, and enhanced codes when both have one.
func (r reply) agrees(o reply) bool {
	if r.code != o.code {
		return false
	}
	if r.code == 0 {
		return r.text == o.text // "closed" on both sides
	}
	return r.enhanced == "" || o.enhanced == "" || r.enhanced == o.enhanced
}

// client is one side's connection.
type client struct{ *rawSMTP }

func dialFrom(from, addr string) (*client, error) {
	r, err := dialRaw(from, addr, 0)
	if err != nil {
		return nil, err
	}
	return &client{r}, nil
}

// read reads one whole (possibly multi-line) reply.
func (c *client) read() reply {
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	code, msg, err := c.response(0)
	if code == 0 {
		var ne net.Error
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
			return reply{text: "no reply in 10s"}
		case err != nil:
			return reply{text: "closed"}
		}
	}
	first, _, _ := strings.Cut(msg, "\n")
	return reply{code: code, enhanced: enhancedCode.FindString(first), text: first}
}

// send writes lines and reads the reply.
func (c *client) send(lines ...string) reply {
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	for _, l := range lines {
		if err := c.writeLine(l); err != nil {
			return reply{text: "closed"}
		}
	}
	return c.read()
}

// groupPrefix marks a dialogue command written as one pipelined group.
const groupPrefix = "\x00group:"

// sendGroup writes lines in one write and reads a reply for each, up to a
// 354 (the lines after it are message content, answered once at the
// final ".") or the connection's end.
func (c *client) sendGroup(lines []string) []reply {
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.write(strings.Join(lines, "\r\n") + "\r\n"); err != nil {
		return []reply{{text: "closed"}}
	}
	var out []reply
	for i := range lines {
		r := c.read()
		out = append(out, r)
		if r.code == 0 {
			break
		}
		if r.code == 354 {
			if slices.Contains(lines[i+1:], ".") {
				out = append(out, c.read())
			}
			break
		}
	}
	return out
}

// row is one step of the side-by-side table.
type row struct {
	step, cmd     string
	postfix, gate reply
	verdict       string // "", "DIFFERS", "known D<n>", "not run"
}

// diffMessage is what the test sends after a 354.
func diffMessage(token string) []string {
	return []string{
		"From: <a@example.net>",
		"To: <postmaster@example.org>",
		"Subject: " + token,
		"Message-ID: <" + token + "@client.example.net>",
		"",
		"body of " + token,
		".",
	}
}

// run plays d against both servers and returns the table and whether any
// step differs without being known, and known differences that no longer
// differ.
func (d *dialogue) run(t *testing.T, postfixAddr, smtpgateAddr string) (rows []row, unexpected int, stale []string) {
	t.Helper()
	pf, err := dialFrom(d.from, postfixAddr)
	if err != nil {
		t.Fatalf("dialogue %q: connecting to Postfix: %v", d.name, err)
	}
	defer pf.conn.Close()
	sg, err := dialFrom(d.from, smtpgateAddr)
	if err != nil {
		t.Fatalf("dialogue %q: connecting to smtpgate: %v", d.name, err)
	}
	defer sg.conn.Close()

	used := map[string]bool{}
	add := func(step, cmd string, p, s reply) bool {
		r := row{step: step, cmd: cmd, postfix: p, gate: s}
		reason, known := d.differs[step]
		switch agree := p.agrees(s); {
		case agree && known:
			stale = append(stale, step)
			r.verdict = "agrees, but listed as " + reason
		case !agree && known:
			used[step] = true
			r.verdict = "known " + reason
		case !agree:
			unexpected++
			r.verdict = "DIFFERS"
		}
		rows = append(rows, r)
		return p.agrees(s)
	}
	add("0", "(connect)", pf.read(), sg.read())
	for i, cmd := range d.cmds {
		step := strconv.Itoa(i + 1)
		if group, ok := strings.CutPrefix(cmd, groupPrefix); ok {
			lines := strings.Split(group, `\r\n`)
			ps, ss := pf.sendGroup(lines), sg.sendGroup(lines)
			for j := range max(len(ps), len(ss)) {
				var p, s reply
				if j < len(ps) {
					p = ps[j]
				}
				if j < len(ss) {
					s = ss[j]
				}
				sub := step
				if j > 0 {
					sub = step + "/" + strconv.Itoa(j+1)
				}
				add(sub, ">> "+group, p, s)
			}
			continue
		}
		p, s := pf.send(cmd), sg.send(cmd)
		add(step, cmd, p, s)
		if !strings.EqualFold(strings.TrimSpace(cmd), "DATA") || (p.code != 354 && s.code != 354) {
			continue
		}
		if p.code != s.code {
			// One side reads a message, the other commands: the
			// rest would compare nothing useful.
			for _, rest := range d.cmds[i+1:] {
				rows = append(rows, row{cmd: rest, verdict: "not run"})
			}
			break
		}
		token := newToken("diff")
		add(step+".", "(message).", pf.send(diffMessage(token)...), sg.send(diffMessage(token)...))
	}
	for step := range d.differs {
		if !used[step] && !slices.Contains(stale, step) {
			stale = append(stale, step+" (no such step)")
		}
	}
	return rows, unexpected, stale
}

func table(rows []row) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "step\tcommand\tPostfix\tsmtpgate\t")
	clip := func(s string) string {
		if len(s) > 60 {
			return s[:57] + "..."
		}
		return s
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.step, clip(r.cmd), clip(r.postfix.String()), clip(r.gate.String()), r.verdict)
	}
	_ = w.Flush()
	return b.String()
}

// differenceIDs returns the D<n> headings of the differences document.
func differenceIDs(t *testing.T) map[string]bool {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, differencesDoc))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids := map[string]bool{}
	sc := bufio.NewScanner(f)
	heading := regexp.MustCompile(`^##+ (D\d+)\b`)
	for sc.Scan() {
		if m := heading.FindStringSubmatch(sc.Text()); m != nil {
			ids[m[1]] = true
		}
	}
	return ids
}

func TestDifferential(t *testing.T) {
	start := time.Now()
	paths, err := filepath.Glob("testdata/differential/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	ids := differenceIDs(t)
	var scenarios []*scenario
	var pending []string
	for _, p := range paths {
		if strings.HasSuffix(p, ".pending.txt") {
			pending = append(pending, filepath.Base(p))
			continue
		}
		sc, err := parseScenario(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range sc.dialogues {
			for step, reason := range d.differs {
				id, _, _ := strings.Cut(reason, ":")
				if !ids[id] {
					t.Errorf("%s: dialogue %q step %s: %s has no heading %q", sc.file, d.name, step, differencesDoc, "## "+id)
				}
			}
		}
		scenarios = append(scenarios, sc)
	}
	if len(pending) > 0 {
		t.Logf("not run, pending restrictions smtpgate lacks (%d): %s", len(pending), strings.Join(pending, ", "))
	}
	if len(scenarios) == 0 {
		t.Fatal("no scenario to run in testdata/differential")
	}

	var ran, dialogues atomic.Int64
	t.Run("scenarios", func(t *testing.T) {
		for _, sc := range scenarios {
			t.Run(strings.TrimSuffix(sc.file, ".txt"), func(t *testing.T) {
				t.Parallel()
				sc.run(t)
				ran.Add(1)
				dialogues.Add(int64(len(sc.dialogues)))
			})
		}
	})
	t.Logf("ran %d of %d scenario files (%d dialogues) in %v; %d pending not run",
		ran.Load(), len(paths), dialogues.Load(), time.Since(start).Round(time.Millisecond), len(pending))
	if ran.Load() == 0 {
		t.Fatal("no scenario ran")
	}
}

// stackStart serializes newStack: it picks its ports by listening on port
// 0 and closing, and binds them a moment later, so two stacks starting
// at once could be handed the same port.
var stackStart sync.Mutex

func startStack(t *testing.T, extraMain string) *stack {
	t.Helper()
	stackStart.Lock()
	defer stackStart.Unlock()
	return newStack(t, extraMain)
}

// run starts both servers with the scenario's configuration and plays
// every dialogue.
func (sc *scenario) run(t *testing.T) {
	var postmap []string
	for name := range sc.files {
		postmap = append(postmap, name)
	}
	// The tables live in the Postfix instance directory, which Postfix
	// calls $config_directory; smtpgate reads the same absolute paths.
	mainFor := func(tables string) string {
		return common + strings.ReplaceAll(strings.Join(sc.main, "\n"), "${tables}", tables) + "\n"
	}
	opts := postfixtest.Options{Main: mainFor("$config_directory"), Files: sc.files, Postmap: postmap}
	extra := ""
	if len(sc.dns) > 0 {
		ip := zoneOnPort53(t, strings.Join(sc.dns, "\n"))
		opts.Nameserver = ip
		opts.Main += "smtpd_peername_lookup = yes\n"
		extra = "smtpgate_dns_servers = " + ip + ":53\n"
	}
	pf := postfixtest.Start(t, opts)
	s := startStack(t, mainFor(pf.Dir())+extra)
	smtpgateAddr := fmt.Sprintf("127.0.0.1:%d", s.ports("edge")[0])
	for _, d := range sc.dialogues {
		rows, unexpected, stale := d.run(t, pf.Addr(), smtpgateAddr)
		switch {
		case unexpected > 0:
			t.Errorf("%s:%d: dialogue %q: %d step(s) differ from Postfix:\n%s", sc.file, d.line, d.name, unexpected, table(rows))
		case len(stale) > 0:
			t.Errorf("%s:%d: dialogue %q: listed differences no longer differ at step(s) %s; remove the differs: lines:\n%s", sc.file, d.line, d.name, strings.Join(stale, ", "), table(rows))
		case len(d.differs) > 0 || *allTables:
			t.Logf("%s:%d: dialogue %q: no unexpected difference:\n%s", sc.file, d.line, d.name, table(rows))
		}
	}
	if t.Failed() {
		t.Logf("--- Postfix maillog ---\n%s", pf.Log())
	}
}

// zoneOnPort53 serves records (zone-file lines) on UDP port 53 of a free
// loopback address, as a resolv.conf nameserver must be (it takes no
// port), until the test ends; names with a "servfail" label get
// SERVFAIL. It returns the address.
func zoneOnPort53(t *testing.T, records string) string {
	t.Helper()
	var z *zone
	for i := range 50 {
		ip := fmt.Sprintf("127.53.%d.%d", 1+i/200, 1+(os.Getpid()+i*7)%250)
		pc, err := net.ListenPacket("udp", ip+":53")
		if err != nil {
			continue
		}
		z = newZone(t, records)
		srv := &dns.Server{PacketConn: pc, Handler: z}
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
		return ip
	}
	t.Fatal("no free UDP port 53 on 127.53.x.y")
	return ""
}
