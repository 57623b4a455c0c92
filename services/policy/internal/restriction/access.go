package restriction

import (
	"context"
	"strings"
	"sync"

	"github.com/smtpgate/smtpgate/pkg/mailname"
	"github.com/smtpgate/smtpgate/services/policy/internal/address"
	"github.com/smtpgate/smtpgate/services/policy/internal/table"
)

// The reply classes of access maps that do not name the list they are in
// (SMTPD_NAME_* in smtpd_check_int.h).
const (
	classClient        = "Client host"
	classReverseClient = "Unverified Client host"
	classHELO          = "Helo command"
	classSender        = "Sender address"
	classRecipient     = "Recipient address"
	classETRN          = "Etrn command"
	classSASL          = "SASL login name"
)

// accessTarget is what a check_*_access restriction looks up.
type accessTarget int

const (
	targetClient accessTarget = iota + 1
	targetReverseClient
	targetHELO
	targetSender
	targetRecipient
	targetETRN
	targetSASL
)

// accessRestrictions maps the access restriction names to their targets.
var accessRestrictions = map[string]accessTarget{
	"check_client_access":                  targetClient,
	"check_reverse_client_hostname_access": targetReverseClient,
	"check_helo_access":                    targetHELO,
	"check_sender_access":                  targetSender,
	"check_recipient_access":               targetRecipient,
	"check_etrn_access":                    targetETRN,
	"check_sasl_access":                    targetSASL,
}

// accessEnv is what every access map of one engine shares.
type accessEnv struct {
	// parentStyle: "domain.tld" also matches subdomains
	// (parent_domain_matches_subdomains has smtpd_access_maps); otherwise
	// ".domain.tld" does.
	parentStyle bool
	nullKey     string
	delimiter   string
	values      *valueCache
}

// accessMap is one check_*_access restriction: a table and what to look
// up in it (SMTPD_ACCESS_README, access(5)).
type accessMap struct {
	name   string
	spec   string
	tbl    table.Table
	target accessTarget
	env    *accessEnv
}

func (r accessMap) Name() string { return r.name + " " + r.spec }

func (r accessMap) Eval(ctx context.Context, in *Input) (Outcome, error) {
	f := in.Facts
	switch r.target {
	case targetClient:
		return r.namAddr(ctx, in, f.clientName(), f.NameAddr(), classClient, false)
	case targetReverseClient:
		name := f.ReverseClientName
		if name == "" {
			name = "unknown"
		}
		return r.namAddr(ctx, in, name, f.NameAddr(), classReverseClient, true)
	case targetHELO:
		if f.HELO == "" {
			return Outcome{}, nil
		}
		o, _, err := r.domain(ctx, in, f.HELO, false, f.HELO, classHELO)
		return o, err
	case targetSender:
		if !f.InTransaction {
			return Outcome{}, nil
		}
		if f.Sender == "" {
			o, _, err := r.key(ctx, in, r.env.nullKey, false, "", classSender)
			return o, err
		}
		return r.mail(ctx, in, f.Sender, classSender)
	case targetRecipient:
		if f.Recipient == "" {
			return Outcome{}, nil
		}
		return r.mail(ctx, in, f.Recipient, classRecipient)
	case targetETRN:
		if f.ETRNDomain == "" {
			return Outcome{}, nil
		}
		o, _, err := r.domain(ctx, in, f.ETRNDomain, false, f.ETRNDomain, classETRN)
		return o, err
	case targetSASL:
		if f.SASLUsername == "" {
			return Outcome{}, nil
		}
		o, _, err := r.key(ctx, in, f.SASLUsername, false, mailname.Printable(f.SASLUsername, '_'), classSASL)
		return o, err
	}
	return Outcome{}, nil
}

// key looks up one key (check_access()); partial keys are only looked up
// in fixed-string tables. found reports an entry, even a DUNNO one: it
// ends the search.
func (r accessMap) key(ctx context.Context, in *Input, key string, partial bool, name, class string) (Outcome, bool, error) {
	if partial && r.tbl.Pattern() {
		return Outcome{}, false, nil
	}
	v, ok, err := r.tbl.Lookup(ctx, key)
	in.lookup(Lookup{Table: r.spec, Key: key, Found: ok, Value: v})
	if err != nil {
		return Outcome{}, false, err
	}
	if !ok {
		return Outcome{}, false, nil
	}
	o, err := r.env.result(ctx, in, r.spec, v, name, class)
	return o, true, err
}

// domain looks up a host or domain name and its parent domains
// (check_domain_access()), "a.b.c", then "b.c" and "c" (or ".b.c" and
// ".c"); a numerical name only as itself.
func (r accessMap) domain(ctx context.Context, in *Input, domain string, partial bool, name, class string) (Outcome, bool, error) {
	numerical := mailname.ValidHostAddr(domain)
	for key := domain; key != ""; {
		o, found, err := r.key(ctx, in, key, partial, name, class)
		if err != nil || found {
			return o, found, err
		}
		if numerical {
			break
		}
		i := strings.IndexByte(key[1:], '.')
		if i < 0 {
			break
		}
		key = key[i+1:]
		if r.env.parentStyle {
			key = key[1:]
		}
		partial = true
	}
	return Outcome{}, false, nil
}

// addr looks up an address and its parent networks (check_addr_access()):
// "192.0.2.1", "192.0.2", "192.0", "192"; IPv6 by ":"-separated parts.
func (r accessMap) addr(ctx context.Context, in *Input, a, name, class string) (Outcome, bool, error) {
	delim := byte('.')
	if strings.Contains(a, ":") {
		delim = ':'
	}
	partial := false
	for key := a; key != ""; {
		o, found, err := r.key(ctx, in, key, partial, name, class)
		if err != nil || found {
			return o, found, err
		}
		i := strings.LastIndexByte(key, delim)
		if i < 0 {
			break
		}
		key, partial = key[:i], true
	}
	return Outcome{}, false, nil
}

// namAddr looks up the client name, then its address
// (check_namadr_access()). An OK for the unverified name is refused as
// Postfix does: it would let anyone with a PTR record in.
func (r accessMap) namAddr(ctx context.Context, in *Input, host, name, class string, forbidOK bool) (Outcome, error) {
	o, found, err := r.domain(ctx, in, host, false, name, class)
	if err == nil && !found && in.Facts.ClientAddr.IsValid() {
		o, _, err = r.addr(ctx, in, in.Facts.clientAddr(), name, class)
	}
	if err != nil {
		return Outcome{}, err
	}
	if forbidOK && o.Result == Permit {
		return serverError(in), nil
	}
	return o, nil
}

// mail looks up an envelope address (check_mail_access()): the address,
// without its extension, its domain and parent domains, "user+ext@" and
// "user@". An OK for a recipient with sender-specified routing counts as
// DUNNO (allow_untrusted_routing = no). An internationalised domain is
// looked up in its A-label form and then in its UTF-8 form at each step
// that has the domain, so that a table may use either (Postfix looks up
// the form the client wrote only).
func (r accessMap) mail(ctx context.Context, in *Input, addr, class string) (Outcome, error) {
	a, err := address.Parse(addr)
	if err != nil {
		return Outcome{}, nil
	}
	suspicious := class == classRecipient && a.Routed()
	domains := []string{a.Domain}
	if u := address.UnicodeDomain(a.Domain); u != a.Domain {
		domains = append(domains, u)
	}
	withDomain := func(local string) []string {
		if !a.HasDomain {
			return []string{local}
		}
		keys := make([]string, 0, len(domains))
		for _, d := range domains {
			keys = append(keys, local+"@"+d)
		}
		return keys
	}
	bare := stripExtension(a.Local, r.env.delimiter)
	done := func(o Outcome, found bool, err error) (Outcome, bool, error) {
		if suspicious && o.Result == Permit {
			o = Outcome{}
		}
		return o, found, err
	}
	var steps []func() (Outcome, bool, error)
	for _, k := range withDomain(a.Local) {
		steps = append(steps, func() (Outcome, bool, error) { return r.key(ctx, in, k, false, addr, class) })
	}
	if bare != a.Local {
		for _, k := range withDomain(bare) {
			steps = append(steps, func() (Outcome, bool, error) { return r.key(ctx, in, k, true, addr, class) })
		}
	}
	if a.HasDomain {
		for _, d := range domains {
			steps = append(steps, func() (Outcome, bool, error) { return r.domain(ctx, in, d, true, addr, class) })
		}
	}
	steps = append(steps, func() (Outcome, bool, error) { return r.key(ctx, in, a.Local+"@", true, addr, class) })
	if bare != a.Local {
		steps = append(steps, func() (Outcome, bool, error) { return r.key(ctx, in, bare+"@", true, addr, class) })
	}
	for _, step := range steps {
		o, found, err := done(step())
		if err != nil || found {
			return o, err
		}
	}
	return Outcome{}, nil
}

// stripExtension removes the address extension: everything from the
// first recipient_delimiter character on, unless the local part starts
// with it.
func stripExtension(local, delimiters string) string {
	if delimiters == "" || local == "" {
		return local
	}
	if i := strings.IndexAny(local[1:], delimiters); i >= 0 {
		return local[:i+1]
	}
	return local
}

// bareTable is a "type:table" element without a check_*_access in front:
// it means the access check of the list it is evaluated in.
type bareTable struct {
	spec string
	tbl  table.Table
	env  *accessEnv
}

func (r bareTable) Name() string { return r.spec }
func (r bareTable) Eval(ctx context.Context, in *Input) (Outcome, error) {
	target, ok := accessRestrictions[in.defACL]
	if !ok {
		return serverError(in), nil
	}
	return accessMap{name: in.defACL, spec: r.spec, tbl: r.tbl, target: target, env: r.env}.Eval(ctx, in)
}

// serverError is Postfix's reject_server_error(): a configuration problem
// found while evaluating, "451 4.3.5 Server configuration error".
func serverError(in *Input) Outcome {
	return in.refuseConfig(451, "4.3.5", "Server configuration error")
}

// actions that need a mail queue, which smtpgate does not have.
var queueActions = map[string]bool{"HOLD": true, "FILTER": true, "REDIRECT": true, "BCC": true, "DELAY": true}

// result evaluates an access table value (check_table_result()).
func (env *accessEnv) result(ctx context.Context, in *Input, spec, value, name, class string) (Outcome, error) {
	value = strings.TrimSpace(value)
	cmd, text := value, ""
	if i := strings.IndexAny(value, " \t"); i >= 0 {
		cmd, text = value[:i], strings.TrimLeft(value[i:], " \t")
	}
	upper := strings.ToUpper(cmd)
	or := func(s, def string) string {
		if s == "" {
			return def
		}
		return s
	}
	st := in.st
	switch {
	case upper == "DUNNO":
		return Outcome{}, nil
	case upper == "REJECT":
		dsn, t := splitDSN("5.7.1", text)
		return in.Refuse(in.codes.AccessReject, dsn, "<%s>: %s rejected: %s", name, class, or(t, "Access denied")), nil
	case upper == "DEFER":
		dsn, t := splitDSN("4.7.1", text)
		return in.Refuse(in.codes.AccessDefer, dsn, "<%s>: %s rejected: %s", name, class, or(t, "Access denied")), nil
	case upper == "WARN":
		st.warnings = append(st.warnings, "warn: "+text)
		return Outcome{}, nil
	case queueActions[upper]:
		st.warnings = append(st.warnings, "access table "+spec+": action "+upper+" needs a mail queue, which smtpgate does not have")
		return serverError(in), nil
	case upper == "DISCARD":
		st.discard = true
		st.warnings = append(st.warnings, "discard: <"+name+">: "+class+" "+or(text, "triggers DISCARD action"))
		return Outcome{Result: Permit, Discard: true}, nil
	case upper == "DEFER_IF_PERMIT":
		dsn, t := splitDSN("4.7.1", text)
		in.deferIf(&st.deferIfPermit, in.codes.AccessDefer, dsn, "<%s>: %s rejected: %s", name, class, or(t, "Service unavailable"))
		return Outcome{}, nil
	case upper == "DEFER_IF_REJECT":
		dsn, t := splitDSN("4.7.1", text)
		in.deferIf(&st.deferIfReject, in.codes.AccessDefer, dsn, "<%s>: %s rejected: %s", name, class, or(t, "Service unavailable"))
		return Outcome{}, nil
	case upper == "PREPEND":
		if !validHeader(text) {
			st.warnings = append(st.warnings, "access table "+spec+" entry \""+value+"\" requires header: text")
			return Outcome{}, nil
		}
		if !in.Facts.InTransaction || in.Facts.Stage == EndOfData {
			st.warnings = append(st.warnings, "access table "+spec+": action PREPEND is ignored outside a mail transaction or after the message")
			return Outcome{}, nil
		}
		st.prepend = append(st.prepend, text)
		return Outcome{}, nil
	case mailname.AllDigits(value):
		return Outcome{Result: Permit}, nil
	case len(cmd) == 3 && text != "" && (cmd[0] == '4' || cmd[0] == '5') && mailname.AllDigits(cmd[1:3]):
		code := int(cmd[0]-'0')*100 + int(cmd[1]-'0')*10 + int(cmd[2]-'0')
		dsn, t := splitDSN(cmd[:1]+".7.1", text)
		return in.Refuse(code, dsn, "<%s>: %s rejected: %s", name, class, or(t, "Access denied")), nil
	case upper == "OK" || upper == "RELAY":
		return Outcome{Result: Permit}, nil
	case strings.Contains(value, ":"):
		// Postfix: "do not specify lookup tables inside SMTPD access
		// maps; define a restriction class and specify its name instead".
		st.warnings = append(st.warnings, "access table "+spec+" has entry with lookup table: "+value)
		return serverError(in), nil
	case st.recursion > 100:
		return serverError(in), nil
	}
	l, ok := env.values.get(value)
	if !ok {
		st.warnings = append(st.warnings, "access table "+spec+" entry \""+value+"\": unknown restriction")
		return serverError(in), nil
	}
	if len(l.Items) == 0 {
		return Outcome{Result: Permit}, nil
	}
	return l.eval(ctx, in.withName(name, class))
}

// splitDSN splits an optional RFC 3463 code off the front of an access
// table text ("5.7.1 go away"), as Postfix's dsn_split() does.
func splitDSN(def, text string) (string, string) {
	word, rest, _ := strings.Cut(text, " ")
	if validDSN(word) && (word[0] == '4' || word[0] == '5') {
		return word, strings.TrimLeft(rest, " \t")
	}
	return def, text
}

// validHeader reports "Name: value" with an RFC 5322 field name.
func validHeader(s string) bool {
	name, _, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// valueCache compiles, once each, the restriction lists that access table
// values name ("permit_mynetworks, reject", a restriction class...).
type valueCache struct {
	compile func(value string) (*List, bool)
	mu      sync.RWMutex
	lists   map[string]*List
	// bad remembers values that do not compile.
	bad map[string]bool
}

func (v *valueCache) get(value string) (*List, bool) {
	v.mu.RLock()
	l, ok := v.lists[value]
	bad := v.bad[value]
	v.mu.RUnlock()
	if ok || bad {
		return l, ok
	}
	l, ok = v.compile(value)
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.lists) > 10000 {
		// Values come from trusted tables, but regexp $n substitutions
		// can make many: keep memory bounded.
		clear(v.lists)
		clear(v.bad)
	}
	if ok {
		v.lists[value] = l
	} else {
		v.bad[value] = true
	}
	return l, ok
}
