package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/policy/internal/restriction"
)

// This file holds every conversion between the proto messages of
// smtpgate.policy.v1 and the restriction engine's values.

// facts checks a request and turns it into restriction facts.
func facts(req *policyv1.CheckRequest) (*restriction.Facts, error) {
	stage := stageOf(req.GetStage())
	if stage == restriction.StageUnspecified {
		return nil, fmt.Errorf("stage %v is not a check stage", req.GetStage())
	}
	sess := req.GetSession()
	if sess == nil {
		return nil, errors.New("session is missing")
	}
	f := &restriction.Facts{
		Stage:                   stage,
		SessionID:               sess.GetId(),
		ClientName:              sess.GetClientName(),
		ReverseClientName:       sess.GetReverseClientName(),
		ClientNameStatus:        restriction.NameStatus(sess.GetClientNameStatus()),
		ReverseClientNameStatus: restriction.NameStatus(sess.GetReverseClientNameStatus()),
		HELO:                    sess.GetHeloName(),
		SASLUsername:            sess.GetSasl().GetUsername(),
		SASLMethod:              sess.GetSasl().GetMethod(),
		UnauthPipelining:        sess.GetUnauthPipelining(),
		Stress:                  sess.GetStress(),
		ETRNDomain:              req.GetEtrnDomain(),
	}
	if d := req.GetDeferIfPermit(); d != nil {
		if d.GetCode() < 400 || d.GetCode() > 499 {
			return nil, fmt.Errorf("defer_if_permit: code %d is not a 4xx code", d.GetCode())
		}
		f.DeferIfPermit = &restriction.Reply{Code: int(d.GetCode()), DSN: d.GetEnhancedCode(), Text: d.GetText()}
	}
	if f.ClientNameStatus > restriction.NameForged || f.ReverseClientNameStatus > restriction.NameForged {
		return nil, fmt.Errorf("session: unknown name status %v/%v", sess.GetClientNameStatus(), sess.GetReverseClientNameStatus())
	}
	switch a := sess.GetClientAddress(); a {
	case "", "unknown":
		// Unknown (e.g. XCLIENT ADDR=[UNAVAILABLE]): matches no network.
	default:
		addr, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("session.client_address %q: %w", a, err)
		}
		f.ClientAddr = addr
	}
	if tx := req.GetTransaction(); tx != nil {
		f.InTransaction = true
		f.Sender = tx.GetSender()
		f.Recipient = tx.GetRecipient()
		f.RecipientCount = int(tx.GetRecipientCount())
		f.Size = int64(tx.GetSize())
	}
	switch stage {
	case restriction.HELO:
		if f.HELO == "" {
			return nil, errors.New("stage HELO needs session.helo_name")
		}
	case restriction.Mail, restriction.Data, restriction.EndOfData:
		if !f.InTransaction {
			return nil, fmt.Errorf("stage %s needs a transaction", stage)
		}
	case restriction.Rcpt:
		if !f.InTransaction || f.Recipient == "" {
			return nil, errors.New("stage RCPT needs a transaction with a recipient")
		}
	case restriction.VRFY:
		if f.Recipient == "" {
			return nil, errors.New("stage VRFY needs transaction.recipient")
		}
	case restriction.ETRN:
		if strings.TrimSpace(f.ETRNDomain) == "" {
			return nil, errors.New("stage ETRN needs etrn_domain")
		}
	}
	return f, nil
}

// stageOf maps the API's stage to the engine's; unknown values are
// StageUnspecified.
func stageOf(s policyv1.Stage) restriction.Stage {
	switch s {
	case policyv1.Stage_STAGE_CONNECT:
		return restriction.Connect
	case policyv1.Stage_STAGE_HELO:
		return restriction.HELO
	case policyv1.Stage_STAGE_MAIL:
		return restriction.Mail
	case policyv1.Stage_STAGE_RCPT:
		return restriction.Rcpt
	case policyv1.Stage_STAGE_DATA:
		return restriction.Data
	case policyv1.Stage_STAGE_END_OF_DATA:
		return restriction.EndOfData
	case policyv1.Stage_STAGE_ETRN:
		return restriction.ETRN
	case policyv1.Stage_STAGE_VRFY:
		return restriction.VRFY
	}
	return restriction.StageUnspecified
}

// verdict is the engine's verdict as the API answers it: the reply only
// with a refusal.
func verdict(v restriction.Verdict) *policyv1.Verdict {
	out := &policyv1.Verdict{Restriction: v.Restriction, List: v.List, Disconnect: v.Disconnect, Warnings: v.Warnings}
	for _, h := range v.Prepend {
		name, value, _ := strings.Cut(h, ":")
		out.Prepend = append(out.Prepend, &policyv1.Header{Name: name, Value: strings.TrimLeft(value, " \t")})
	}
	if d := v.DeferIfPermit; d != nil {
		out.DeferIfPermit = &policyv1.DeferredReply{Code: uint32(d.Code), EnhancedCode: d.DSN, Text: d.Text}
	}
	switch v.Action {
	case restriction.ActionPermit:
		out.Action = policyv1.Action_ACTION_PERMIT
		return out
	case restriction.ActionDiscard:
		out.Action = policyv1.Action_ACTION_DISCARD
		return out
	case restriction.ActionReject:
		out.Action = policyv1.Action_ACTION_REJECT
	case restriction.ActionDefer:
		out.Action = policyv1.Action_ACTION_DEFER
	}
	out.Code = uint32(v.Reply.Code)
	out.EnhancedCode = v.Reply.DSN
	out.Text = v.Reply.Text
	return out
}

// permitStages lists the stages e always permits (CheckResponse.permit_stages).
func permitStages(e *restriction.Engine) []policyv1.Stage {
	var out []policyv1.Stage
	for _, st := range []policyv1.Stage{policyv1.Stage_STAGE_CONNECT, policyv1.Stage_STAGE_HELO, policyv1.Stage_STAGE_MAIL,
		policyv1.Stage_STAGE_DATA, policyv1.Stage_STAGE_END_OF_DATA} {
		if e.AlwaysPermits(stageOf(st)) {
			out = append(out, st)
		}
	}
	return out
}

// step is one evaluated restriction as Explain shows it.
func step(st restriction.Step) *policyv1.Step {
	out := &policyv1.Step{List: st.List, Restriction: st.Restriction, Result: st.Result.String(), Depth: uint32(st.Depth), Warned: st.Warned}
	if st.Reply.Code != 0 {
		out.Reply = st.Reply.String()
	}
	for _, l := range st.Lookups {
		out.Lookups = append(out.Lookups, &policyv1.Lookup{Table: l.Table, Key: l.Key, Found: l.Found, Value: l.Value, Position: l.Pos})
	}
	return out
}

// clientNames converts the client's names for the edge.
func clientNames(c restriction.ClientNames) *policyv1.ClientNames {
	return &policyv1.ClientNames{Name: c.Name, ReverseName: c.ReverseName,
		NameStatus: policyv1.NameStatus(c.NameStatus), ReverseNameStatus: policyv1.NameStatus(c.ReverseNameStatus)}
}

// factsNames are the names the facts hold (resolved or given).
func factsNames(f *restriction.Facts) restriction.ClientNames {
	return restriction.ClientNames{Name: f.ClientName, ReverseName: f.ReverseClientName, NameStatus: f.ClientNameStatus, ReverseNameStatus: f.ReverseClientNameStatus}
}
