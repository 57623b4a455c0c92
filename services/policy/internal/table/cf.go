package table

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// cfParam is one "name = value" setting of a table's .cf file.
type cfParam struct {
	value string
	line  int
}

// cfFile is a table's configuration file (mysql_table(5),
// sqlite_table(5), ...) as Postfix's cfg_parser reads it: the main.cf
// syntax of "name = value" lines, with continuation lines that start
// with whitespace and #-comments, but no $name expansion. A later
// setting of a name overrides an earlier one, as in Postfix.
type cfFile struct {
	typ    string
	path   string
	params map[string]cfParam
}

// readCF reads and parses a .cf file, refusing names that known does not
// list: Postfix ignores them, smtpgate reports them with file:line so
// that a typo is not a silently missing setting.
func readCF(typ, path string, known []string) (*cfFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("table %s:%s: %w", typ, path, err)
	}
	return parseCF(typ, path, data, known)
}

// parseCF parses the text of a .cf file; see readCF.
func parseCF(typ, path string, data []byte, known []string) (*cfFile, error) {
	s := &source{typ: typ, file: path, data: data}
	lines, err := s.lines()
	if err != nil {
		return nil, err
	}
	f := &cfFile{typ: typ, path: path, params: make(map[string]cfParam, len(lines))}
	var errs []string
	for _, l := range lines {
		name, value, ok := strings.Cut(l.text, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		switch {
		case !ok:
			errs = append(errs, s.pos(l.line)+": missing '=' after attribute name")
			continue
		case name == "":
			errs = append(errs, s.pos(l.line)+": missing attribute name")
			continue
		}
		if !containsString(known, name) {
			errs = append(errs, fmt.Sprintf("%s: unknown %s parameter %q (known: %s)", s.pos(l.line), typ, name, strings.Join(known, ", ")))
			continue
		}
		f.params[name] = cfParam{value: value, line: l.line}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("table %s:%s: %s", typ, path, strings.Join(errs, "; "))
	}
	return f, nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// pos is "file:line" of a setting, or the file alone when it is not set.
func (f *cfFile) pos(name string) string {
	if p, ok := f.params[name]; ok {
		return f.path + ":" + strconv.Itoa(p.line)
	}
	return f.path
}

// str returns a setting, or def when it is not set.
func (f *cfFile) str(name, def string) string {
	if p, ok := f.params[name]; ok {
		return p.value
	}
	return def
}

// isSet reports a setting given in the file.
func (f *cfFile) isSet(name string) bool {
	_, ok := f.params[name]
	return ok
}

// integer returns a whole-number setting (cfg_get_int: decimal, no
// sign check beyond min), or def when it is not set.
func (f *cfFile) integer(name string, def, min int) (int, error) {
	p, ok := f.params[name]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(p.value)
	if err != nil || n < min {
		return 0, fmt.Errorf("%s: %s = %q: want a whole number of at least %d", f.pos(name), name, p.value, min)
	}
	return n, nil
}

// errorf is an error about a setting, with its file:line.
func (f *cfFile) errorf(name, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %s", f.pos(name), name, fmt.Sprintf(format, args...))
}
