// Package maincf reads smtpgate's configuration, which uses the syntax and
// the parameter names of Postfix: main.cf (name = value, continuation lines,
// comments, $name expansion) and a master.cf-style table of listeners with
// -o overrides. Every parameter and every error carries its file:line.
//
// The syntax follows postconf(5) and master(5): a logical line starts with
// non-whitespace text, a line that starts with whitespace continues it, and
// lines whose first non-whitespace character is '#' are comments.
//
// It owns the syntax ($name and ${name?x:y} expansion, -o overrides, the
// value parsers and checks, file:line) and the parameters several services
// share (Shared); it knows no service's own parameters: each service
// defines them in its params package and joins the catalogues. The files
// are the operator's and trusted to say what the operator means, not to be
// well formed: every malformed line, unknown name and bad value is an
// error with its file:line, never a silent default.
package maincf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Pos is where a parameter was set.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string {
	if p.File == "" {
		return "(default)"
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// Param is one name = value setting.
type Param struct {
	Name  string
	Value string
	Pos   Pos
}

// File is a parsed main.cf. When a name is set twice, the last one wins, as
// in Postfix.
type File struct {
	Path   string
	params map[string]Param
	order  []string
}

// Lookup returns the setting of name, if the file sets it.
func (f *File) Lookup(name string) (Param, bool) {
	p, ok := f.params[name]
	return p, ok
}

// Params returns the settings in the order of first appearance.
func (f *File) Params() []Param {
	out := make([]Param, 0, len(f.order))
	for _, n := range f.order {
		out = append(out, f.params[n])
	}
	return out
}

// logicalLine is one logical line with the number of its first physical line.
type logicalLine struct {
	text string
	line int
}

// maxLogicalLine bounds a logical line so a broken file cannot exhaust memory.
const maxLogicalLine = 1 << 20

// readLogicalLines joins continuation lines and drops comments and blank lines.
func readLogicalLines(name string, r io.Reader) ([]logicalLine, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), maxLogicalLine)
	var out []logicalLine
	n := 0
	for sc.Scan() {
		n++
		raw := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.ContainsRune(raw, 0) {
			return nil, fmt.Errorf("%s:%d: NUL byte in line", name, n)
		}
		if raw[0] == ' ' || raw[0] == '\t' {
			if len(out) == 0 {
				return nil, fmt.Errorf("%s:%d: continuation line without a preceding parameter or service", name, n)
			}
			last := &out[len(out)-1]
			if len(last.text)+len(trimmed) > maxLogicalLine {
				return nil, fmt.Errorf("%s:%d: logical line longer than %d bytes", name, last.line, maxLogicalLine)
			}
			last.text += " " + trimmed
			continue
		}
		out = append(out, logicalLine{text: strings.TrimRight(raw, " \t"), line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, n+1, err)
	}
	return out, nil
}

// validName reports whether s can be a parameter name.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '/') {
			return false
		}
	}
	return true
}

// splitSetting splits "name = value".
func splitSetting(s string) (name, value string, err error) {
	i := strings.IndexByte(s, '=')
	if i < 0 {
		return "", "", errors.New("missing '=' after parameter name")
	}
	name = strings.TrimSpace(s[:i])
	if !validName(name) {
		return "", "", fmt.Errorf("bad parameter name %q", name)
	}
	return name, strings.TrimSpace(s[i+1:]), nil
}

// Parse reads a main.cf from r; name is used in positions and errors.
func Parse(name string, r io.Reader) (*File, error) {
	lines, err := readLogicalLines(name, r)
	if err != nil {
		return nil, err
	}
	f := &File{Path: name, params: map[string]Param{}}
	for _, l := range lines {
		n, v, err := splitSetting(l.text)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, l.line, err)
		}
		if _, dup := f.params[n]; !dup {
			f.order = append(f.order, n)
		}
		f.params[n] = Param{Name: n, Value: v, Pos: Pos{File: name, Line: l.line}}
	}
	return f, nil
}

// ParseFile reads the main.cf at path.
func ParseFile(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read main.cf: %w", err)
	}
	defer fh.Close()
	return Parse(path, fh)
}
