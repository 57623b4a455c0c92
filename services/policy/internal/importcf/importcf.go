// Package importcf reads an existing Postfix configuration (main.cf and
// master.cf) and says, setting by setting, what smtpgate does with it:
// takes it as written (or translated: relayhost as smtpgate_next_hop),
// ignores it (it does not matter to an SMTP front door without a queue),
// takes it but behaves differently (where the mail goes, who is a valid
// recipient, a default smtpgate changes: delivery.go, sasl.go,
// defaults.go say exactly what), cannot honour it (it changes what
// Postfix's smtpd does and smtpgate does not implement it), or does not
// know it (not a Postfix 3.7 parameter: a typo). Postfix's defaults count
// as settings where they behave differently. It can then write the
// smtpgate configuration made of what was taken, with copies of the
// lookup tables it names (files.go).
//
// A setting smtpgate reads is taken only if smtpgate accepts its value:
// the imported configuration is checked the way smtpgate-policy check
// does (names, values, $name references, and the restriction lists
// compiled with package restriction), and every setting smtpgate
// complains about moves to "cannot honour" with the exact complaints.
//
// Trust: the Postfix files are the operator's and trusted; lookup tables
// they name are opened (read only) to compile the restriction lists.
// Postfix itself is not needed: its parameter names are embedded
// (postfix_params.txt).
package importcf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/resolver"
	"github.com/smtpgate/smtpgate/services/policy/internal/restriction"
)

// Setting is one setting of the Postfix configuration and smtpgate's
// verdict on it. A master.cf service line is a setting without a Name.
type Setting struct {
	// Pos is where it is, with the file's base name ("main.cf:12").
	Pos maincf.Pos
	// Service is the master.cf service of a -o override or service line;
	// "" for main.cf.
	Service string
	Name    string
	Value   string
	Verdict Verdict
	Reason  string
	// Errors are smtpgate's own complaints about a value it reads, as
	// smtpgate-policy check would print them.
	Errors []string
	// Default: the setting is not in main.cf; Value is Postfix's
	// default, which is what Postfix does (Pos has no line).
	Default bool

	// lines are the physical main.cf lines as written.
	lines []string
	// mapped: what is written is out (possibly nothing), not lines.
	mapped bool
	out    []string
	// keep: written although the verdict is BehavesDifferently.
	keep bool
}

// writes reports whether the setting goes into the written configuration.
func (s *Setting) writes() bool {
	if s.Default || s.Verdict != Taken && !(s.Verdict == BehavesDifferently && s.keep) {
		return false
	}
	return !s.mapped || len(s.out) > 0
}

// written returns the main.cf lines written for a setting that writes().
func (s *Setting) written() []string {
	if s.mapped {
		return s.out
	}
	return s.lines
}

// Report is the outcome of Import.
type Report struct {
	// MainPath and MasterPath are the files read; MasterPath is "" when
	// there was no master.cf.
	MainPath, MasterPath string
	// Settings are in file order, main.cf first.
	Settings []*Setting
	// Problems are smtpgate's complaints that no single setting is to
	// blame for; each counts as "cannot honour".
	Problems []string

	dir       string
	mainLines int
	// services are the names of every master.cf service.
	services []string
	// commands are the commands of master.cf's services that are not
	// inet listeners (the transports), by name.
	commands  map[string]string
	listeners []*listener
}

// listener is an smtpd listener of master.cf, translated.
type listener struct {
	entry *Setting
	// addrs are smtpgate's service columns (host:port).
	addrs     []string
	overrides []*Setting
	// all are every -o override, whatever its verdict.
	all []*Setting
	// columns are Postfix's private..maxproc columns.
	columns []string
}

// Options say what to import.
type Options struct {
	// Main is the path of Postfix's main.cf.
	Main string
	// Master is the path of master.cf; "" reads the one beside Main if
	// there is one.
	Master string
}

// Import reads the Postfix configuration and judges every setting.
// Errors are for files that cannot be read or parsed.
func Import(opts Options) (*Report, error) {
	data, err := os.ReadFile(opts.Main)
	if err != nil {
		return nil, fmt.Errorf("read main.cf: %w", err)
	}
	r := &Report{MainPath: opts.Main, dir: filepath.Dir(opts.Main)}
	if err := r.readMain(data); err != nil {
		return nil, err
	}
	master := opts.Master
	if master == "" {
		beside := filepath.Join(r.dir, "master.cf")
		if _, err := os.Stat(beside); err == nil {
			master = beside
		}
	}
	if master != "" {
		data, err := os.ReadFile(master)
		if err != nil {
			return nil, fmt.Errorf("read master.cf: %w", err)
		}
		r.MasterPath = master
		if err := r.readMaster(data); err != nil {
			return nil, err
		}
	}
	r.userDefined()
	r.perTransport()
	r.settle()
	r.delivery()
	r.sasl()
	r.defaults()
	r.protocols()
	return r, nil
}

// readMain judges each main.cf setting by its name.
func (r *Report) readMain(data []byte) error {
	name := filepath.Base(r.MainPath)
	f, err := maincf.Parse(name, strings.NewReader(string(data)))
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	r.mainLines = len(lines)
	// A setting's physical lines run to the next setting, without the
	// comments and blank lines that end them.
	var starts []int
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if t != "" && !strings.HasPrefix(t, "#") && l[0] != ' ' && l[0] != '\t' {
			starts = append(starts, i)
		}
	}
	classes := map[string]bool{}
	if p, ok := f.Lookup("smtpd_restriction_classes"); ok {
		for _, c := range maincf.SplitList(p.Value) {
			classes[c] = true
		}
	}
	_, hasNetworks := f.Lookup("mynetworks")
	for k, start := range starts {
		end := len(lines)
		if k+1 < len(starts) {
			end = starts[k+1]
		}
		for end > start+1 {
			t := strings.TrimSpace(lines[end-1])
			if t != "" && !strings.HasPrefix(t, "#") {
				break
			}
			end--
		}
		pname, _, _ := strings.Cut(lines[start], "=")
		pname = strings.TrimSpace(pname)
		p, _ := f.Lookup(pname)
		s := &Setting{Pos: maincf.Pos{File: name, Line: start + 1}, Name: pname, Value: p.Value, lines: lines[start:end]}
		switch {
		case p.Pos.Line != start+1:
			s.Verdict, s.Reason = Ignored, fmt.Sprintf("set again at %s, where the last setting wins", p.Pos)
			s.Value = settingValue(lines[start:end])
		case pname == "mynetworks_style" && hasNetworks:
			s.Verdict, s.Reason = Ignored, "mynetworks is set, which overrides it"
		case classes[pname] && !IsPostfixParam(pname):
			s.Verdict, s.Reason = Taken, "restriction class (smtpd_restriction_classes)"
		default:
			s.Verdict, s.Reason = Classify(pname)
		}
		r.Settings = append(r.Settings, s)
	}
	return nil
}

// settingValue is the value of an earlier, overridden setting.
func settingValue(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(t)
		}
	}
	_, v, _ := strings.Cut(b.String(), "=")
	return strings.TrimSpace(v)
}

var refPattern = regexp.MustCompile(`\$(?:\{|\()?([A-Za-z0-9_]+)`)

// userDefined moves the unknown main.cf names that other settings use as
// $name to "cannot honour": they are the operator's own parameters, not
// typos, but smtpgate refuses names it does not know.
func (r *Report) userDefined() {
	users := map[string][]string{}
	for _, s := range r.Settings {
		if s.Name == "" {
			continue
		}
		for _, m := range refPattern.FindAllStringSubmatch(s.Value, -1) {
			if !slices.Contains(users[m[1]], s.Name) {
				users[m[1]] = append(users[m[1]], s.Name)
			}
		}
	}
	for _, s := range r.Settings {
		if s.Service == "" && s.Verdict == Unknown && len(users[s.Name]) > 0 {
			s.Verdict = CannotHonour
			s.Reason = fmt.Sprintf("user-defined parameter (used as $%s in %s): smtpgate refuses names it does not know; write the value in place",
				s.Name, strings.Join(users[s.Name], ", "))
		}
	}
}

// perTransport moves the unknown main.cf names that are Postfix's
// per-transport settings of a master.cf service (any service when there is
// no master.cf) to "ignored".
func (r *Report) perTransport() {
	for _, s := range r.Settings {
		if s.Service != "" || s.Verdict != Unknown {
			continue
		}
		if t, ok := transportParam(s.Name); ok && (r.MasterPath == "" || slices.Contains(r.services, t)) {
			s.Verdict, s.Reason = Ignored, fmt.Sprintf("%s (per-transport setting of %s)", reasonQueue, t)
		}
	}
}

// lookup returns the main.cf setting of name that wins.
func (r *Report) lookup(name string) *Setting {
	var found *Setting
	for _, s := range r.Settings {
		if s.Service == "" && s.Name == name {
			found = s
		}
	}
	return found
}

// readMaster judges master.cf: smtpd listeners with their -o overrides;
// everything else is ignored.
func (r *Report) readMaster(data []byte) error {
	file := filepath.Base(r.MasterPath)
	entries, err := parsePostfixMaster(file, data)
	if err != nil {
		return err
	}
	hosts := []string{""}
	if s := r.lookup("inet_interfaces"); s != nil {
		h, err := interfaceHosts(s.Value)
		switch {
		case err != nil:
			s.Verdict, s.Reason = CannotHonour, err.Error()
		case !slices.Equal(h, []string{""}):
			hosts = h
			s.Reason = "applied to the listeners of the translated master.cf"
		}
	}
	// With postscreen in front, the smtpd behind it is the "smtpd pass"
	// service: its overrides are those of the postscreen listener.
	var passOverrides []*Setting
	var screened []*listener
	r.commands = map[string]string{}
	for _, e := range entries {
		r.services = append(r.services, e.name())
		if e.typ() != "inet" {
			r.commands[e.name()] = e.command()
		}
		line := &Setting{Pos: e.pos, Service: e.name(), Value: strings.Join(e.fields, " ")}
		r.Settings = append(r.Settings, line)
		var l *listener
		role := otherService
		switch {
		case e.typ() == "inet" && e.command() == "smtpd":
			line.Verdict, line.Reason = Taken, "smtpd listener"
			l, role = &listener{entry: line, columns: e.fields[2:7]}, smtpdService
		case e.typ() == "inet" && e.command() == "postscreen":
			line.Verdict, line.Reason = CannotHonour, "postscreen is not implemented: translated as a plain smtpd listener"
			l, role = &listener{entry: line, columns: e.fields[2:7]}, postscreenService
			screened = append(screened, l)
		case e.typ() == "pass" && e.command() == "smtpd":
			line.Verdict, line.Reason = Ignored, "smtpd behind postscreen: its overrides go to the postscreen listener"
			role = passService
		default:
			line.Verdict, line.Reason = Ignored, fmt.Sprintf("not an SMTP listener (%s %s)", e.typ(), e.command())
		}
		if l != nil {
			addrs, err := listenAddrs(e.name(), hosts)
			if err != nil {
				line.Verdict, line.Reason = CannotHonour, err.Error()
				l, role = nil, otherService
			} else {
				l.addrs = addrs
				r.listeners = append(r.listeners, l)
			}
		}
		for _, a := range e.args {
			if role == otherService && a.name == "" {
				continue // a command's own arguments (pipe's argv=...): the service line says it is ignored
			}
			s := override(file, e, a, role)
			r.Settings = append(r.Settings, s)
			if l != nil {
				l.all = append(l.all, s)
			}
			switch {
			case s.Verdict != Taken:
			case role == passService:
				passOverrides = append(passOverrides, s)
			case l != nil:
				l.overrides = append(l.overrides, s)
			}
		}
	}
	for _, l := range screened {
		l.overrides = append(l.overrides, passOverrides...)
	}
	if len(screened) == 0 {
		for _, s := range passOverrides {
			s.Verdict, s.Reason = Ignored, "no postscreen listener hands connections to this smtpd"
		}
	}
	return nil
}

// serviceRole is what a master.cf service is to smtpgate.
type serviceRole int

const (
	otherService serviceRole = iota
	smtpdService
	postscreenService
	passService
)

// override judges one master.cf argument of e.
func override(file string, e masterEntry, a masterArg, role serviceRole) *Setting {
	s := &Setting{Pos: maincf.Pos{File: file, Line: a.line}, Service: e.name(), Name: a.name, Value: a.value}
	switch {
	case a.name == "":
		s.Value = a.text
		s.Verdict, s.Reason = Ignored, "command option: smtpgate reads only -o overrides"
		return s
	case role == otherService:
		s.Verdict, s.Reason = Ignored, "override of a service that is not an SMTP listener"
		return s
	}
	s.Verdict, s.Reason = Classify(a.name)
	if d, ok := catalogue().Def(a.name); ok && !d.Listener {
		s.Verdict, s.Reason = CannotHonour, "smtpgate cannot set it per listener, only in main.cf"
	}
	if role == postscreenService && s.Verdict == Taken {
		s.Verdict, s.Reason = Ignored, "override of postscreen, not of smtpd"
	}
	return s
}

// settle checks what was taken the way smtpgate-policy check will, and
// moves every setting smtpgate complains about to "cannot honour", until
// what is left is accepted.
func (r *Report) settle() {
	for range len(r.Settings) + 1 {
		var left []string
		moved := false
		for _, e := range r.check() {
			s := r.blame(e)
			if s == nil {
				left = append(left, e)
				continue
			}
			if s.Verdict == Taken {
				s.Verdict, s.Reason, moved = CannotHonour, "smtpgate refuses it:", true
			}
			s.Errors = append(s.Errors, e)
		}
		r.Problems = left
		if !moved {
			return
		}
	}
}

// view is the smtpgate configuration made of what is taken, with the
// positions of the Postfix files.
func (r *Report) view() (*maincf.Config, []maincf.Service, error) {
	lines := make([]string, r.mainLines)
	for _, s := range r.Settings {
		if s.Service == "" && s.writes() && len(s.written()) <= len(s.lines) {
			copy(lines[s.Pos.Line-1:], s.written())
		}
	}
	f, err := maincf.Parse(filepath.Base(r.MainPath), strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		return nil, nil, err
	}
	cfg := maincf.New(catalogue(), f, r.dir)
	var services []maincf.Service
	for _, l := range r.listeners {
		svc := maincf.Service{Name: l.entry.Service, Type: "inet", Command: "smtpd", Pos: l.entry.Pos}
		for _, o := range l.overrides {
			if o.writes() {
				svc.Overrides = append(svc.Overrides, maincf.Param{Name: o.Name, Value: o.Value, Pos: o.Pos})
			}
		}
		services = append(services, svc)
	}
	return cfg, services, nil
}

// check returns smtpgate's complaints about the taken configuration.
func (r *Report) check() []string {
	cfg, services, err := r.view()
	if err != nil {
		return []string{err.Error()}
	}
	errs := []error{cfg.Validate(maincf.All), maincf.ValidateServices(cfg, services, maincf.All)}
	for _, svc := range services {
		lc := cfg.WithOverrides(svc.Overrides)
		for _, o := range svc.Overrides {
			if d, _ := cfg.Catalogue().Def(o.Name); d.Check != nil {
				continue // ValidateServices expanded it
			}
			if _, err := lc.Expand(o.Name); err != nil {
				errs = append(errs, fmt.Errorf("%s: service %s: -o %s: %w", o.Pos, svc.Name, o.Name, err))
			}
		}
	}
	// DNS restrictions need a resolver to compile; it is never asked
	// anything while compiling.
	opts := restriction.Options{}
	if dns, err := resolver.New(resolver.Config{Servers: []string{"127.0.0.1:53"}}); err == nil {
		opts.DNS = dns
	}
	_, err = restriction.CompileWith(cfg, opts)
	errs = append(errs, err)
	if err == nil {
		for _, svc := range services {
			if len(svc.Overrides) == 0 {
				continue
			}
			if _, err := restriction.CompileWith(cfg.WithOverrides(svc.Overrides), opts); err != nil {
				for _, e := range maincf.Flatten(err) {
					errs = append(errs, fmt.Errorf("service %s: %w", svc.Name, e))
				}
			}
		}
	}
	var out []string
	for _, e := range maincf.Flatten(errors.Join(errs...)) {
		if !slices.Contains(out, e.Error()) {
			out = append(out, e.Error())
		}
	}
	return out
}

// blame finds the taken setting a complaint is about: the one at the
// position it starts with (naming it, for master.cf lines that hold
// several), else one whose value names the lookup table it cites.
func (r *Report) blame(e string) *Setting {
	text := e
	if rest, ok := strings.CutPrefix(text, "service "); ok {
		if _, after, ok := strings.Cut(rest, ": "); ok {
			text = after
		}
	}
	var best *Setting
	bestAt := len(text) + 1
	for _, s := range r.Settings {
		if s.Verdict != Taken || s.Name == "" || !strings.HasPrefix(text, s.Pos.String()+": ") {
			continue
		}
		if s.Service == "" {
			return s
		}
		if i := wordIndex(text, s.Name); i >= 0 && i < bestAt {
			best, bestAt = s, i
		}
	}
	if best != nil {
		return best
	}
	for _, s := range r.Settings {
		if s.Verdict != Taken || s.Name == "" {
			continue
		}
		for _, w := range maincf.SplitList(s.Value) {
			if strings.Contains(w, ":") && strings.Contains(text, w) {
				return s
			}
		}
	}
	return nil
}

// wordIndex finds name in text as a whole word.
func wordIndex(text, name string) int {
	for off := 0; ; {
		i := strings.Index(text[off:], name)
		if i < 0 {
			return -1
		}
		i += off
		end := i + len(name)
		if (i == 0 || !isNameByte(text[i-1])) && (end == len(text) || !isNameByte(text[end])) {
			return i
		}
		off = i + 1
	}
}

func isNameByte(b byte) bool {
	return b == '_' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

// Count returns how many settings got verdict v (Problems count as
// CannotHonour).
func (r *Report) Count(v Verdict) int {
	n := 0
	for _, s := range r.Settings {
		if s.Verdict == v {
			n++
		}
	}
	if v == CannotHonour {
		n += len(r.Problems)
	}
	return n
}

// OK reports whether smtpgate can take the configuration without changing
// what happens to mail: nothing that behaves differently, nothing it
// cannot honour and nothing unknown.
func (r *Report) OK() bool {
	return r.Count(BehavesDifferently) == 0 && r.Count(CannotHonour) == 0 && r.Count(Unknown) == 0
}
