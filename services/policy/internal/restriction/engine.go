package restriction

import (
	"context"
	"fmt"
)

// List is a compiled restriction list: one of the top-level lists or a
// restriction class.
type List struct {
	// Name is the parameter that holds the list (a class is a parameter
	// too).
	Name  string
	Items []Restriction
}

// Step is one restriction evaluated, for Explain.
type Step struct {
	List        string
	Restriction string
	Result      Result
	Reply       Reply
}

// eval runs the list left to right until a restriction permits or
// refuses (generic_checks() in smtpd_check.c). The end of the list is
// Dunno: it permits this list only.
func (l *List) eval(ctx context.Context, in *Input) (Outcome, error) {
	for _, r := range l.Items {
		o, err := r.Eval(ctx, in)
		if err != nil {
			return Outcome{}, fmt.Errorf("%s: %s: %w", l.Name, r.Name(), err)
		}
		if o.Result != Dunno && o.Restriction == "" {
			o.Restriction, o.List = r.Name(), l.Name
		}
		if in.trace != nil {
			*in.trace = append(*in.trace, Step{List: l.Name, Restriction: r.Name(), Result: o.Result, Reply: o.Reply})
		}
		if o.Result != Dunno {
			return o, nil
		}
	}
	return Outcome{}, nil
}

// Engine evaluates the restriction lists of one configuration view (main.cf
// with one listener's master.cf -o overrides). It is immutable and safe for
// concurrent use.
type Engine struct {
	lists       map[ListKind]*List
	delayReject bool
	codes       Codes
}

// Check returns the verdict for the stage f is about.
func (e *Engine) Check(ctx context.Context, f *Facts) (Verdict, error) {
	return e.check(ctx, f, nil)
}

// Explain is Check that also returns every restriction evaluated, in order.
func (e *Engine) Explain(ctx context.Context, f *Facts) (Verdict, []Step, error) {
	steps := []Step{}
	v, err := e.check(ctx, f, &steps)
	return v, steps, err
}

func (e *Engine) check(ctx context.Context, f *Facts, trace *[]Step) (Verdict, error) {
	plan, err := e.plan(f)
	if err != nil {
		return Verdict{}, err
	}
	permit := Verdict{Action: ActionPermit}
	for _, kind := range plan {
		l := e.lists[kind]
		if l == nil || len(l.Items) == 0 {
			continue
		}
		in := &Input{Facts: f, Name: kind.replyName(f), Class: kind.replyClass(), codes: e.codes, trace: trace}
		o, err := l.eval(ctx, in)
		if err != nil {
			return Verdict{}, err
		}
		switch o.Result {
		case Refuse:
			return refusal(o), nil
		case Permit:
			// A permit ends this list only; remember who said it.
			permit.Restriction, permit.List = o.Restriction, o.List
		}
	}
	return permit, nil
}

// plan is the lists a stage evaluates, in order (smtpd_check_client(),
// _helo(), _mail(), _rcpt(), _etrn(), _data() and _eod() in
// smtpd_check.c, called from smtpd.c). With smtpd_delay_reject = yes the
// client, HELO and sender lists wait for RCPT TO (client and HELO for
// ETRN), so that the reply can name the recipient and clients that do not
// expect a refusal at CONNECT or MAIL are not confused
// (https://www.postfix.org/postconf.5.html#smtpd_delay_reject).
func (e *Engine) plan(f *Facts) ([]ListKind, error) {
	delayed := func(withSender bool) []ListKind {
		if !e.delayReject {
			return nil
		}
		p := []ListKind{ClientList}
		if f.HELO != "" {
			p = append(p, HELOList)
		}
		if withSender && f.InTransaction {
			p = append(p, SenderList)
		}
		return p
	}
	switch f.Stage {
	case Connect:
		return e.own(ClientList), nil
	case HELO:
		return e.own(HELOList), nil
	case Mail:
		return e.own(SenderList), nil
	case Rcpt, VRFY:
		if isPostmaster(f.Recipient) {
			return nil, nil
		}
		return append(delayed(true), RelayList, RecipientList), nil
	case Data:
		return []ListKind{DataList}, nil
	case EndOfData:
		return []ListKind{EndOfDataList}, nil
	case ETRN:
		return append(delayed(false), ETRNList), nil
	}
	return nil, fmt.Errorf("check: unknown stage %d", f.Stage)
}

// own is the plan of CONNECT, HELO and MAIL: their own list, unless
// smtpd_delay_reject moves it to RCPT TO.
func (e *Engine) own(k ListKind) []ListKind {
	if e.delayReject {
		return nil
	}
	return []ListKind{k}
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
