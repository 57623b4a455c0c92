package resolver

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// ResolvConf is what the package reads from resolv.conf(5).
type ResolvConf struct {
	Servers  []netip.AddrPort // nameserver lines, port 53, at most 3
	Timeout  time.Duration    // options timeout:N, 0 when absent
	Attempts int              // options attempts:N, 0 when absent
}

// Limits glibc applies (resolv.h: MAXNS, RES_MAXRETRANS, RES_MAXRETRY).
const (
	maxNameservers = 3
	maxRCTimeout   = 30
	maxRCAttempts  = 5
)

// ReadResolvConf parses the file at path; see ParseResolvConf.
func ReadResolvConf(path string) (*ResolvConf, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rc, err := ParseResolvConf(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rc, nil
}

// ParseResolvConf reads nameserver lines (IPv4 or IPv6, an IPv6 zone kept)
// and the options timeout:N and attempts:N, as glibc does: values beyond
// its limits are clamped, the first three nameservers are used, and a file
// without any means 127.0.0.1. Lines it cannot use are ignored, search and
// domain included (only fully qualified names are looked up).
func ParseResolvConf(rd io.Reader) (*ResolvConf, error) {
	rc := &ResolvConf{}
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			a, err := netip.ParseAddr(f[1])
			if err != nil || len(rc.Servers) == maxNameservers {
				continue
			}
			rc.Servers = append(rc.Servers, netip.AddrPortFrom(a, 53))
		case "options":
			for _, o := range f[1:] {
				name, v, ok := strings.Cut(o, ":")
				n, err := strconv.Atoi(v)
				if !ok || err != nil || n < 0 {
					continue
				}
				switch name {
				case "timeout":
					rc.Timeout = time.Duration(min(max(n, 1), maxRCTimeout)) * time.Second
				case "attempts":
					rc.Attempts = min(max(n, 1), maxRCAttempts)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(rc.Servers) == 0 {
		rc.Servers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}
	}
	return rc, nil
}
