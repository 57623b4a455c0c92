package smtpd

import (
	"context"
	"crypto/tls"
	"fmt"
	"strconv"
	"strings"
	"time"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/maillog"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// The policy seam. Every command handler that needs a verdict calls
// askPolicy (connectCheck at the connection's start), which makes two
// steps:
//
//   - callPolicy: the gRPC call (or the answer policy would give, for a
//     stage it said it always permits), with the session's facts and the
//     defer_if_permit an earlier stage carries;
//   - applyVerdict: the verdict's warnings logged, the verdict mapped to
//     a reply, and what later stages need kept (defer_if_permit, DISCARD).
//
// Replies are made in the reply package; verdicts in policy's.

// askPolicy asks policy about stage and applies its verdict; ok means go
// on with the normal positive reply (a permit, or a DISCARD recorded in
// the session). Any failure is reply.PolicyUnavailable(subject), never a
// permit. A refusal is written to the mail log.
func (s *session) askPolicy(ctx context.Context, stage policyv1.Stage, tx *policyv1.Transaction, subject string) (r reply.Reply, v *policyv1.Verdict, ok bool) {
	v, err := s.callPolicy(ctx, stage, tx)
	if err == nil {
		r, ok, err = s.applyVerdict(ctx, stage, tx, v)
	}
	if err != nil {
		r, v, ok = reply.PolicyUnavailable(subject), nil, false
	}
	if !ok {
		s.logReject(stage, tx, r)
	}
	return r, v, ok
}

// connectCheck asks policy about the new connection. ok is false when the
// reply r must replace the greeting.
func (s *session) connectCheck(ctx context.Context) (r reply.Reply, ok bool) {
	v, err := s.callPolicy(ctx, policyv1.Stage_STAGE_CONNECT, nil)
	if err == nil {
		r, ok, err = s.applyVerdict(ctx, policyv1.Stage_STAGE_CONNECT, nil, v)
	}
	if err != nil {
		return reply.PolicyUnavailableAtConnect(s.l.Hostname), false
	}
	if ok {
		s.verdicts.prepend = append(s.verdicts.prepend, v.GetPrepend()...)
		return reply.Reply{}, true
	}
	// smtpd_delay_reject = no: the refusal is the greeting, and every
	// command but QUIT is refused after it.
	s.verdicts.denied = true
	return r, false
}

// callPolicy calls policy with a timeout. An error means the call failed.
func (s *session) callPolicy(ctx context.Context, stage policyv1.Stage, tx *policyv1.Transaction) (*policyv1.Verdict, error) {
	// A stage policy said it always permits on this listener is
	// answered here as policy would (skip.go).
	// Never the connect stage while the client's names are not known:
	// that check resolves them (smtpd_peername_lookup), once per session
	// or per XCLIENT naming a new address.
	// A client seen within PolicySkipTime has its names remembered.
	unnamed := stage == policyv1.Stage_STAGE_CONNECT && s.client.nameStatus == policyv1.NameStatus_NAME_STATUS_UNSPECIFIED
	if unnamed && s.srv.PolicySkipTime > 0 {
		if c := s.srv.names.get(s.l.Name, s.client.addr, time.Now()); c != nil {
			s.setNames(c)
		}
	}
	resolve := stage == policyv1.Stage_STAGE_CONNECT && s.client.nameStatus == policyv1.NameStatus_NAME_STATUS_UNSPECIFIED
	if s.srv.PolicySkipTime > 0 && !resolve && s.srv.skipped.skip(s.l.Name, stage, time.Now()) {
		if d := s.carried(stage); d != nil {
			return &policyv1.Verdict{Action: policyv1.Action_ACTION_PERMIT, DeferIfPermit: d}, nil
		}
		return permitVerdict, nil
	}
	etrn := ""
	if stage == policyv1.Stage_STAGE_ETRN {
		etrn = s.etrnDomain
	}
	req := &policyv1.CheckRequest{Stage: stage, Session: s.facts(), Transaction: tx, EtrnDomain: etrn, DeferIfPermit: s.carried(stage)}
	if s.srv.PolicyTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.srv.PolicyTimeout)
		defer cancel()
	}
	resp, err := s.srv.Policy.Check(ctx, req)
	if err != nil {
		s.log.ErrorContext(ctx, "policy check failed", "stage", stage.String(), "err", err)
		return nil, fmt.Errorf("policy %s: %w", stage, err)
	}
	if c := resp.GetClientNames(); c != nil && s.client.nameStatus == policyv1.NameStatus_NAME_STATUS_UNSPECIFIED {
		s.setNames(c)
		if s.srv.PolicySkipTime > 0 {
			s.srv.names.put(s.l.Name, s.client.addr, c, time.Now(), s.srv.PolicySkipTime)
		}
	}
	if s.srv.PolicySkipTime > 0 {
		s.srv.skipped.learn(s.l.Name, resp.GetPermitStages(), time.Now(), s.srv.PolicySkipTime)
	}
	return resp.GetVerdict(), nil
}

// permitVerdict is a skipped stage's verdict when it carries no
// defer_if_permit. It is shared and never modified.
var permitVerdict = &policyv1.Verdict{Action: policyv1.Action_ACTION_PERMIT}

// carried is the defer_if_permit an earlier stage raised that goes with
// a request at stage (Postfix smtpd_check.c): CONNECT's with HELO/EHLO,
// the session's with MAIL and ETRN, MAIL's with RCPT and VRFY. DATA and
// END_OF_DATA start afresh.
func (s *session) carried(stage policyv1.Stage) *policyv1.DeferredReply {
	switch stage {
	case policyv1.Stage_STAGE_HELO:
		return s.verdicts.connectDeferIfPermit
	case policyv1.Stage_STAGE_MAIL, policyv1.Stage_STAGE_ETRN:
		if s.verdicts.heloChecked {
			return s.verdicts.heloDeferIfPermit
		}
		return s.verdicts.connectDeferIfPermit
	case policyv1.Stage_STAGE_RCPT, policyv1.Stage_STAGE_VRFY:
		if s.tx != nil {
			return s.tx.deferIfPermit
		}
	}
	return nil
}

// applyVerdict logs the verdict's warnings, maps it to a reply (ok: a
// permit or a DISCARD) and keeps what it says for later stages: the
// defer_if_permit to carry and a DISCARD. err means the answer is
// unusable; the caller fails closed.
func (s *session) applyVerdict(ctx context.Context, stage policyv1.Stage, tx *policyv1.Transaction, v *policyv1.Verdict) (r reply.Reply, ok bool, err error) {
	where := stageName(stage, s.helo.esmtp)
	for _, w := range v.GetWarnings() {
		s.log.WarnContext(ctx, w, "stage", where, "client_name", s.namaddr(), "from", tx.GetSender(), "to", tx.GetRecipient(), "helo", s.helo.name)
		if text, ok := strings.CutPrefix(w, "reject_warning: "); ok {
			// warn_if_reject: Postfix's "NOQUEUE: reject_warning: ..."
			s.logRejectAs("reject_warning", stage, tx, text)
		}
	}
	r, ok, err = reply.FromVerdict(v)
	if err != nil {
		s.log.ErrorContext(ctx, "policy answer unusable", "stage", where, "err", err)
		return reply.Reply{}, false, err
	}
	if !ok {
		s.log.InfoContext(ctx, "reject", "stage", where, "reply", r.Text(), "restriction", v.GetRestriction(), "list", v.GetList())
	}
	switch stage {
	case policyv1.Stage_STAGE_CONNECT:
		s.verdicts.connectDeferIfPermit = v.GetDeferIfPermit()
		s.verdicts.discardConnect = reply.Discards(v)
	case policyv1.Stage_STAGE_HELO:
		// A refused HELO/EHLO leaves the session as it was.
		if ok {
			s.verdicts.heloDeferIfPermit, s.verdicts.heloChecked = v.GetDeferIfPermit(), true
			s.verdicts.discardHELO = reply.Discards(v)
		}
	case policyv1.Stage_STAGE_MAIL:
		if ok && s.tx != nil {
			s.tx.deferIfPermit = v.GetDeferIfPermit()
		}
	}
	if ok && reply.Discards(v) {
		s.logDiscard(ctx, where, v, tx)
		if s.tx != nil && stage != policyv1.Stage_STAGE_CONNECT && stage != policyv1.Stage_STAGE_HELO {
			// From MAIL on, DISCARD is about this transaction: whatever
			// the next hop already has of it is dropped.
			s.tx.discard = true
			s.tx.drop()
		}
	}
	return r, ok, nil
}

// stageName names a stage as Postfix's smtpd logs it ("RCPT", "EHLO",
// "END-OF-MESSAGE"); esmtp tells EHLO from HELO.
func stageName(stage policyv1.Stage, esmtp bool) string {
	switch stage {
	case policyv1.Stage_STAGE_HELO:
		if esmtp {
			return "EHLO"
		}
		return "HELO"
	case policyv1.Stage_STAGE_END_OF_DATA:
		return "END-OF-MESSAGE"
	}
	return strings.TrimPrefix(stage.String(), "STAGE_")
}

// logReject writes Postfix smtpd's reject line for a refusal at stage:
// "NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1
// <x@example.net>: Relay access denied; from=<a@example.org>
// to=<x@example.net> proto=ESMTP helo=<client.example.net>".
func (s *session) logReject(stage policyv1.Stage, tx *policyv1.Transaction, r reply.Reply) {
	s.logRejectAs("", stage, tx, r.Text())
}

// logRejectAs writes a reject line with action ("" for reject, or
// "reject_warning") and the reply's text.
func (s *session) logRejectAs(action string, stage policyv1.Stage, tx *policyv1.Transaction, text string) {
	e := maillog.Reject{Action: action, Stage: stageName(stage, s.helo.esmtp), Client: s.peer(), Reason: text, Proto: s.protocol(), Helo: s.helo.name}
	if s.tx != nil && len(s.tx.rcpts) > 0 {
		e.QueueID = s.tx.queueID
	}
	if tx != nil {
		e.Envelope, e.From, e.To = true, tx.GetSender(), tx.GetRecipient()
	}
	s.mlog.Reject(e)
}

// logDiscard logs a DISCARD verdict as Postfix does ("discard: RCPT from
// name[addr]: <rcpt>: Recipient address triggers DISCARD action; from=<>
// to=<> proto=ESMTP helo=<>"), with the text policy gave in its
// "discard: ..." warning when there is one.
func (s *session) logDiscard(ctx context.Context, where string, v *policyv1.Verdict, tx *policyv1.Transaction) {
	detail := ""
	for _, w := range v.GetWarnings() {
		if d, ok := strings.CutPrefix(w, "discard: "); ok {
			detail = d
			break
		}
	}
	if detail == "" {
		detail = v.GetText()
	}
	if detail == "" {
		detail = "triggers DISCARD action"
	}
	msg := fmt.Sprintf("discard: %s from %s: %s;", where, s.namaddr(), detail)
	if tx != nil {
		msg += " from=<" + tx.GetSender() + ">"
		if tx.GetRecipient() != "" {
			msg += " to=<" + tx.GetRecipient() + ">"
		}
	}
	if s.helo.greeted {
		msg += " proto=" + s.protocol() + " helo=<" + s.helo.name + ">"
	}
	s.log.InfoContext(ctx, msg, "stage", where, "queue_id", tx.GetQueueId(), "restriction", v.GetRestriction(), "list", v.GetList())
}

// facts describes the session for policy.
func (s *session) facts() *policyv1.Session {
	f := &policyv1.Session{
		Id: s.id, Listener: s.l.Name, Origin: s.client.origin,
		ClientAddress: s.client.addr, ClientPort: port(s.client.port),
		ClientName: s.client.name, ReverseClientName: s.client.reverseName,
		ClientNameStatus: s.client.nameStatus, ReverseClientNameStatus: s.client.reverseStatus,
		ServerAddress: s.local.addr, ServerPort: port(s.local.port),
		HeloName: s.helo.name, UnauthPipelining: s.unauthPipelining,
		Stress: s.srv.Limits.stressed(),
	}
	if s.helo.greeted || s.helo.protoSet {
		f.Protocol = s.protocol()
	}
	if st := s.tls.state; st != nil {
		f.Tls = &policyv1.TLS{Version: tlsVersion(st.Version), Cipher: tls.CipherSuiteName(st.CipherSuite), CipherBits: cipherBits(st.CipherSuite), Sni: sni(st.ServerName)}
	}
	if s.sasl.user != "" {
		f.Sasl = &policyv1.SASL{Method: s.sasl.mech, Username: s.sasl.user}
		if s.tx != nil && s.tx.params.auth != nil {
			f.Sasl.Sender = *s.tx.params.auth
		}
	}
	return f
}

func (s *session) txFacts(rcpt string) *policyv1.Transaction {
	t := &policyv1.Transaction{Sender: s.tx.sender, Recipient: rcpt, RecipientCount: uint32(len(s.tx.rcpts)), Size: uint64(s.tx.params.size), QueueId: s.tx.queueID}
	return t
}

func port(p string) uint32 {
	n, _ := strconv.ParseUint(p, 10, 16)
	return uint32(n)
}
