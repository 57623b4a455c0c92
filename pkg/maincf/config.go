package maincf

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Owner says which smtpgate service reads a parameter.
type Owner uint8

// The services.
const (
	Edge Owner = 1 << iota
	Policy
	Auth
	// All is for parameters every service reads.
	All = Edge | Policy | Auth
)

func (o Owner) String() string {
	var names []string
	for _, x := range []struct {
		o Owner
		n string
	}{{Edge, "edge"}, {Policy, "policy"}, {Auth, "auth"}} {
		if o&x.o != 0 {
			names = append(names, x.n)
		}
	}
	return strings.Join(names, "+")
}

// Def defines one parameter.
type Def struct {
	Name string
	// Default is the value when the configuration does not set it; it may
	// contain $name references, expanded at use as in Postfix.
	Default string
	Owner   Owner
	// Check validates the expanded value; nil accepts anything.
	Check func(value string) error
	// Secret values are redacted when the configuration is logged.
	Secret bool
	// Listener marks parameters that a master.cf -o override may set.
	Listener bool
	// Stress marks the parameters whose value may depend on ${stress}
	// (STRESS_README): the edge reads them twice, with stress empty and
	// with stress = yes, and uses the second while it is under stress.
	// Any other parameter whose value depends on $stress is an error.
	Stress bool
}

// StressParam is the parameter that is "yes" under stress and empty
// otherwise, as Postfix's master(8) passes it to smtpd with -o stress=
// (STRESS_README). The edge sets it; main.cf may not, and a master.cf -o
// stress=yes or -o stress= forces it on one listener.
const StressParam = "stress"

// UnderStress returns c as it reads under stress (stress = yes), unless
// an -o override already forces stress one way.
func (c *Config) UnderStress() *Config {
	if _, forced := c.over[StressParam]; forced {
		return c
	}
	return c.WithOverrides([]Param{{Name: StressParam, Value: "yes"}})
}

// StressForced reports whether an -o override sets stress (on or off).
func (c *Config) StressForced() bool {
	_, forced := c.over[StressParam]
	return forced
}

// Catalogue is the set of parameters smtpgate knows.
type Catalogue struct {
	defs map[string]Def
}

// NewCatalogue builds a catalogue; a name defined twice is a programming
// error and panics.
func NewCatalogue(defs ...Def) *Catalogue {
	c := &Catalogue{defs: make(map[string]Def, len(defs))}
	for _, d := range defs {
		if _, dup := c.defs[d.Name]; dup {
			panic("maincf: parameter defined twice: " + d.Name)
		}
		c.defs[d.Name] = d
	}
	return c
}

// Def returns the definition of name.
func (c *Catalogue) Def(name string) (Def, bool) {
	d, ok := c.defs[name]
	return d, ok
}

// Names returns every parameter name, sorted.
func (c *Catalogue) Names() []string {
	out := make([]string, 0, len(c.defs))
	for n := range c.defs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Config is a main.cf seen through the catalogue, optionally with a layer
// of master.cf -o overrides on top. It is immutable.
type Config struct {
	cat  *Catalogue
	file *File
	// dir is the configuration directory; relative paths resolve against it.
	dir  string
	over map[string]Param
	// classes are the user-defined restriction class names
	// (smtpd_restriction_classes), which are parameters too.
	classes map[string]bool
}

// New returns the view of file through cat; dir is the directory relative
// paths are resolved against.
func New(cat *Catalogue, file *File, dir string) *Config {
	c := &Config{cat: cat, file: file, dir: dir}
	c.classes = map[string]bool{}
	for _, n := range c.List("smtpd_restriction_classes") {
		c.classes[n] = true
	}
	return c
}

// Dir is the configuration directory.
func (c *Config) Dir() string { return c.dir }

// Catalogue returns the catalogue behind c.
func (c *Config) Catalogue() *Catalogue { return c.cat }

// WithOverrides returns c with the -o settings of a master.cf service on top.
func (c *Config) WithOverrides(over []Param) *Config {
	n := *c
	n.over = make(map[string]Param, len(c.over)+len(over))
	for k, v := range c.over {
		n.over[k] = v
	}
	for _, p := range over {
		n.over[p.Name] = p
	}
	n.classes = map[string]bool{}
	for _, name := range n.List("smtpd_restriction_classes") {
		n.classes[name] = true
	}
	return &n
}

// IsClass reports whether name is a restriction class (smtpd_restriction_classes).
func (c *Config) IsClass(name string) bool { return c.classes[name] }

// raw returns the unexpanded value of name and where it was set.
func (c *Config) raw(name string) (string, Pos, bool) {
	if p, ok := c.over[name]; ok {
		return p.Value, p.Pos, true
	}
	if c.file != nil {
		if p, ok := c.file.Lookup(name); ok {
			return p.Value, p.Pos, true
		}
	}
	if d, ok := c.cat.Def(name); ok {
		return d.Default, Pos{}, true
	}
	return "", Pos{}, false
}

// Pos returns where name was set; the zero Pos means the default.
func (c *Config) Pos(name string) Pos {
	_, p, _ := c.raw(name)
	return p
}

// IsSet reports whether the configuration (not the default) sets name.
func (c *Config) IsSet(name string) bool {
	return !c.Pos(name).isZero()
}

func (p Pos) isZero() bool { return p.File == "" }

// Get returns the expanded value of name. Unknown names and unresolvable
// references expand to the empty string; Validate reports them.
func (c *Config) Get(name string) string {
	v, _ := c.Expand(name)
	return v
}

// Expand returns the expanded value of name or an error naming the first
// problem (undefined parameter, loop, bad syntax).
func (c *Config) Expand(name string) (string, error) {
	return c.expandName(name, nil)
}

func (c *Config) expandName(name string, stack []string) (string, error) {
	if slices.Contains(stack, name) {
		return "", fmt.Errorf("parameter $%s refers to itself (%s)", name, strings.Join(append(stack, name), " -> "))
	}
	v, _, ok := c.raw(name)
	if !ok {
		return "", fmt.Errorf("undefined parameter $%s", name)
	}
	return c.expandValue(v, append(stack, name))
}

// ExpandString expands $name references in s.
func (c *Config) ExpandString(s string) (string, error) { return c.expandValue(s, nil) }

// expandValue implements $name, ${name}, $(name), ${name?text},
// ${name:text} and ${name?{text1}:{text2}} (postconf(5)).
func (c *Config) expandValue(v string, stack []string) (string, error) {
	if !strings.Contains(v, "$") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '$' || i+1 == len(v) {
			b.WriteByte(v[i])
			continue
		}
		next := v[i+1]
		switch {
		case next == '{' || next == '(':
			closer := byte('}')
			if next == '(' {
				closer = ')'
			}
			end := matching(v, i+1, next, closer)
			if end < 0 {
				return "", fmt.Errorf("missing %q in %q", closer, v[i:])
			}
			out, err := c.expandBraced(v[i+2:end], stack)
			if err != nil {
				return "", err
			}
			b.WriteString(out)
			i = end
		case isNameStart(next):
			j := i + 1
			for j < len(v) && isNameByte(v[j]) {
				j++
			}
			out, err := c.expandName(v[i+1:j], stack)
			if err != nil {
				return "", err
			}
			b.WriteString(out)
			i = j - 1
		default:
			b.WriteByte('$')
		}
	}
	return b.String(), nil
}

func (c *Config) expandBraced(inner string, stack []string) (string, error) {
	j := 0
	for j < len(inner) && isNameByte(inner[j]) {
		j++
	}
	name, rest := inner[:j], inner[j:]
	if name == "" {
		return "", fmt.Errorf("bad parameter reference ${%s}", inner)
	}
	if rest == "" {
		return c.expandName(name, stack)
	}
	val, err := c.expandName(name, stack)
	if err != nil {
		return "", err
	}
	op, text := rest[0], rest[1:]
	if op != '?' && op != ':' {
		return "", fmt.Errorf("bad parameter reference ${%s}", inner)
	}
	ifSet, ifEmpty, err := conditional(op, text)
	if err != nil {
		return "", fmt.Errorf("bad parameter reference ${%s}: %w", inner, err)
	}
	if val != "" {
		return c.expandValue(strings.TrimSpace(ifSet), stack)
	}
	return c.expandValue(strings.TrimSpace(ifEmpty), stack)
}

// conditional splits what follows the '?' or ':' of ${name?...} or
// ${name:...} into the text for a non-empty and for an empty value, as
// Postfix's mac_expand does: ${name?text} and ${name:text} take the rest
// as it is (so ${name?a:b} is "a:b" when name is set); ${name?{text1}},
// ${name?{text1}:{text2}}, ${name?{text1}:text2} and ${name:{text2}}
// take the braced text, with white space around the braces ignored
// (Postfix 3.0 and later); anything after the last braced text is an
// error.
func conditional(op byte, text string) (ifSet, ifEmpty string, err error) {
	rest := text
	braced := func() (payload string, ok bool, err error) {
		t := strings.TrimLeft(rest, " \t\r\n")
		if !strings.HasPrefix(t, "{") {
			return "", false, nil
		}
		e := matching(t, 0, '{', '}')
		if e < 0 {
			return "", false, fmt.Errorf("unbalanced {} in %q", t)
		}
		rest = strings.TrimLeft(t[e+1:], " \t\r\n")
		return t[1:e], true, nil
	}
	if op == '?' {
		p, ok, err := braced()
		if err != nil {
			return "", "", err
		}
		if !ok {
			return text, "", nil
		}
		ifSet = p
		if rest == "" {
			return ifSet, "", nil
		}
		if rest[0] != ':' {
			return "", "", fmt.Errorf("\":\" expected at %q", rest)
		}
		rest = rest[1:]
	}
	p, ok, err := braced()
	if err != nil {
		return "", "", err
	}
	if !ok {
		return ifSet, rest, nil
	}
	if rest != "" {
		return "", "", fmt.Errorf("unexpected input at %q", rest)
	}
	return ifSet, p, nil
}

// matching returns the index of the closer that matches the opener at s[i].
func matching(s string, i int, opener, closer byte) int {
	depth := 0
	for j := i; j < len(s); j++ {
		switch s[j] {
		case opener:
			depth++
		case closer:
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}

// isNameStart reports whether b can start a $name reference; "$1" stays
// literal.
func isNameStart(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '_'
}

func isNameByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_'
}

// List returns the expanded value of name split as a Postfix list.
func (c *Config) List(name string) []string { return SplitList(c.Get(name)) }

// Path returns the expanded value of name as a file path; relative paths are
// resolved against the configuration directory. Empty stays empty.
func (c *Config) Path(name string) string {
	v := c.Get(name)
	if v == "" || filepath.IsAbs(v) {
		return v
	}
	return filepath.Join(c.dir, v)
}

// Resolve resolves a path found inside a value against the configuration
// directory.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// Errorf returns an error that names the position and the parameter.
func (c *Config) Errorf(name, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %s", c.Pos(name), name, fmt.Sprintf(format, args...))
}

// Validate checks main.cf: every name it sets must be known (or a
// restriction class) and every parameter owner reads must expand and pass
// its check (defaults too, since $name references in them can point at
// broken settings). All problems are returned, joined. The -o overrides of
// master.cf are checked by ValidateServices.
func (c *Config) Validate(owner Owner) error {
	var errs []error
	if c.file != nil {
		for _, p := range c.file.Params() {
			if _, known := c.cat.Def(p.Name); !known && !c.classes[p.Name] {
				errs = append(errs, fmt.Errorf("%s: unknown parameter %q%s", p.Pos, p.Name, suggest(c.cat, p.Name)))
			}
			if p.Name == StressParam {
				errs = append(errs, fmt.Errorf("%s: %s: set by smtpgate-edge itself (yes under stress); force it on a listener with master.cf -o stress=yes or -o stress=", p.Pos, p.Name))
			}
		}
	}
	stressed := c.UnderStress()
	for _, name := range c.cat.Names() {
		d, _ := c.cat.Def(name)
		if d.Owner&owner == 0 {
			continue
		}
		v, err := c.Expand(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", c.Pos(name), name, err))
			continue
		}
		if err := stressDependent(d, v, stressed); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", c.Pos(name), name, err))
		}
		if d.Check != nil {
			if err := d.Check(v); err != nil {
				if d.Secret {
					v = "(value not shown)"
				}
				errs = append(errs, fmt.Errorf("%s: %s = %s: %w", c.Pos(name), name, v, err))
			}
		}
	}
	for name := range c.classes {
		if _, err := c.Expand(name); err != nil {
			errs = append(errs, fmt.Errorf("%s: restriction class %s: %w", c.Pos("smtpd_restriction_classes"), name, err))
		}
	}
	return errors.Join(errs...)
}

// stressDependent refuses a value v of d that changes under stress
// (stressed) unless d is one the edge reads both ways (Def.Stress), and
// checks the stress value of one that is.
func stressDependent(d Def, v string, stressed *Config) error {
	if d.Name == StressParam {
		return nil
	}
	sv, err := stressed.Expand(d.Name)
	switch {
	case err != nil || sv == v:
		return nil
	case !d.Stress:
		return fmt.Errorf("its value depends on $%s, which smtpgate applies only to %s", StressParam, strings.Join(StressParams(stressed.cat), ", "))
	case d.Check != nil:
		if err := d.Check(sv); err != nil {
			return fmt.Errorf("under stress: %w", err)
		}
	}
	return nil
}

// StressParams lists the parameters whose value may depend on ${stress}.
func StressParams(cat *Catalogue) []string {
	var out []string
	for _, n := range cat.Names() {
		if d, _ := cat.Def(n); d.Stress {
			out = append(out, n)
		}
	}
	return out
}

// suggest names a known parameter close to an unknown one.
func suggest(cat *Catalogue, name string) string {
	best, bestD := "", 3
	for _, n := range cat.Names() {
		if d := EditDistance(n, name); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// EditDistance is the Levenshtein distance of a and b (for "did you
// mean" hints).
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Effective returns every parameter owner reads with its expanded value, for
// logging the effective configuration; secret values are redacted.
func (c *Config) Effective(owner Owner) []Param {
	var out []Param
	for _, name := range c.cat.Names() {
		d, _ := c.cat.Def(name)
		if d.Owner&owner == 0 {
			continue
		}
		v := c.Get(name)
		if d.Secret && v != "" {
			v = "(redacted)"
		}
		out = append(out, Param{Name: name, Value: v, Pos: c.Pos(name)})
	}
	return out
}

// SplitList splits a Postfix list value: elements are separated by commas
// and/or white space, and a "{ ... }" group is one element (its braces
// kept), so "check_policy_service { inet:host:port, timeout=10s }" and
// "inline:{ a=b, c=d }" stay whole.
func SplitList(s string) []string {
	var out []string
	var cur strings.Builder
	depth := 0
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, cur.String())
			cur.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '{':
			depth++
			cur.WriteByte(ch)
		case ch == '}' && depth > 0:
			depth--
			cur.WriteByte(ch)
		case depth == 0 && (ch == ',' || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'):
			flush()
		default:
			cur.WriteByte(ch)
		}
	}
	flush()
	// A "{ ... }" group written apart from its name belongs to the element
	// before it: "check_policy_service { inet:h:p }".
	merged := out[:0]
	for _, e := range out {
		if strings.HasPrefix(e, "{") && len(merged) > 0 && !strings.HasSuffix(merged[len(merged)-1], "}") {
			merged[len(merged)-1] += " " + e
			continue
		}
		merged = append(merged, e)
	}
	return merged
}
