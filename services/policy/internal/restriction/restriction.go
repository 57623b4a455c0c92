package restriction

import (
	"context"
	"fmt"
	"strings"

	"github.com/smtpgate/smtpgate/services/policy/internal/address"
	"github.com/smtpgate/smtpgate/services/policy/internal/matchlist"
)

// Result is what one restriction says, in Postfix's terms.
type Result int

// The results of a restriction (SMTPD_CHECK_* in smtpd_check.c).
const (
	// Dunno: no opinion, go on with the next restriction.
	Dunno Result = iota
	// Permit: stop this list, accepting (the next list still runs).
	Permit
	// Refuse: stop everything with Outcome.Reply (4xx or 5xx).
	Refuse
)

func (r Result) String() string {
	switch r {
	case Permit:
		return "PERMIT"
	case Refuse:
		return "REFUSE"
	}
	return "DUNNO"
}

// Outcome is the result of evaluating a restriction or a list.
type Outcome struct {
	Result Result
	// Reply is set with Refuse, and with a refusal that warn_if_reject
	// turned into a warning (Result Dunno, Warned set).
	Reply  Reply
	Warned bool
	// Discard is set with the Permit of an access(5) DISCARD action.
	Discard bool
	// Restriction and List name the restriction that decided and the list
	// (or restriction class) it is in; the evaluator fills them in.
	Restriction string
	List        string
}

// Input is what a restriction is evaluated with: the facts, the reply
// context of the list being evaluated, and the state of this evaluation.
type Input struct {
	Facts *Facts
	// Class is Postfix's reply_class of the top-level list being
	// evaluated, and name (see Name) its reply_name: a reject in
	// smtpd_client_restrictions says "<name[addr]>: Client host rejected:
	// ...".
	Class string
	name  string
	// kind is the list; name is computed from it on first use.
	kind    ListKind
	nameSet bool
	// defACL is the access restriction that a bare "type:table" element
	// stands for in the list being evaluated (check_client_access in
	// smtpd_client_restrictions...), "" in the DATA lists.
	defACL string
	codes  Codes
	st     *evalState
}

// evalState is what Postfix keeps in SMTPD_STATE while it evaluates one
// stage: the warn_if_reject and defer_if_* flags, headers to prepend,
// warnings, and the Explain trace.
type evalState struct {
	trace *[]Step
	// lookupStep is 1 + the index in *trace of the step of the
	// restriction being evaluated, which collects its table lookups; 0
	// when not tracing. (An index, not a pointer: the trace grows while
	// nested lists are evaluated.)
	lookupStep int
	// recursion is the nesting depth of lists (generic_checks calls).
	recursion int
	// warnIfReject is the recursion level at which warn_if_reject was
	// seen; 0 when not active.
	warnIfReject  int
	deferIfPermit *Reply
	deferIfReject *Reply
	prepend       []string
	warnings      []string
	discard       bool
	// rcptMapsChecked and senderMapsChecked: reject_unlisted_* ran, so
	// the implicit check of smtpd_reject_unlisted_* is not repeated.
	rcptMapsChecked   bool
	senderMapsChecked bool
	// dns is what the DNS restrictions learnt in this check (client
	// names, whether SPF ran).
	dns *checkState
}

// Name is Postfix's reply_name of the list being evaluated.
func (in *Input) Name() string {
	if !in.nameSet {
		in.name, in.nameSet = in.kind.replyName(in.Facts), true
	}
	return in.name
}

// withName returns a copy of in that names name and class in replies.
func (in *Input) withName(name, class string) *Input {
	sub := *in
	sub.name, sub.nameSet, sub.Class = name, true, class
	return &sub
}

// Refuse returns a refusal outcome with a reply formatted and checked as
// Postfix's smtpd_check_reject() does (see Codes). Like Postfix, it
// honours warn_if_reject (the refusal becomes a logged warning) and
// defer_if_reject (a 5xx refusal becomes the deferral that was waiting).
func (in *Input) Refuse(code int, dsn, format string, args ...any) Outcome {
	return in.refuse(true, code, dsn, format, args...)
}

// refuseConfig is a refusal for a configuration error: warn_if_reject
// cannot turn it into a warning.
func (in *Input) refuseConfig(code int, dsn, format string, args ...any) Outcome {
	return in.refuse(false, code, dsn, format, args...)
}

func (in *Input) refuse(warnable bool, code int, dsn, format string, args ...any) Outcome {
	r := in.codes.reply(code, dsn, format, args...)
	st := in.st
	if warnable && st.warnIfReject != 0 {
		st.warnings = append(st.warnings, "reject_warning: "+r.String())
		return Outcome{Result: Dunno, Reply: r, Warned: true}
	}
	if st.deferIfReject != nil && r.Code >= 500 {
		d := *st.deferIfReject
		st.deferIfReject, st.warnIfReject = nil, 0
		return Outcome{Result: Refuse, Reply: in.codes.reply(d.Code, d.DSN, "%s", d.Text)}
	}
	return Outcome{Result: Refuse, Reply: r}
}

// deferIf records a defer_if_permit or defer_if_reject reply; the first
// one of each kind is kept (defer_if() in smtpd_check.c).
func (in *Input) deferIf(slot **Reply, code int, dsn, format string, args ...any) {
	if *slot == nil {
		r := Reply{Code: code, DSN: dsn, Text: fmt.Sprintf(format, args...)}
		*slot = &r
	}
}

// tracingLookups reports whether table lookups are recorded for the
// trace.
func (st *evalState) tracingLookups() bool { return st.lookupStep > 0 }

// lookup records a table lookup for the trace.
func (in *Input) lookup(l Lookup) {
	if in.st.tracingLookups() {
		s := &(*in.st.trace)[in.st.lookupStep-1]
		s.Lookups = append(s.Lookups, l)
	}
}

// Restriction is one element of a restriction list, compiled.
type Restriction interface {
	// Name is the restriction as Postfix names it (or the class name).
	Name() string
	// Eval evaluates the restriction. An error means a dependency failed
	// (a lookup table, the DNS): the caller fails closed.
	Eval(ctx context.Context, in *Input) (Outcome, error)
}

// fixed is a restriction with a constant outcome: permit, reject, defer.
type fixed struct {
	name string
	eval func(in *Input) Outcome
}

func (r fixed) Name() string { return r.name }
func (r fixed) Eval(_ context.Context, in *Input) (Outcome, error) {
	return r.eval(in), nil
}

// permitAll is "permit".
func permitAll() Restriction {
	return fixed{"permit", func(*Input) Outcome { return Outcome{Result: Permit} }}
}

// rejectAll is "reject": reject_code, 5.7.1, "<name>: Class rejected:
// Access denied" (generic_checks() in smtpd_check.c).
func rejectAll() Restriction {
	return fixed{"reject", func(in *Input) Outcome {
		return in.Refuse(in.codes.Reject, "5.7.1", "<%s>: %s rejected: Access denied", in.Name(), in.Class)
	}}
}

// deferAll is "defer": defer_code, 4.3.2, "<name>: Class rejected: Try
// again later".
func deferAll() Restriction {
	return fixed{"defer", func(in *Input) Outcome {
		return in.Refuse(in.codes.Defer, "4.3.2", "<%s>: %s rejected: Try again later", in.Name(), in.Class)
	}}
}

// myNetworks is permit_mynetworks: permit when the client address
// matches mynetworks.
type myNetworks struct{ nets *matchlist.Networks }

func (myNetworks) Name() string { return "permit_mynetworks" }
func (r myNetworks) Eval(_ context.Context, in *Input) (Outcome, error) {
	if r.nets.Match(in.Facts.ClientAddr) {
		return Outcome{Result: Permit}, nil
	}
	return Outcome{}, nil
}

// saslAuthenticated is permit_sasl_authenticated: permit when the client
// authenticated with AUTH (RFC 4954) in this session.
type saslAuthenticated struct{}

func (saslAuthenticated) Name() string { return "permit_sasl_authenticated" }
func (saslAuthenticated) Eval(_ context.Context, in *Input) (Outcome, error) {
	if in.Facts.SASLUsername != "" {
		return Outcome{Result: Permit}, nil
	}
	return Outcome{}, nil
}

// Destinations are the domains this system accepts mail for: the final
// destinations (mydestination, virtual_alias_domains,
// virtual_mailbox_domains) and the relay destinations (relay_domains).
type Destinations struct {
	Final []*matchlist.Domains
	Relay *matchlist.Domains
}

// Authorized reports whether a recipient is an authorised destination, as
// Postfix's permit_auth_destination decides it: its domain is a final or
// relay destination, and its local part has no sender-specified routing
// ("%", "!" or "@" once unquoted), so "user%example.com@example.org" or
// "\"user@example.com\"@example.org" are not (allow_untrusted_routing =
// no). An address without a domain, with an address literal, or that does
// not parse is not authorised either: smtpgate does not append $myorigin
// and does not know its own interface addresses (a documented difference
// from Postfix, on the closed side). The bare "postmaster" is handled by the
// caller (RFC 5321 section 4.5.1).
//
// err is set when a domain list's table could not be consulted: the
// caller fails closed.
func (d *Destinations) Authorized(ctx context.Context, recipient string) (bool, error) {
	a, err := address.Parse(recipient)
	if err != nil || !a.HasDomain || a.Literal || a.Routed() {
		return false, nil
	}
	for _, f := range d.Final {
		if ok, err := f.Match(ctx, a.Domain); ok || err != nil {
			return ok, err
		}
	}
	return d.Relay.Match(ctx, a.Domain)
}

// authDestination implements permit_auth_destination,
// reject_unauth_destination and defer_unauth_destination.
type authDestination struct {
	name string
	dest *Destinations
	// onUnauth is the outcome for a recipient that is not an authorised
	// destination; onAuth for one that is.
	onAuth   Result
	onUnauth func(in *Input) Outcome
}

func (r authDestination) Name() string { return r.name }
func (r authDestination) Eval(ctx context.Context, in *Input) (Outcome, error) {
	// Like Postfix, these only look at a recipient when there is one: in
	// smtpd_client_restrictions at CONNECT they do nothing.
	if in.Facts.Recipient == "" {
		return Outcome{}, nil
	}
	ok, err := r.dest.Authorized(ctx, in.Facts.Recipient)
	if err != nil {
		return Outcome{}, err
	}
	if ok {
		return Outcome{Result: r.onAuth}, nil
	}
	if r.onUnauth == nil {
		return Outcome{}, nil
	}
	return r.onUnauth(in), nil
}

func permitAuthDestination(d *Destinations) Restriction {
	return authDestination{name: "permit_auth_destination", dest: d, onAuth: Permit}
}

// rejectUnauthDestination: relay_domains_reject_code, 5.7.1,
// "<recipient>: Relay access denied" (reject_unauth_destination() in
// smtpd_check.c).
func rejectUnauthDestination(d *Destinations) Restriction {
	return authDestination{name: "reject_unauth_destination", dest: d, onUnauth: func(in *Input) Outcome {
		return in.Refuse(in.codes.Relay, "5.7.1", "<%s>: Relay access denied", in.Facts.Recipient)
	}}
}

// deferUnauthDestination: relay_domains_reject_code minus 100 (454 by
// default), 4.7.1, the same text.
func deferUnauthDestination(d *Destinations) Restriction {
	return authDestination{name: "defer_unauth_destination", dest: d, onUnauth: func(in *Input) Outcome {
		return in.Refuse(in.codes.Relay-100, "4.7.1", "<%s>: Relay access denied", in.Facts.Recipient)
	}}
}

// class is a restriction class (smtpd_restriction_classes): a named list
// evaluated in place, whose permit or refusal ends the enclosing list too.
type class struct {
	list *List
}

func (c class) Name() string { return c.list.Name }
func (c class) Eval(ctx context.Context, in *Input) (Outcome, error) {
	return c.list.eval(ctx, in)
}

// isPostmaster reports the bare "postmaster" recipient, which RFC 5321
// section 4.5.1 requires to be accepted without a domain; Postfix's
// smtpd_check_rcpt() accepts it before any restriction.
func isPostmaster(rcpt string) bool { return strings.EqualFold(rcpt, "postmaster") }
