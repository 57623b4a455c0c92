package importcf

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/smtpgate/smtpgate/pkg/maincf"
)

// masterEntry is one service of a Postfix master.cf, read leniently: any
// type and command, any argument (smtpgate's own reader takes only inet
// smtpd services and -o options).
type masterEntry struct {
	pos maincf.Pos
	// fields are the eight columns.
	fields []string
	args   []masterArg
}

func (e masterEntry) name() string    { return e.fields[0] }
func (e masterEntry) typ() string     { return e.fields[1] }
func (e masterEntry) command() string { return e.fields[7] }

// masterArg is one command argument: an -o setting (name set) or another
// option (text).
type masterArg struct {
	line        int
	name, value string
	text        string
}

// masterToken is a word of a master.cf entry and the physical line it is on.
type masterToken struct {
	text string
	line int
}

// parsePostfixMaster reads a Postfix master.cf; file names positions.
func parsePostfixMaster(file string, data []byte) ([]masterEntry, error) {
	var entries [][]masterToken
	var starts []int
	inGroup := false
	for i, raw := range strings.Split(string(data), "\n") {
		n := i + 1
		raw = strings.TrimRight(raw, "\r")
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if raw[0] != ' ' && raw[0] != '\t' {
			if inGroup {
				return nil, fmt.Errorf("%s:%d: missing '}'", file, starts[len(starts)-1])
			}
			entries = append(entries, nil)
			starts = append(starts, n)
		} else if len(entries) == 0 {
			return nil, fmt.Errorf("%s:%d: continuation line without a preceding service", file, n)
		}
		cur := &entries[len(entries)-1]
		for _, w := range strings.Fields(trimmed) {
			// A "{ name = value }" group is one word, possibly spread
			// over several lines.
			if inGroup {
				last := &(*cur)[len(*cur)-1]
				last.text += " " + w
				inGroup = !strings.HasSuffix(w, "}")
				continue
			}
			*cur = append(*cur, masterToken{text: w, line: n})
			inGroup = strings.HasPrefix(w, "{") && !strings.HasSuffix(w, "}")
		}
	}
	if inGroup {
		return nil, fmt.Errorf("%s:%d: missing '}'", file, starts[len(starts)-1])
	}
	out := make([]masterEntry, 0, len(entries))
	for i, toks := range entries {
		pos := maincf.Pos{File: file, Line: starts[i]}
		if len(toks) < 8 {
			return nil, fmt.Errorf("%s: want 8 fields (service type private unpriv chroot wakeup maxproc command), got %d", pos, len(toks))
		}
		e := masterEntry{pos: pos}
		for _, t := range toks[:8] {
			e.fields = append(e.fields, t.text)
		}
		args := toks[8:]
		for j := 0; j < len(args); j++ {
			a := args[j]
			setting := ""
			switch {
			case a.text == "-o" && j+1 < len(args):
				j++
				setting, a.line = args[j].text, args[j].line
			case strings.HasPrefix(a.text, "-o") && len(a.text) > 2:
				setting = a.text[2:]
			default:
				e.args = append(e.args, masterArg{line: a.line, text: a.text})
				continue
			}
			setting = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(setting, "{"), "}"))
			name, value, ok := strings.Cut(setting, "=")
			if !ok {
				return nil, fmt.Errorf("%s:%d: service %s: -o %s: missing '='", file, a.line, e.name(), setting)
			}
			e.args = append(e.args, masterArg{line: a.line, name: strings.TrimSpace(name), value: strings.TrimSpace(value)})
		}
		out = append(out, e)
	}
	return out, nil
}

// servicePorts are the service names Postfix's default master.cf uses for
// its smtpd listeners (from /etc/services).
var servicePorts = map[string]string{"smtp": "25", "submission": "587", "smtps": "465", "submissions": "465"}

// listenAddrs translates a Postfix service column ("smtp",
// "127.0.0.1:submission", "2525") to the host:port addresses smtpgate
// listens on; hosts are the inet_interfaces addresses ("" for all) used
// when the column has no host.
func listenAddrs(service string, hosts []string) ([]string, error) {
	host, port := "", service
	if i := strings.LastIndexByte(service, ':'); i >= 0 {
		host, port = strings.Trim(service[:i], "[]"), service[i+1:]
	}
	if p, ok := servicePorts[port]; ok {
		port = p
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return nil, fmt.Errorf("cannot translate service %q to a port", service)
	}
	if host != "" {
		return []string{net.JoinHostPort(host, port)}, nil
	}
	var out []string
	for _, h := range hosts {
		out = append(out, net.JoinHostPort(h, port))
	}
	return out, nil
}

// interfaceHosts translates inet_interfaces to listening hosts ("" is
// every address).
func interfaceHosts(value string) ([]string, error) {
	var out []string
	for _, w := range maincf.SplitList(value) {
		switch strings.ToLower(w) {
		case "all":
			return []string{""}, nil
		case "loopback-only", "localhost":
			out = append(out, "127.0.0.1")
		default:
			if strings.Contains(w, "$") {
				return nil, fmt.Errorf("cannot translate %q: write the addresses themselves", w)
			}
			out = append(out, strings.Trim(w, "[]"))
		}
	}
	if len(out) == 0 {
		return []string{""}, nil
	}
	return out, nil
}
