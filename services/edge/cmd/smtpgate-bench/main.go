// Command smtpgate-bench is a load generator for SMTP servers: smtpgate,
// Postfix or anything else that speaks SMTP. scripts/bench runs it against
// smtpgate and Postfix side by side (docs/performance.md).
//
//	smtpgate-bench [flags] HOST:PORT     send mail and measure
//	smtpgate-bench -idle N [flags] HOST:PORT
//	                                     hold N sessions after EHLO, report the server's RSS
//	smtpgate-bench sink [-listen ADDR]   a bare go-smtp server that accepts and discards
//	smtpgate-bench dns -listen ADDR [-zone Z] [-listed A,B]
//	                                     a DNSBL zone served over UDP (scenario c)
//	smtpgate-bench ports N               print N free loopback TCP ports
//	smtpgate-bench --version             print the build (pkg/buildinfo)
//
// It is a test tool: it trusts its flags and the servers it measures
// (their replies are counted, not judged), and it targets only the
// addresses it is given, which scripts/bench keeps on loopback.
//
// Latencies are per message from MAIL FROM to the 250 after DATA, and, for
// the first message of each session, from the start of the connect to that
// 250. Exit status 0 when the run completed (errors are counted, not
// fatal), 2 on bad usage, 1 otherwise.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/smtpgate/smtpgate/pkg/buildinfo"
	"github.com/smtpgate/smtpgate/services/edge/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "--version", "-version":
			fmt.Fprint(stdout, buildinfo.Get().String("smtpgate-bench"))
			return 0
		case "sink":
			return sink(ctx, args[1:], stdout, stderr)
		case "ports":
			return ports(args[1:], stdout, stderr)
		case "dns":
			return dnsbl(ctx, args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("smtpgate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadgen.Config
	var sources string
	fs.IntVar(&cfg.Connections, "c", 20, "concurrent `sessions`")
	fs.IntVar(&cfg.MessagesPerConn, "m", 1, "messages per session before QUIT")
	fs.IntVar(&cfg.Size, "size", 1024, "message size in `bytes`, headers included")
	fs.IntVar(&cfg.Recipients, "rcpts", 1, "recipients per message")
	fs.StringVar(&sources, "src", "", "local `addresses` to bind sessions to, in turn: a list and/or ranges, e.g. 127.0.0.10-127.0.0.60 (default: the kernel picks)")
	fs.StringVar(&cfg.Sender, "from", "bench-{c}@example.net", "sender `template`: {c} session, {m} message, {r} recipient number")
	fs.StringVar(&cfg.Recipient, "to", "rcpt{r}@example.com", "recipient `template` (as -from)")
	fs.StringVar(&cfg.Helo, "helo", "bench.smtpgate.invalid", "EHLO `name`")
	fs.StringVar(&cfg.User, "user", "", "AUTH PLAIN as this `user` (none: no AUTH)")
	fs.StringVar(&cfg.Password, "password", "", "AUTH PLAIN password (or $SMTPGATE_BENCH_PASSWORD)")
	fs.BoolVar(&cfg.StartTLS, "starttls", false, "STARTTLS after EHLO (certificate not verified)")
	fs.BoolVar(&cfg.ImplicitTLS, "tls", false, "implicit TLS from the first byte (certificate not verified)")
	generator := fs.String("generator", "", "drive the load with Postfix's smtp-source at this `path` instead of this program's own sessions (no TLS, AUTH or -src; no latencies)")
	fs.BoolVar(&cfg.Resume, "resume", false, "resume each session's TLS session on its next connection (session tickets), as a reconnecting client does")
	groups := fs.String("groups", "", "TLS key exchange `groups` to offer, comma-separated: X25519, X25519MLKEM768, P256, P384, P521 (default: Go's)")
	fs.DurationVar(&cfg.Duration, "d", 0, "run this long, warm-up included (default 10s when -n is not given)")
	fs.Int64Var(&cfg.Messages, "n", 0, "stop after this many messages, warm-up included")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "do not count what starts in the first `duration`")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "for each connect and each command")
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	idle := fs.Int("idle", 0, "open this many `sessions`, send EHLO and hold them (no mail)")
	hold := fs.Duration("hold", 5*time.Second, "with -idle: how long to hold them before measuring")
	parallel := fs.Int("parallel", 100, "with -idle: sessions opened at once")
	pid := fs.Int("pid", 0, "with -idle: the server `process` whose RSS to report")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: smtpgate-bench [flags] HOST:PORT\n       smtpgate-bench sink [-listen ADDR]\n       smtpgate-bench dns -listen ADDR [-zone ZONE] [-listed ADDRS]\n       smtpgate-bench ports N\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	if *groups != "" {
		ids := map[string]tls.CurveID{"X25519": tls.X25519, "X25519MLKEM768": tls.X25519MLKEM768, "P256": tls.CurveP256, "P384": tls.CurveP384, "P521": tls.CurveP521}
		for _, g := range strings.Split(*groups, ",") {
			id, ok := ids[strings.TrimSpace(g)]
			if !ok {
				fmt.Fprintf(stderr, "smtpgate-bench: -groups: unknown group %q\n", g)
				return 2
			}
			cfg.Groups = append(cfg.Groups, id)
		}
	}
	cfg.Addr = fs.Arg(0)
	src, err := loadgen.ParseSources(sources)
	if err != nil {
		fmt.Fprintln(stderr, "smtpgate-bench:", err)
		return 2
	}
	cfg.Sources = src

	if *idle > 0 {
		res, err := loadgen.Idle(ctx, loadgen.IdleConfig{
			Addr: cfg.Addr, Sources: src, Sessions: *idle, Parallel: *parallel,
			Hold: *hold, Timeout: cfg.Timeout, Helo: cfg.Helo, PID: *pid,
		})
		if err != nil {
			fmt.Fprintln(stderr, "smtpgate-bench:", err)
			return 1
		}
		if *jsonOut {
			return jsonExit(res, stdout, stderr)
		}
		res.WriteText(stdout)
		return 0
	}

	if cfg.Password == "" {
		cfg.Password = os.Getenv("SMTPGATE_BENCH_PASSWORD")
	}
	if cfg.Duration == 0 && cfg.Messages == 0 {
		cfg.Duration = 10 * time.Second
	}
	if err := cfg.Check(); err != nil {
		fmt.Fprintln(stderr, "smtpgate-bench:", err)
		return 2
	}
	run := loadgen.Run
	if *generator != "" {
		run = func(ctx context.Context, cfg loadgen.Config) (*loadgen.Result, error) {
			return loadgen.RunSmtpSource(ctx, *generator, cfg)
		}
	}
	res, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "smtpgate-bench:", err)
		return 1
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "smtpgate-bench: interrupted; the figures cover the run so far")
	}
	if *jsonOut {
		return jsonExit(res, stdout, stderr)
	}
	res.WriteText(stdout)
	return 0
}

func jsonExit(v interface{ WriteJSON(io.Writer) error }, stdout, stderr io.Writer) int {
	if err := v.WriteJSON(stdout); err != nil {
		fmt.Fprintln(stderr, "smtpgate-bench:", err)
		return 1
	}
	return 0
}

// sink serves a bare go-smtp server until interrupted; it prints the
// address it listens on, then at the end how many messages it accepted.
func sink(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("smtpgate-bench sink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "`address` to listen on")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return 2
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(stderr, "smtpgate-bench sink:", err)
		return 1
	}
	fmt.Fprintln(stdout, l.Addr())
	s := loadgen.NewSink()
	if err := s.Serve(ctx, l); err != nil {
		fmt.Fprintln(stderr, "smtpgate-bench sink:", err)
		return 1
	}
	fmt.Fprintf(stdout, "sink: %d messages accepted\n", s.Messages())
	return 0
}

// dnsbl serves a DNSBL zone over UDP until interrupted, standing in for
// the recursive resolver smtpgate-policy asks; it prints the address it
// listens on, then at the end how many queries it answered.
func dnsbl(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("smtpgate-bench dns", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "UDP `address` to listen on")
	zone := fs.String("zone", "bl.bench.invalid", "the blocklist's `zone`")
	listedArg := fs.String("listed", "", "listed IPv4 `addresses`, comma-separated (the rest is not listed)")
	ttl := fs.Uint("ttl", 3600, "TTL of the answers, in `seconds`")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return 2
	}
	var listed []netip.Addr
	for _, a := range strings.Split(*listedArg, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		ip, err := netip.ParseAddr(a)
		if err != nil || !ip.Is4() {
			fmt.Fprintf(stderr, "smtpgate-bench dns: -listed %q: want IPv4 addresses\n", a)
			return 2
		}
		listed = append(listed, ip)
	}
	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		fmt.Fprintln(stderr, "smtpgate-bench dns:", err)
		return 1
	}
	fmt.Fprintln(stdout, pc.LocalAddr())
	z := loadgen.NewDNSBL(*zone, listed, uint32(*ttl))
	if err := z.Serve(ctx, pc); err != nil {
		fmt.Fprintln(stderr, "smtpgate-bench dns:", err)
		return 1
	}
	fmt.Fprintf(stdout, "dns: %d queries answered\n", z.Queries())
	return 0
}

// ports prints free TCP ports on 127.0.0.1, below the kernel's ephemeral
// range (as pkg/postfixtest: a port from there could be handed to another
// socket before the server that is given it binds).
func ports(args []string, stdout, stderr io.Writer) int {
	n := 1
	if len(args) == 1 {
		var err error
		if n, err = strconv.Atoi(args[0]); err != nil || n < 1 || n > 100 {
			fmt.Fprintln(stderr, "smtpgate-bench ports: want a count from 1 to 100")
			return 2
		}
	}
	got, err := loadgen.FreePorts(n)
	if err != nil {
		fmt.Fprintln(stderr, "smtpgate-bench ports:", err)
		return 1
	}
	for _, p := range got {
		fmt.Fprintln(stdout, p)
	}
	return 0
}
