package maincf

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/smtpgate/smtpgate/pkg/redisclient"
)

// ParseBool reads a Postfix boolean: yes or no (case-insensitive), as
// postconf(5) defines them; true/false are accepted too.
func ParseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "yes", "true":
		return true, nil
	case "no", "false":
		return false, nil
	}
	return false, fmt.Errorf("want yes or no, got %q", v)
}

// ParseDuration reads a Postfix time value: a number with an optional unit
// s, m, h, d or w (seconds when none is given); "ms" is accepted too.
func ParseDuration(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	unit := time.Second
	num := v
	switch {
	case strings.HasSuffix(v, "ms"):
		unit, num = time.Millisecond, v[:len(v)-2]
	case strings.HasSuffix(v, "s"):
		num = v[:len(v)-1]
	case strings.HasSuffix(v, "m"):
		unit, num = time.Minute, v[:len(v)-1]
	case strings.HasSuffix(v, "h"):
		unit, num = time.Hour, v[:len(v)-1]
	case strings.HasSuffix(v, "d"):
		unit, num = 24*time.Hour, v[:len(v)-1]
	case strings.HasSuffix(v, "w"):
		unit, num = 7*24*time.Hour, v[:len(v)-1]
	}
	n, err := strconv.ParseUint(num, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("want a time like 10s, 5m or 1h, got %q", v)
	}
	return time.Duration(n) * unit, nil
}

// ParseInt reads a non-negative decimal integer.
func ParseInt(v string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want a non-negative whole number, got %q", v)
	}
	return n, nil
}

// CheckBool is a Def.Check for booleans.
func CheckBool(v string) error { _, err := ParseBool(v); return err }

// CheckDuration is a Def.Check for time values.
func CheckDuration(v string) error { _, err := ParseDuration(v); return err }

// CheckPositiveDuration is a Def.Check for time values above zero.
func CheckPositiveDuration(v string) error {
	d, err := ParseDuration(v)
	if err == nil && d == 0 {
		err = fmt.Errorf("want a time above zero, got %q", v)
	}
	return err
}

// ParseFileMode reads octal permissions such as 0660 (at most 0777).
func ParseFileMode(v string) (os.FileMode, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
	if err != nil || n > 0o777 {
		return 0, fmt.Errorf("want octal permissions such as 0660, got %q", v)
	}
	return os.FileMode(n), nil
}

// CheckFileMode is a Def.Check for octal permissions.
func CheckFileMode(v string) error { _, err := ParseFileMode(v); return err }

// CheckInt is a Def.Check for whole numbers.
func CheckInt(v string) error { _, err := ParseInt(v); return err }

// CheckZeroOrAtLeast returns a Def.Check for whole numbers that are 0
// (off) or at least least.
func CheckZeroOrAtLeast(least int64) func(string) error {
	return func(v string) error {
		n, err := ParseInt(v)
		if err == nil && n != 0 && n < least {
			err = fmt.Errorf("want 0 (off) or at least %d, got %q", least, v)
		}
		return err
	}
}

// CheckPercent is a Def.Check for a whole percentage, 0 to 100.
func CheckPercent(v string) error {
	n, err := ParseInt(v)
	if err == nil && n > 100 {
		err = fmt.Errorf("want a percentage from 0 to 100, got %q", v)
	}
	return err
}

// CheckIntRange returns a Def.Check for a whole number from lo to hi.
func CheckIntRange(lo, hi int64) func(string) error {
	return func(v string) error {
		n, err := ParseInt(v)
		if err == nil && (n < lo || n > hi) {
			err = fmt.Errorf("want a whole number from %d to %d, got %q", lo, hi, v)
		}
		return err
	}
}

// CheckRedisURL is a Def.Check for a Redis URL (one server, a Sentinel
// set or a Cluster: see redisclient.Parse), or nothing. The value may hold
// a password, so the error does not quote it.
func CheckRedisURL(v string) error {
	if v == "" {
		return nil
	}
	if err := redisclient.Check(v); err != nil {
		return fmt.Errorf("%w (value not shown: it may hold a password)", err)
	}
	return nil
}

// CheckOneOf returns a Def.Check accepting only the given words.
func CheckOneOf(words ...string) func(string) error {
	return func(v string) error {
		for _, w := range words {
			if strings.EqualFold(v, w) {
				return nil
			}
		}
		return fmt.Errorf("want one of %s, got %q", strings.Join(words, ", "), v)
	}
}

// CheckLoopbackAddr is a Def.Check for a host:port that must be a
// loopback address (127.0.0.0/8, ::1 or localhost), or empty.
func CheckLoopbackAddr(v string) error {
	if v == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("want host:port on loopback, got %q: %w", v, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("want a loopback address (127.0.0.1, [::1] or localhost), got %q", v)
	}
	return nil
}

// CheckReplyCode returns a Def.Check for an SMTP reply code of a class
// ('4' or '5').
func CheckReplyCode(classes string) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 400 || n > 599 || !strings.ContainsRune(classes, rune('0'+n/100)) {
			return fmt.Errorf("want a %sxx reply code, got %q", strings.Join(strings.Split(classes, ""), "xx or "), v)
		}
		return nil
	}
}

// Typed reads name's value with parse, for a service's settings. The error,
// with name's file:line, is for a value that does not parse unless the
// catalogue's own check reports it already (Validate), so that no bad value
// reads as zero silently and none is reported twice; a name the catalogue
// does not know is an error too (a misspelt name in the code, not in
// main.cf).
func Typed[T any](c *Config, name string, parse func(string) (T, error)) (T, error) {
	d, known := c.cat.Def(name)
	if !known {
		var zero T
		return zero, fmt.Errorf("maincf: %s is not a parameter of the catalogue", name)
	}
	v, err := parse(c.Get(name))
	if err != nil && d.Check == nil {
		return v, c.Errorf(name, "%v", err)
	}
	return v, nil
}

// Flatten returns the errors a joined error holds, one per problem, however
// deeply joined (nil for nil): a configuration's errors, each with its
// file:line, for one log record or report line each.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// Collect reads name with Typed and adds its error, if any, to errs: for
// settings that report every bad value at once.
func Collect[T any](c *Config, errs *[]error, name string, parse func(string) (T, error)) T {
	v, err := Typed(c, name, parse)
	if err != nil {
		*errs = append(*errs, err)
	}
	return v
}

// Bool returns the boolean value of name; invalid values read as false
// (Validate reports them).
func (c *Config) Bool(name string) bool {
	b, _ := ParseBool(c.Get(name))
	return b
}

// Duration returns the time value of name; invalid values read as zero
// (Validate reports them).
func (c *Config) Duration(name string) time.Duration {
	d, _ := ParseDuration(c.Get(name))
	return d
}

// Int returns the whole-number value of name; invalid values read as zero
// (Validate reports them).
func (c *Config) Int(name string) int64 {
	n, _ := ParseInt(c.Get(name))
	return n
}

// Load reads dir/main.cf through cat and, when it exists, dir/master.cf.
// A missing main.cf is an error; a missing master.cf yields no services.
func Load(cat *Catalogue, dir string) (*Config, []Service, error) {
	f, err := ParseFile(filepath.Join(dir, "main.cf"))
	if err != nil {
		return nil, nil, err
	}
	c := New(cat, f, dir)
	services, err := ParseMasterFile(filepath.Join(dir, "master.cf"))
	if errors.Is(err, os.ErrNotExist) {
		return c, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return c, services, nil
}

// ValidateServices checks the -o overrides of every service: each name must
// be a parameter that may be set per listener, and its expanded value (in
// that listener's view) must pass the parameter's check when owner reads it.
func ValidateServices(c *Config, services []Service, owner Owner) error {
	var errs []error
	for _, s := range services {
		lc := c.WithOverrides(s.Overrides)
		for _, p := range s.Overrides {
			d, known := c.cat.Def(p.Name)
			switch {
			case !known && lc.classes[p.Name]:
				continue
			case !known:
				errs = append(errs, fmt.Errorf("%s: service %s: -o %s: unknown parameter%s", p.Pos, s.Name, p.Name, suggest(c.cat, p.Name)))
				continue
			case !d.Listener:
				errs = append(errs, fmt.Errorf("%s: service %s: -o %s: this parameter cannot be set per listener", p.Pos, s.Name, p.Name))
				continue
			case d.Owner&owner == 0:
				continue
			}
			v, err := lc.Expand(p.Name)
			if err == nil && d.Check != nil {
				err = d.Check(v)
			}
			if err == nil {
				err = stressDependent(d, v, lc.UnderStress())
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: service %s: -o %s=%s: %w", p.Pos, s.Name, p.Name, p.Value, err))
			}
		}
	}
	return errors.Join(errs...)
}
