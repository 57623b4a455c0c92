package maincf

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Service is one line of a master.cf-style listener table:
//
//	service type private unpriv chroot wakeup maxproc command [-o name=value ...]
//
// smtpgate reads only inet services whose command is smtpd; the columns it
// does not use are kept so that a line pasted from Postfix reads the same.
type Service struct {
	// Name is the service column: [host:]port, or a service name such as
	// "smtp" or "submission". It names the listener in logs and in policy
	// requests.
	Name    string
	Type    string
	Private string
	Unpriv  string
	Chroot  string
	Wakeup  string
	MaxProc string
	Command string
	// Overrides are the -o name=value settings, in order.
	Overrides []Param
	Pos       Pos
}

// ParseMaster reads a master.cf from r; name is used in positions and errors.
func ParseMaster(name string, r io.Reader) ([]Service, error) {
	lines, err := readLogicalLines(name, r)
	if err != nil {
		return nil, err
	}
	var out []Service
	seen := map[string]Pos{}
	for _, l := range lines {
		pos := Pos{File: name, Line: l.line}
		s, err := parseService(l.text, pos)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pos, err)
		}
		key := s.Name + "/" + s.Type
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("%s: duplicate service %s (first defined at %s)", pos, key, prev)
		}
		seen[key] = pos
		out = append(out, s)
	}
	return out, nil
}

// ParseMasterFile reads the master.cf at path.
func ParseMasterFile(path string) ([]Service, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read master.cf: %w", err)
	}
	defer fh.Close()
	return ParseMaster(path, fh)
}

func parseService(text string, pos Pos) (Service, error) {
	fields, err := masterFields(text)
	if err != nil {
		return Service{}, err
	}
	if len(fields) < 8 {
		return Service{}, fmt.Errorf("want 8 fields (service type private unpriv chroot wakeup maxproc command), got %d", len(fields))
	}
	s := Service{
		Name: fields[0], Type: fields[1], Private: fields[2], Unpriv: fields[3],
		Chroot: fields[4], Wakeup: fields[5], MaxProc: fields[6], Command: fields[7], Pos: pos,
	}
	if s.Type != "inet" {
		return Service{}, fmt.Errorf("service %s: type %q is not supported: smtpgate listens with inet services only", s.Name, s.Type)
	}
	if s.Command != "smtpd" {
		return Service{}, fmt.Errorf("service %s: command %q is not supported: smtpgate runs smtpd services only", s.Name, s.Command)
	}
	args := fields[8:]
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-o":
			if i+1 >= len(args) {
				return Service{}, fmt.Errorf("service %s: -o without name=value", s.Name)
			}
			i++
			n, v, err := splitSetting(args[i])
			if err != nil {
				return Service{}, fmt.Errorf("service %s: -o %s: %w", s.Name, args[i], err)
			}
			s.Overrides = append(s.Overrides, Param{Name: n, Value: v, Pos: pos})
		default:
			return Service{}, fmt.Errorf("service %s: unsupported argument %q (only -o name=value)", s.Name, args[i])
		}
	}
	return s, nil
}

// masterFields splits a master.cf logical line on white space, keeping a
// "{ name = value }" group (Postfix 3.0 syntax) as one "name=value" field.
func masterFields(text string) ([]string, error) {
	var out []string
	for i := 0; i < len(text); {
		switch c := text[i]; {
		case c == ' ' || c == '\t':
			i++
		case c == '{':
			end := strings.IndexByte(text[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("missing '}' after %q", text[i:])
			}
			inner := strings.TrimSpace(text[i+1 : i+end])
			n, v, err := splitSetting(inner)
			if err != nil {
				return nil, fmt.Errorf("{ %s }: %w", inner, err)
			}
			out = append(out, n+"="+v)
			i += end + 1
		default:
			j := i
			for j < len(text) && text[j] != ' ' && text[j] != '\t' {
				j++
			}
			out = append(out, text[i:j])
			i = j
		}
	}
	return out, nil
}
