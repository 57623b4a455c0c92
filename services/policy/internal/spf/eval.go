package spf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// The processing limits of RFC 7208 §4.6.4.
const (
	maxDNSTerms   = 10 // include, a, mx, ptr, exists, redirect in one check
	maxMXHosts    = 10 // MX records one mx mechanism may look at
	maxPTRNames   = 10 // PTR names one ptr mechanism or %{p} looks at
	maxVoidLookup = 2  // queries answered with NXDOMAIN or no records
)

// checker is one evaluation: the constant inputs and the counters that
// run across include and redirect.
type checker struct {
	r       Resolver
	env     macroEnv // domain is set per record
	lookups int
	voids   int
	// ptrNames are all validated names of the client, looked up once
	// for every %{p} of the check, however many there are.
	ptrNames []string
	ptrDone  bool
}

// outcome is what check_host gives for one domain.
type outcome struct {
	result      Result
	mechanism   string
	explanation string
	problem     string
}

// evalError ends an evaluation with temperror or permerror.
type evalError struct {
	result  Result
	problem string
}

func (e *evalError) Error() string { return string(e.result) + ": " + e.problem }

func permErr(format string, a ...any) error {
	return &evalError{PermError, fmt.Sprintf(format, a...)}
}

func tempErr(format string, a ...any) error {
	return &evalError{TempError, fmt.Sprintf(format, a...)}
}

func failed(err error) outcome {
	var e *evalError
	if errors.As(err, &e) {
		return outcome{result: e.result, problem: e.problem}
	}
	return outcome{result: TempError, problem: err.Error()}
}

// isVoid reports a lookup answered with NXDOMAIN or no records.
func isVoid(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrNoData)
}

// dnsErr turns a resolver error that is not void into temperror (RFC 7208
// §4.4, §5), a spent deadline included.
func dnsErr(ctx context.Context, what, name string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return tempErr("%s %s: %v", what, name, ctxErr)
	}
	// A resolver that sets its socket deadline from ctx may time out a
	// moment before ctx says so.
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return tempErr("%s %s: %v", what, name, context.DeadlineExceeded)
	}
	return tempErr("%s %s: %v", what, name, err)
}

// checkHost is check_host() for one domain (RFC 7208 §4). wantExp is
// false inside include, whose target's exp= must not be used (§6.2).
func (c *checker) checkHost(ctx context.Context, domain string, wantExp bool) outcome {
	domain = strings.TrimSuffix(domain, ".")
	// §4.3: a malformed or single-label domain has no policy.
	if !validDomain(domain) {
		return outcome{result: None, problem: fmt.Sprintf("malformed domain %q", domain)}
	}
	rec, err := c.lookupRecord(ctx, domain)
	if err != nil {
		return failed(err)
	}
	if rec == nil {
		return outcome{result: None, problem: fmt.Sprintf("no SPF record at %s", domain)}
	}
	env := c.env
	env.domain = domain
	env.ptr = func() string { return c.validatedName(ctx, domain) }

	for i := range rec.directives {
		d := &rec.directives[i]
		if err := ctx.Err(); err != nil {
			return outcome{result: TempError, problem: err.Error()}
		}
		ok, err := c.match(ctx, d, &env)
		if err != nil {
			return failed(err)
		}
		if !ok {
			continue
		}
		o := outcome{result: d.qual, mechanism: d.text}
		if d.qual == Fail && wantExp && rec.exp != nil {
			o.explanation = c.explain(ctx, rec.exp, &env)
		}
		return o
	}
	// §6.1: redirect only when no mechanism matched (an "all" always
	// does, so a record with one never gets here).
	if rec.redirect != nil {
		if err := c.countLookup(); err != nil {
			return failed(err)
		}
		target := expandDomain(rec.redirect, &env)
		o := c.checkHost(ctx, target, wantExp)
		if o.result == None {
			return outcome{result: PermError, problem: fmt.Sprintf("redirect=%s: %s", target, o.problem)}
		}
		return o
	}
	return outcome{result: Neutral}
}

// lookupRecord fetches and parses the SPF record of domain (RFC 7208
// §4.4, §4.5); nil with a nil error when there is none.
func (c *checker) lookupRecord(ctx context.Context, domain string) (*record, error) {
	txts, err := c.r.LookupTXT(ctx, domain)
	if isVoid(err) {
		return nil, nil
	}
	if err != nil {
		return nil, dnsErr(ctx, "TXT", domain, err)
	}
	var found []string
	for _, t := range txts {
		if isSPF(t) {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, permErr("%d SPF records at %s", len(found), domain)
	}
	rec, err := parseRecord(found[0])
	if err != nil {
		return nil, permErr("record at %s: %v", domain, err)
	}
	return rec, nil
}

// countLookup counts one DNS-querying term (RFC 7208 §4.6.4).
func (c *checker) countLookup() error {
	c.lookups++
	if c.lookups > maxDNSTerms {
		return permErr("more than %d DNS-querying terms", maxDNSTerms)
	}
	return nil
}

// countVoid counts one void lookup (RFC 7208 §4.6.4).
func (c *checker) countVoid() error {
	c.voids++
	if c.voids > maxVoidLookup {
		return permErr("more than %d void lookups", maxVoidLookup)
	}
	return nil
}

// target expands a mechanism's domain-spec, or gives the current domain.
func (c *checker) target(d *directive, env *macroEnv) (string, error) {
	if d.domain == nil {
		return env.domain, nil
	}
	t := expandDomain(d.domain, env)
	if !validDomain(t) {
		return "", permErr("%s: malformed target domain %q", d.text, t)
	}
	return t, nil
}

// match evaluates one mechanism (RFC 7208 §5).
func (c *checker) match(ctx context.Context, d *directive, env *macroEnv) (bool, error) {
	ip := c.env.ip
	switch d.kind {
	case mAll:
		return true, nil
	case mIP4, mIP6:
		return d.prefix.Contains(ip), nil
	}
	if err := c.countLookup(); err != nil {
		return false, err
	}
	target, err := c.target(d, env)
	if err != nil {
		return false, err
	}
	switch d.kind {
	case mInclude:
		// §5.2: the included check's result decides whether include
		// matches.
		o := c.checkHost(ctx, target, false)
		switch o.result {
		case Pass:
			return true, nil
		case Fail, SoftFail, Neutral:
			return false, nil
		case TempError:
			return false, &evalError{TempError, fmt.Sprintf("%s: %s", d.text, o.problem)}
		default:
			return false, permErr("%s: %s", d.text, o.problem)
		}
	case mA:
		addrs, err := c.lookupAddrs(ctx, target, ip.Is4())
		if isVoid(err) {
			return false, c.countVoid()
		}
		if err != nil {
			return false, err
		}
		return c.inAny(addrs, d), nil
	case mMX:
		mxs, err := c.r.LookupMX(ctx, target)
		if isVoid(err) {
			return false, c.countVoid()
		}
		if err != nil {
			return false, dnsErr(ctx, "MX", target, err)
		}
		if len(mxs) > maxMXHosts {
			return false, permErr("%s: %d MX records, more than %d", d.text, len(mxs), maxMXHosts)
		}
		for _, mx := range mxs {
			host := strings.TrimSuffix(mx.Host, ".")
			if host == "" { // RFC 7505 null MX
				continue
			}
			addrs, err := c.lookupAddrs(ctx, host, ip.Is4())
			if isVoid(err) {
				continue
			}
			if err != nil {
				return false, err
			}
			if c.inAny(addrs, d) {
				return true, nil
			}
		}
		return false, nil
	case mPTR:
		names, err := c.validatedNames(ctx, func(n string) bool { return inDomain(n, target) })
		if isVoid(err) {
			return false, c.countVoid()
		}
		// §5.5: other DNS errors make ptr not match.
		return len(names) > 0, nil
	case mExists:
		// §5.7: always an A query, whatever the client's address family.
		addrs, err := c.r.LookupA(ctx, target)
		if isVoid(err) {
			return false, c.countVoid()
		}
		if err != nil {
			return false, dnsErr(ctx, "A", target, err)
		}
		return len(addrs) > 0, nil
	}
	return false, permErr("%s: unknown mechanism", d.text)
}

// lookupAddrs looks up the A or AAAA records of name, matching the
// client's address family; void answers come back as ErrNotFound or
// ErrNoData, other errors as temperror.
func (c *checker) lookupAddrs(ctx context.Context, name string, v4 bool) ([]netip.Addr, error) {
	var addrs []netip.Addr
	var err error
	what := "A"
	if v4 {
		addrs, err = c.r.LookupA(ctx, name)
	} else {
		what = "AAAA"
		addrs, err = c.r.LookupAAAA(ctx, name)
	}
	if err != nil && !isVoid(err) {
		return nil, dnsErr(ctx, what, name, err)
	}
	return addrs, err
}

// inAny reports whether the client is in any of addrs' networks of the
// mechanism's CIDR length for its family.
func (c *checker) inAny(addrs []netip.Addr, d *directive) bool {
	ip := c.env.ip
	for _, a := range addrs {
		if v4 := a.Unmap(); v4.Is4() && ip.Is4() {
			a = v4
		}
		if a.Is4() != ip.Is4() {
			continue
		}
		bits := d.cidr6
		if a.Is4() {
			bits = d.cidr4
		}
		if p, err := a.WithZone("").Prefix(bits); err == nil && p.Contains(ip) {
			return true
		}
	}
	return false
}

// validatedNames does the reverse lookup of the client and returns those
// of the first 10 names that want accepts and whose addresses include the
// client (RFC 7208 §5.5, §4.6.4). Lookup errors of the names skip them.
func (c *checker) validatedNames(ctx context.Context, want func(string) bool) ([]string, error) {
	ip := c.env.ip
	names, err := c.r.LookupPTR(ctx, ip)
	if err != nil {
		return nil, err
	}
	if len(names) > maxPTRNames {
		names = names[:maxPTRNames]
	}
	var valid []string
	for _, n := range names {
		n = strings.TrimSuffix(n, ".")
		if !want(n) || !validDomain(n) {
			continue
		}
		addrs, err := c.lookupAddrs(ctx, n, ip.Is4())
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if a.Unmap() == ip || a == ip {
				valid = append(valid, n)
				break
			}
		}
	}
	return valid, nil
}

// validatedName is the value of %{p} (RFC 7208 §7.3): the current domain
// if it is validated, else a validated subdomain of it, else any
// validated name, else "unknown".
func (c *checker) validatedName(ctx context.Context, domain string) string {
	if !c.ptrDone {
		c.ptrNames, _ = c.validatedNames(ctx, func(string) bool { return true })
		c.ptrDone = true
	}
	names := c.ptrNames
	if len(names) == 0 {
		return "unknown"
	}
	for _, n := range names {
		if strings.EqualFold(n, domain) {
			return n
		}
	}
	for _, n := range names {
		if inDomain(n, domain) {
			return n
		}
	}
	return names[0]
}

// inDomain reports whether name is domain or a subdomain of it.
func inDomain(name, domain string) bool {
	name, domain = strings.ToLower(name), strings.ToLower(strings.TrimSuffix(domain, "."))
	return name == domain || strings.HasSuffix(name, "."+domain)
}

// explain fetches and expands the explanation of a fail (RFC 7208 §6.2);
// any problem on the way just means no explanation.
func (c *checker) explain(ctx context.Context, spec []macroToken, env *macroEnv) string {
	name := expandDomain(spec, env)
	if !validDomain(name) {
		return ""
	}
	txts, err := c.r.LookupTXT(ctx, name)
	if err != nil || len(txts) != 1 {
		return ""
	}
	toks, err := parseMacroString(txts[0], macroExp)
	if err != nil {
		return ""
	}
	s := expand(toks, env)
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return ""
		}
	}
	return s
}
