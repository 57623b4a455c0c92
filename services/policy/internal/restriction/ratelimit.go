package restriction

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/services/policy/internal/address"
	"github.com/smtpgate/smtpgate/services/policy/internal/ratelimit"
)

// check_rate_limit NAME: smtpgate's rate limits and quotas. NAME is
// defined in smtpgate_rate_limits as
//
//	{ name = client_msgs, key = client_address, count = 100, window = 1h }
//
// with key client_address, client_network (/24 or /64), sasl_username,
// sender or sender_domain; unit events (1 per evaluation, the default) or
// bytes (the message size: put it in smtpd_end_of_data_restrictions); and
// code (450 by default; a recipient limit may say 452). Each evaluation where the key
// is known counts; over the limit it refuses with a 4xx
// "<name>: Class rejected: Rate limit exceeded (...)". Where it counts
// decides what it counts: messages in smtpd_end_of_data_restrictions (or
// DATA), recipients in smtpd_recipient_restrictions, connections in
// smtpd_client_restrictions with smtpd_delay_reject = no.

// rateLimit is one check_rate_limit.
type rateLimit struct {
	name  string
	full  string // "check_rate_limit NAME", what Name returns
	table string // "rate NAME", the table of its Lookup
	key   string
	bytes bool
	limit ratelimit.Limit
	code  int
	c     ratelimit.Counter
}

func (r rateLimit) Name() string { return r.full }

func (r rateLimit) Eval(ctx context.Context, in *Input) (Outcome, error) {
	key := r.keyOf(in.Facts)
	if key == "" {
		return Outcome{}, nil
	}
	cost := int64(1)
	if r.bytes {
		cost = in.Facts.Size
		if cost <= 0 {
			return Outcome{}, nil
		}
	}
	d, err := r.c.Allow(ctx, r.name, key, cost, r.limit)
	if in.st.tracingLookups() {
		var buf [48]byte
		b := strconv.AppendInt(buf[:0], d.Used, 10)
		b = strconv.AppendInt(append(b, '/'), r.limit.Count, 10)
		in.lookup(Lookup{Table: r.table, Key: key, Found: !d.Allowed, Value: string(b)})
	}
	if err != nil {
		if errors.Is(err, ratelimit.ErrStore) {
			// Fail open, counted in the warnings (and the log).
			in.st.warnings = append(in.st.warnings, "rate limit "+r.name+": store unavailable, allowed: "+err.Error())
			return Outcome{}, nil
		}
		return Outcome{}, err
	}
	if d.Allowed {
		return Outcome{}, nil
	}
	unit := ""
	if r.bytes {
		unit = " bytes"
	}
	return in.Refuse(r.code, "4.7.1", "<%s>: %s rejected: Rate limit exceeded (%d%s per %s)", in.Name(), in.Class, r.limit.Count, unit, r.limit.Window), nil
}

// keyOf is the value the limit is kept per, "" when unknown.
func (r rateLimit) keyOf(f *Facts) string {
	switch r.key {
	case "client_address":
		if f.ClientAddr.IsValid() {
			return f.ClientAddr.Unmap().String()
		}
	case "client_network":
		if a := f.ClientAddr.Unmap(); a.IsValid() {
			bits := 24
			if a.Is6() {
				bits = 64
			}
			p, _ := a.Prefix(bits)
			return p.String()
		}
	case "sasl_username":
		return strings.ToLower(f.SASLUsername)
	case "sender":
		if f.InTransaction && f.Sender != "" {
			return strings.ToLower(f.Sender)
		}
	case "sender_domain":
		if f.InTransaction && f.Sender != "" {
			if a, err := address.Parse(f.Sender); err == nil && a.HasDomain {
				return a.Domain
			}
		}
	}
	return ""
}

// rateLimitKeys are the keys a limit can be kept per.
var rateLimitKeys = []string{"client_address", "client_network", "sasl_username", "sender", "sender_domain"}

// rateLimits parses smtpgate_rate_limits.
func (c *compiler) rateLimits() map[string]rateLimit {
	out := map[string]rateLimit{}
	for _, group := range c.cfg.List("smtpgate_rate_limits") {
		inner, ok := strings.CutPrefix(strings.TrimSpace(group), "{")
		inner, ok2 := strings.CutSuffix(strings.TrimSpace(inner), "}")
		if !ok || !ok2 {
			c.errs = append(c.errs, c.cfg.Errorf("smtpgate_rate_limits", "%q: want { name = ..., key = ..., count = ..., window = ... }", group))
			continue
		}
		r := rateLimit{code: 450, c: c.opts.RateLimits}
		bad := func(format string, args ...any) {
			c.errs = append(c.errs, c.cfg.Errorf("smtpgate_rate_limits", "%s: %s", group, fmt.Sprintf(format, args...)))
		}
		fail := false
		for _, kv := range strings.Split(inner, ",") {
			name, value, ok := strings.Cut(kv, "=")
			name, value = strings.TrimSpace(name), strings.TrimSpace(value)
			if !ok {
				bad("%q is not name = value", strings.TrimSpace(kv))
				fail = true
				continue
			}
			var err error
			switch name {
			case "name":
				r.name = value
			case "key":
				r.key = value
				if !slices.Contains(rateLimitKeys, value) {
					err = fmt.Errorf("key %q: want one of %s", value, strings.Join(rateLimitKeys, ", "))
				}
			case "count":
				r.limit.Count, err = strconv.ParseInt(value, 10, 64)
				if err == nil && r.limit.Count < 1 {
					err = errors.New("count must be at least 1")
				}
			case "window":
				r.limit.Window, err = maincf.ParseDuration(value)
				if err == nil && r.limit.Window <= 0 {
					err = errors.New("window must be positive")
				}
			case "unit":
				switch value {
				case "events":
				case "bytes":
					r.bytes = true
				default:
					err = fmt.Errorf("unit %q: want events or bytes", value)
				}
			case "code":
				r.code, err = strconv.Atoi(value)
				if err == nil && (r.code < 400 || r.code > 499) {
					err = fmt.Errorf("code %d: a rate limit defers (4xx)", r.code)
				}
			default:
				err = fmt.Errorf("unknown setting %q", name)
			}
			if err != nil {
				bad("%v", err)
				fail = true
			}
		}
		switch {
		case fail:
		case r.name == "" || r.key == "" || r.limit.Count == 0 || r.limit.Window == 0:
			bad("name, key, count and window are required")
		case out[r.name].name != "":
			bad("%s is defined twice", r.name)
		default:
			r.full, r.table = "check_rate_limit "+r.name, "rate "+r.name
			out[r.name] = r
		}
	}
	return out
}

// compileRateLimit builds check_rate_limit NAME.
func (c *compiler) compileRateLimit(errorf func(string, ...any), name string) Restriction {
	if c.limits == nil {
		c.limits = c.rateLimits()
	}
	r, ok := c.limits[name]
	if !ok {
		errorf("check_rate_limit %s: no such limit in smtpgate_rate_limits", name)
		return nil
	}
	return r
}
