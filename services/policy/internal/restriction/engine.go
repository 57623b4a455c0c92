package restriction

import (
	"context"
	"fmt"
	"net/netip"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/smtpgate/smtpgate/pkg/resolver"
)

// tracerName is the instrumentation scope of the restriction spans.
const tracerName = "github.com/smtpgate/smtpgate/services/policy/internal/restriction"

// List is a compiled restriction list: one of the top-level lists, a
// restriction class, or the restrictions an access table entry names.
type List struct {
	// Name is the parameter that holds the list (a class is a parameter
	// too), or the table entry.
	Name  string
	Items []Restriction
}

// Step is one restriction evaluated, for Explain.
type Step struct {
	List        string
	Restriction string
	// Depth is 0 in a top-level list, 1 inside a class or table entry
	// named there, and so on.
	Depth   int
	Lookups []Lookup
	Result  Result
	// Reply is the refusal, or the refusal warn_if_reject turned into a
	// warning (Warned set).
	Reply  Reply
	Warned bool
}

// Lookup is one table lookup made by a restriction.
type Lookup struct {
	Table string
	Key   string
	Found bool
	Value string
	// Pos is the "file:line" of the entry found, when known.
	Pos string
}

// warnIfReject is the pseudo-restriction warn_if_reject: the next
// restriction logs what it would have refused instead of refusing.
type warnIfReject struct{}

func (warnIfReject) Name() string { return "warn_if_reject" }
func (warnIfReject) Eval(context.Context, *Input) (Outcome, error) {
	return Outcome{}, nil
}

// eval runs the list left to right until a restriction permits or
// refuses (generic_checks() in smtpd_check.c). The end of the list is
// Dunno: it permits this list only.
//
// When ctx holds a recording span, each restriction evaluated gets a child
// span named after it (list, depth, result and reply code as attributes);
// otherwise tracing costs one check per list.
func (l *List) eval(ctx context.Context, in *Input) (Outcome, error) {
	st := in.st
	var tracer trace.Tracer
	if parent := trace.SpanFromContext(ctx); parent.IsRecording() {
		tracer = parent.TracerProvider().Tracer(tracerName)
	}
	st.recursion++
	defer func() {
		st.recursion--
		// A list that ends with warn_if_reject leaves nothing to warn.
		if st.warnIfReject > st.recursion {
			st.warnIfReject = 0
		}
	}()
	for _, r := range l.Items {
		if st.discard {
			break
		}
		if _, ok := r.(warnIfReject); ok {
			if st.warnIfReject == 0 {
				st.warnIfReject = st.recursion
			}
			if st.trace != nil {
				*st.trace = append(*st.trace, Step{List: l.Name, Restriction: r.Name(), Depth: st.recursion - 1})
			}
			continue
		}
		idx := -1
		saved := st.lookupStep
		if st.trace != nil {
			idx = len(*st.trace)
			*st.trace = append(*st.trace, Step{List: l.Name, Restriction: r.Name(), Depth: st.recursion - 1})
			st.lookupStep = idx + 1
		}
		var o Outcome
		var err error
		if tracer != nil {
			o, err = l.evalTraced(ctx, tracer, r, in, st.recursion-1)
		} else {
			o, err = r.Eval(ctx, in)
		}
		st.lookupStep = saved
		if err != nil {
			return Outcome{}, fmt.Errorf("%s: %s: %w", l.Name, r.Name(), err)
		}
		if idx >= 0 {
			s := &(*st.trace)[idx]
			s.Result, s.Reply, s.Warned = o.Result, o.Reply, o.Warned
			if o.Result == Dunno && !o.Warned {
				s.Reply = Reply{}
			}
		}
		if st.warnIfReject >= st.recursion {
			st.warnIfReject = 0
		}
		if o.Result != Dunno {
			if o.Restriction == "" {
				o.Restriction, o.List = r.Name(), l.Name
			}
			return o, nil
		}
		if st.deferIfPermit != nil && st.deferIfReject != nil {
			break
		}
	}
	return Outcome{}, nil
}

// evalTraced evaluates r in a span of its own.
func (l *List) evalTraced(ctx context.Context, tracer trace.Tracer, r Restriction, in *Input, depth int) (Outcome, error) {
	ctx, span := tracer.Start(ctx, r.Name(), trace.WithAttributes(
		attribute.String("smtpgate.restriction.list", l.Name),
		attribute.Int("smtpgate.restriction.depth", depth),
	))
	defer span.End()
	o, err := r.Eval(ctx, in)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "restriction failed")
		return o, err
	}
	span.SetAttributes(attribute.String("smtpgate.restriction.result", o.Result.String()))
	if o.Reply.Code != 0 && (o.Result == Refuse || o.Warned) {
		span.SetAttributes(attribute.Int("smtpgate.reply.code", o.Reply.Code), attribute.String("smtpgate.reply.dsn", o.Reply.DSN))
	}
	if o.Warned {
		span.SetAttributes(attribute.Bool("smtpgate.restriction.warned", true))
	}
	return o, nil
}

// Engine evaluates the restriction lists of one configuration view (main.cf
// with one listener's master.cf -o overrides). It is immutable and safe for
// concurrent use.
type Engine struct {
	lists       map[ListKind]*List
	delayReject bool
	codes       Codes
	unlisted    unlistedPolicy
	valid       *validRecipients
	// values compiles the restrictions named by access table entries.
	values *valueCache
	// plans are the plans of every stage, computed by Compile.
	plans map[planKey][]phase
	// dns resolves the client's names (nil: not resolved) when
	// peernameLookup (smtpd_peername_lookup).
	dns            *resolver.Resolver
	peernameLookup bool
}

// ResolveClient finds the client's names as Postfix's smtpd does once
// per session (smtpd_peer.c): with smtpd_peername_lookup = no, or
// without a resolver, both are "unknown" (NamePermanent).
func (e *Engine) ResolveClient(ctx context.Context, addr netip.Addr) ClientNames {
	if !e.peernameLookup || e.dns == nil {
		return unknownNames
	}
	return resolveClient(ctx, nil, e.dns, addr)
}

// planAll fills e.plans.
func (e *Engine) planAll() {
	e.plans = map[planKey][]phase{}
	for s := Connect; s <= VRFY; s++ {
		for _, helo := range []bool{false, true} {
			for _, tx := range []bool{false, true} {
				for _, pm := range []bool{false, true} {
					f := &Facts{Stage: s, InTransaction: tx}
					if helo {
						f.HELO = "x"
					}
					if pm {
						f.Recipient = "postmaster"
					}
					if p, err := e.plan(f); err == nil {
						e.plans[planKey{s, helo, tx, pm}] = p
					}
				}
			}
		}
	}
}

// unlistedPolicy is smtpd_reject_unlisted_sender and
// smtpd_reject_unlisted_recipient.
type unlistedPolicy struct {
	sender, recipient bool
}

// Check returns the verdict for the stage f is about.
func (e *Engine) Check(ctx context.Context, f *Facts) (Verdict, error) {
	return e.check(ctx, f, nil)
}

// Explain is Check that also returns every restriction evaluated, in order.
func (e *Engine) Explain(ctx context.Context, f *Facts) (Verdict, []Step, error) {
	return e.ExplainAppend(ctx, f, []Step{})
}

// ExplainAppend is Explain that appends the steps to buf, so that a
// caller evaluating many checks may reuse one buffer (buf[:0]) once it is
// done with the steps of the previous one. buf must not be nil.
func (e *Engine) ExplainAppend(ctx context.Context, f *Facts, buf []Step) (Verdict, []Step, error) {
	v, err := e.check(ctx, f, &buf)
	return v, buf, err
}

// AlwaysPermits reports whether evaluating stage is a permit whatever
// the facts: the lists it evaluates are empty, or smtpd_delay_reject
// moves them to RCPT TO, and nothing implicit follows them. Such an
// evaluation does nothing (no lookup, no rate limit, no greylisting, no
// log) and its verdict is PERMIT with the defer_if_permit the facts
// carried, so a caller may skip asking. RCPT TO, VRFY and ETRN never
// qualify: their implicit steps depend on the facts.
func (e *Engine) AlwaysPermits(stage Stage) bool {
	empty := func(k ListKind) bool {
		l := e.lists[k]
		return l == nil || len(l.Items) == 0
	}
	switch stage {
	case Connect:
		return e.delayReject || empty(ClientList)
	case HELO:
		return e.delayReject || empty(HELOList)
	case Mail:
		// afterSender: smtpd_reject_unlisted_sender.
		return e.delayReject || empty(SenderList) && !e.unlisted.sender
	case Data:
		return empty(DataList)
	case EndOfData:
		return empty(EndOfDataList)
	}
	return false
}

// Lists returns the lists a stage evaluates, in order (Explain shows it).
func (e *Engine) Lists(f *Facts) ([]ListKind, error) {
	phases, err := e.plan(f)
	if err != nil {
		return nil, err
	}
	var out []ListKind
	for _, p := range phases {
		out = append(out, p.lists...)
	}
	return out, nil
}

// phase is one smtpd_check_*() call of Postfix: lists evaluated in order,
// then what that call does after them.
type phase struct {
	lists []ListKind
	// after runs when no list refused: the implicit unlisted checks and
	// defer_if_permit enforcement.
	after func(ctx context.Context, e *Engine, in *Input) (Outcome, error)
}

func (e *Engine) check(ctx context.Context, f *Facts, trace *[]Step) (Verdict, error) {
	phases, err := e.cachedPlan(f)
	if err != nil {
		return Verdict{}, err
	}
	// One allocation for the state and the input of every list: a list
	// does not keep its input once evaluated.
	sc := &struct {
		st evalState
		in Input
	}{st: evalState{trace: trace}}
	st := &sc.st
	if f.DeferIfPermit != nil {
		r := *f.DeferIfPermit
		st.deferIfPermit = &r
	}
	permit := Verdict{Action: ActionPermit}
	for _, p := range phases {
		// Each smtpd_check_*() starts with SMTPD_CHECK_RESET(): a
		// defer_if_reject or warn_if_reject does not outlive its phase
		// (defer_if_permit does).
		st.deferIfReject, st.warnIfReject = nil, 0
		for _, kind := range p.lists {
			l := e.lists[kind]
			if l == nil || len(l.Items) == 0 {
				continue
			}
			o, err := l.eval(ctx, e.input(&sc.in, f, kind, st))
			if err != nil {
				return Verdict{}, err
			}
			switch o.Result {
			case Refuse:
				return e.finish(refusal(o), st), nil
			case Permit:
				// A permit ends this list only; remember who said it.
				permit.Restriction, permit.List = o.Restriction, o.List
			}
		}
		if p.after != nil {
			in := e.input(&sc.in, f, p.lists[len(p.lists)-1], st)
			o, err := p.after(ctx, e, in)
			if err != nil {
				return Verdict{}, err
			}
			if o.Result == Refuse {
				return e.finish(refusal(o), st), nil
			}
		}
	}
	if st.discard {
		permit.Action = ActionDiscard
	}
	return e.finish(permit, st), nil
}

// input sets in to the input of list kind and returns it.
func (e *Engine) input(in *Input, f *Facts, kind ListKind, st *evalState) *Input {
	*in = Input{Facts: f, kind: kind, Class: kind.replyClass(), defACL: kind.defaultAccess(), codes: e.codes, st: st}
	return in
}

// finish adds what the evaluation collected on the way to a verdict.
func (e *Engine) finish(v Verdict, st *evalState) Verdict {
	v.Warnings = st.warnings
	if v.Action == ActionPermit || v.Action == ActionDiscard {
		v.Prepend = st.prepend
		if st.deferIfPermit != nil {
			r := *st.deferIfPermit
			v.DeferIfPermit = &r
		}
	}
	return v
}

// planKey is what a plan depends on.
type planKey struct {
	stage          Stage
	helo, inTx     bool
	postmasterRcpt bool
}

// cachedPlan is plan, computed once per planKey.
func (e *Engine) cachedPlan(f *Facts) ([]phase, error) {
	k := planKey{stage: f.Stage, helo: f.HELO != "", inTx: f.InTransaction, postmasterRcpt: isPostmaster(f.Recipient)}
	if p, ok := e.plans[k]; ok {
		return p, nil
	}
	return e.plan(f)
}

// plan is the phases a stage evaluates, in order (smtpd_check_client(),
// _helo(), _mail(), _rcpt(), _etrn(), _data() and _eod() in
// smtpd_check.c, called from smtpd.c). With smtpd_delay_reject = yes the
// client, HELO and sender lists wait for RCPT TO (client and HELO for
// ETRN), so that the reply can name the recipient and clients that do not
// expect a refusal at CONNECT or MAIL are not confused
// (https://www.postfix.org/postconf.5.html#smtpd_delay_reject).
func (e *Engine) plan(f *Facts) ([]phase, error) {
	delayed := func(withSender bool) []phase {
		if !e.delayReject {
			return nil
		}
		p := []phase{{lists: []ListKind{ClientList}}}
		if f.HELO != "" {
			p = append(p, phase{lists: []ListKind{HELOList}})
		}
		if withSender && f.InTransaction {
			p = append(p, phase{lists: []ListKind{SenderList}, after: afterSender})
		}
		return p
	}
	switch f.Stage {
	case Connect:
		return e.own(ClientList, nil), nil
	case HELO:
		return e.own(HELOList, nil), nil
	case Mail:
		return e.own(SenderList, afterSender), nil
	case Rcpt, VRFY:
		if isPostmaster(f.Recipient) {
			return nil, nil
		}
		return append(delayed(true), phase{lists: []ListKind{RelayList, RecipientList}, after: afterRecipient}), nil
	case Data:
		return []phase{{lists: []ListKind{DataList}}}, nil
	case EndOfData:
		return []phase{{lists: []ListKind{EndOfDataList}}}, nil
	case ETRN:
		return append(delayed(false), phase{lists: []ListKind{ETRNList}, after: afterETRN}), nil
	}
	return nil, fmt.Errorf("check: unknown stage %d", f.Stage)
}

// own is the plan of CONNECT, HELO and MAIL: their own list, unless
// smtpd_delay_reject moves it to RCPT TO.
func (e *Engine) own(k ListKind, after func(context.Context, *Engine, *Input) (Outcome, error)) []phase {
	if e.delayReject {
		return nil
	}
	return []phase{{lists: []ListKind{k}, after: after}}
}

// afterSender is the end of smtpd_check_mail(): the implicit
// reject_unlisted_sender of smtpd_reject_unlisted_sender.
func afterSender(ctx context.Context, e *Engine, in *Input) (Outcome, error) {
	f := in.Facts
	if !e.unlisted.sender || in.st.senderMapsChecked || in.st.discard || f.Sender == "" {
		return Outcome{}, nil
	}
	o, err := e.valid.check(ctx, in.withName(f.Sender, SenderList.replyClass()), f.Sender, true)
	o.Restriction = "smtpd_reject_unlisted_sender"
	return o, err
}

// afterRecipient is the end of smtpd_check_rcpt(): defer_if_permit, then
// the implicit reject_unlisted_recipient of
// smtpd_reject_unlisted_recipient.
func afterRecipient(ctx context.Context, e *Engine, in *Input) (Outcome, error) {
	if o, ok := deferIfPermitted(in); ok {
		return o, nil
	}
	if !e.unlisted.recipient || in.st.rcptMapsChecked || in.st.discard {
		return Outcome{}, nil
	}
	o, err := e.valid.check(ctx, in, in.Facts.Recipient, false)
	o.Restriction = "smtpd_reject_unlisted_recipient"
	return o, err
}

// afterETRN is the end of smtpd_check_etrn(): defer_if_permit.
func afterETRN(_ context.Context, _ *Engine, in *Input) (Outcome, error) {
	o, _ := deferIfPermitted(in)
	return o, nil
}

// deferIfPermitted turns a permit into the waiting defer_if_permit
// deferral.
func deferIfPermitted(in *Input) (Outcome, bool) {
	d := in.st.deferIfPermit
	if d == nil {
		return Outcome{}, false
	}
	in.st.warnIfReject = 0
	o := in.Refuse(d.Code, d.DSN, "%s", d.Text)
	o.Restriction, o.List = "defer_if_permit", ""
	return o, true
}

// refusal turns a refusing outcome into a verdict.
func refusal(o Outcome) Verdict {
	v := Verdict{Action: ActionReject, Reply: o.Reply, Restriction: o.Restriction, List: o.List}
	if o.Reply.Code < 500 {
		v.Action = ActionDefer
	}
	v.Disconnect = o.Reply.Code == 421 || o.Reply.Code == 521
	return v
}
