package importcf

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// WriteText writes the report as plain text, grouped by verdict, one line
// per setting: "main.cf:LINE: name = value — reason", with smtpgate's
// exact complaints indented below the setting they are about.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	files := r.MainPath
	if r.MasterPath != "" {
		files += ", " + r.MasterPath
	}
	fmt.Fprintf(bw, "import of %s\n", files)
	for _, v := range []Verdict{Taken, Ignored, BehavesDifferently, CannotHonour, Unknown} {
		n := r.Count(v)
		if n == 0 {
			continue
		}
		fmt.Fprintf(bw, "\n%s (%d):\n", v, n)
		for _, s := range r.Settings {
			if s.Verdict != v {
				continue
			}
			fmt.Fprintf(bw, "  %s — %s\n", s.label(), s.Reason)
			for _, e := range s.Errors {
				fmt.Fprintf(bw, "      %s\n", e)
			}
		}
		if v == CannotHonour {
			for _, p := range r.Problems {
				fmt.Fprintf(bw, "  %s\n", p)
			}
		}
	}
	if r.OK() {
		fmt.Fprintf(bw, "\nsmtpgate can take this configuration.\n")
	} else {
		fmt.Fprintf(bw, "\nsmtpgate cannot take this configuration as it is: %d behave differently, %d cannot honour, %d unknown.\n",
			r.Count(BehavesDifferently), r.Count(CannotHonour), r.Count(Unknown))
	}
	return bw.Flush()
}

// label is "main.cf:12: name = value", "master.cf:20: name = value
// (service submission)" or, for a service line, "master.cf:19: service
// columns...".
func (s *Setting) label() string {
	switch {
	case s.Default && s.Value == "":
		return fmt.Sprintf("%s: %s not set (Postfix's default: empty)", s.Pos.File, s.Name)
	case s.Default:
		return fmt.Sprintf("%s: %s not set (Postfix's default: %s)", s.Pos.File, s.Name, s.Value)
	case s.Name == "":
		return fmt.Sprintf("%s: %s", s.Pos, s.Value)
	case s.Service != "":
		return fmt.Sprintf("%s: %s = %s (service %s)", s.Pos, s.Name, s.Value, s.Service)
	}
	return fmt.Sprintf("%s: %s = %s", s.Pos, s.Name, s.Value)
}

// WriteConfig writes dir/main.cf with the taken main.cf settings, as
// written (relayhost or a transport as smtpgate_next_hop), and
// dir/master.cf with the smtpd listeners in smtpgate's form (host:port
// service column, only the taken -o overrides). Without a master.cf, the
// listener is Postfix's default: port 25 on every address. The lookup
// tables the written settings name are copied into dir and named
// relatively; certificates and keys are named by absolute path, not
// copied (files.go says why).
func (r *Report) WriteConfig(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := newCopier(r, dir)
	var mb strings.Builder
	fmt.Fprintf(&mb, "# smtpgate main.cf written by smtpgate-policy import from %s:\n", r.MainPath)
	fmt.Fprintf(&mb, "# the settings smtpgate takes. Relative paths are relative to this\n")
	fmt.Fprintf(&mb, "# directory: the lookup tables named here were copied into it.\n")
	fmt.Fprintf(&mb, "# Certificates and keys were not copied: they are named where they are.\n")
	for _, s := range r.Settings {
		if s.Service != "" || !s.writes() {
			continue
		}
		fmt.Fprintf(&mb, "\n# %s", s.Pos)
		if s.mapped {
			fmt.Fprintf(&mb, ": %s = %s", s.Name, s.Value)
		}
		if s.Verdict == BehavesDifferently {
			fmt.Fprintf(&mb, " (behaves differently: see the import report)")
		}
		lines := s.written()
		if !s.mapped {
			v, err := files.rewrite(s.Name, s.Value)
			if err != nil {
				return fmt.Errorf("%s: %w", s.Pos, err)
			}
			if v != s.Value {
				lines = []string{s.Name + " = " + v}
			}
		}
		fmt.Fprintf(&mb, "\n%s\n", strings.Join(lines, "\n"))
	}
	var sb strings.Builder
	from := r.MasterPath
	if from == "" {
		from = "no master.cf (Postfix's default smtp listener)"
	}
	fmt.Fprintf(&sb, "# smtpgate listeners written by smtpgate-policy import from %s.\n", from)
	fmt.Fprintf(&sb, "# service type private unpriv chroot wakeup maxproc command\n")
	listeners := r.listeners
	if r.MasterPath == "" {
		hosts, err := interfaceHosts("all")
		if s := r.lookup("inet_interfaces"); s != nil && s.Verdict != CannotHonour {
			hosts, err = interfaceHosts(s.Value)
		}
		if err != nil {
			return err
		}
		addrs, _ := listenAddrs("smtp", hosts)
		listeners = []*listener{{entry: &Setting{Service: "smtp"}, addrs: addrs, columns: []string{"n", "-", "n", "-", "-"}}}
	}
	for _, l := range listeners {
		if l.entry.Pos.Line > 0 {
			fmt.Fprintf(&sb, "\n# %s: %s\n", l.entry.Pos, l.entry.Value)
		} else {
			sb.WriteString("\n")
		}
		for _, a := range l.addrs {
			fmt.Fprintf(&sb, "%s inet %s smtpd\n", a, strings.Join(l.columns, " "))
			for _, o := range l.overrides {
				if !o.writes() {
					continue
				}
				v, err := files.rewrite(o.Name, o.Value)
				if err != nil {
					return fmt.Errorf("%s: %w", o.Pos, err)
				}
				if strings.ContainsAny(v, " \t") || v == "" {
					fmt.Fprintf(&sb, "  -o { %s = %s }\n", o.Name, v)
				} else {
					fmt.Fprintf(&sb, "  -o %s=%s\n", o.Name, v)
				}
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mb.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "master.cf"), []byte(sb.String()), 0o644)
}
