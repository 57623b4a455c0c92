package smtpd

import (
	"context"
	"errors"
	"strings"
	"time"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/handoff"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// transaction is one mail transaction (MAIL to end of data or RSET).
type transaction struct {
	sender  string
	params  mailParams
	queueID string
	// started is the time of MAIL, the message's arrival for the
	// Message-Id and Date a submission listener adds.
	started time.Time
	rcpts   []string
	prepend []*policyv1.Header
	hand    handoff.Tx
	// deferIfPermit is the MAIL verdict's defer_if_permit, carried to
	// each RCPT of the transaction.
	deferIfPermit *policyv1.DeferredReply
	// discard: a DISCARD verdict (this transaction's or the session's)
	// applies. The client gets the replies of a real delivery, policy is
	// not asked again, and nothing reaches the next hop.
	discard bool
	// body is the content read so far (DATA, or the BDAT chunks), and
	// its hand-off; drop abandons a hand-off under way.
	body *body
	// handing is what the hand-off did (endOfData).
	handing handing
	// chunks is set at the first BDAT chunk accepted: the transaction's
	// content comes by BDAT, and DATA and RCPT are refused.
	chunks *crlfLines
	// overshoot counts the RCPTs refused past smtpd_recipient_limit.
	overshoot int
	// mem and held: what the transaction's recipients and headers took
	// from the memory budget, given back when it ends (memory.go).
	mem  *Memory
	held int64
}

func (s *session) resetTx() {
	if s.tx != nil {
		s.tx.drop()
		s.tx.unhold(s.tx.held)
	}
	s.tx = nil
	s.bdatFailed = false
}

// drop ends the next hop's side of the transaction, if it was opened,
// without delivering: the content's hand-off first (it uses hand until
// it ends), then hand.
func (t *transaction) drop() {
	t.dropBody()
	if t.hand != nil {
		t.hand.Abort()
		t.hand = nil
	}
}

// hold takes n bytes of the memory budget for the transaction; false
// when the budget is spent.
func (t *transaction) hold(n int64) bool {
	if !t.mem.hold(n) {
		return false
	}
	t.held += n
	return true
}

// unhold gives back n bytes taken with hold.
func (t *transaction) unhold(n int64) {
	t.mem.release(n)
	t.held -= n
}

// holdHeaders takes the memory of headers policy asked to prepend.
func (t *transaction) holdHeaders(hs []*policyv1.Header) bool {
	n := int64(0)
	for _, h := range hs {
		n += int64(len(h.GetName())+len(h.GetValue())) + 64
	}
	return t.hold(n)
}

// dropBody forgets the content and abandons its hand-off if under way.
func (t *transaction) dropBody() {
	if t.body != nil {
		_ = t.body.Close()
		t.body = nil
	}
}

// discarding reports whether a session-stage DISCARD applies to every
// transaction.
func (s *session) discarding() bool { return s.verdicts.discardConnect || s.verdicts.discardHELO }

// mail handles MAIL FROM (RFC 5321 §4.1.1.2).
func (s *session) mail(ctx context.Context, arg string) reply.Reply {
	switch {
	case !s.helo.greeted && s.l.HELORequired:
		return reply.NeedHELO
	case s.tx != nil:
		return reply.NestedMail
	case s.l.TLSLevel == TLSEncrypt && s.tls.state == nil:
		return reply.NeedSTARTTLS
	}
	rest, ok := cutKeyword(arg, "FROM")
	if !ok || strings.TrimSpace(rest) == "" {
		return reply.MailSyntax
	}
	addr, params, err := parsePath(rest)
	if err != nil {
		return reply.BadSender
	}
	if addr, ok = envelopeAddress(addr, smtputf8Param(params) && !s.l.DisableSMTPUTF8); !ok {
		return reply.BadSender
	}
	p, err := s.mailParams(params)
	if r, bad := paramReply(err); bad {
		return r
	}
	if s.l.MaxMessageSize > 0 && p.size > s.l.MaxMessageSize {
		return reply.TooBig
	}
	if r, bad := s.strictSMTPUTF8(addr, p.smtputf8); bad {
		return r
	}
	tx := &transaction{params: p, queueID: newID(), started: time.Now(), mem: s.srv.Memory}
	if !tx.hold(txCost + int64(len(addr))) {
		s.log.Warn("memory budget spent: MAIL refused", "held", s.srv.Memory.Held())
		return reply.InsufficientStorage
	}
	// A copy: addr is part of the command line, which need not stay.
	tx.sender = strings.Clone(addr)
	s.tx = tx
	if s.discarding() {
		// DISCARD at CONNECT or HELO: no more checks for this
		// transaction (its 250 is the one a permit gets).
		s.tx.discard = true
		return reply.MailOK
	}
	r, v, ok := s.askPolicy(ctx, policyv1.Stage_STAGE_MAIL, s.txFacts(""), "<"+addr+">")
	if !ok {
		s.resetTx()
		return r
	}
	s.tx.prepend = append(s.tx.prepend, v.GetPrepend()...)
	return reply.MailOK
}

func paramReply(err error) (reply.Reply, bool) {
	if err == nil {
		return reply.Reply{}, false
	}
	var pe *paramError
	if !errors.As(err, &pe) {
		return reply.Reply{}, false
	}
	switch pe.kind {
	case "size":
		return reply.SizeSyntax, true
	case "ret":
		return reply.BadRET, true
	case "envid":
		return reply.BadENVID, true
	case "notify":
		return reply.BadNOTIFY, true
	case "orcpt":
		return reply.BadORCPT, true
	}
	return reply.UnsupportedParam(pe.param), true
}

// rcpt handles RCPT TO (RFC 5321 §4.1.1.3).
func (s *session) rcpt(ctx context.Context, arg string) reply.Reply {
	switch {
	case s.tx == nil:
		return reply.NeedMail
	case s.tx.chunks != nil:
		return reply.RcptAfterBDAT
	}
	rest, ok := cutKeyword(arg, "TO")
	if !ok || strings.TrimSpace(rest) == "" {
		return reply.RcptSyntax
	}
	addr, params, err := parsePath(rest)
	if err == nil && addr != "" {
		addr, ok = envelopeAddress(addr, s.tx.params.smtputf8)
	}
	if err != nil || addr == "" || !ok {
		return reply.BadRecipient
	}
	p, err := parseRcptParams(params)
	if r, bad := paramReply(err); bad {
		return r
	}
	if s.l.MaxRecipients > 0 && len(s.tx.rcpts) >= s.l.MaxRecipients {
		// smtpd_recipient_overshoot_limit: as Postfix, the first ones
		// past the limit are not errors (run counts this one back).
		if s.tx.overshoot++; s.tx.overshoot <= s.l.RecipientOvershootLimit {
			s.errors--
		}
		return reply.TooManyRcpts
	}
	if r, bad := s.strictSMTPUTF8(addr, s.tx.params.smtputf8); bad {
		return r
	}
	// What the session keeps of a recipient is its address, copied out
	// of the command line (whose parameters, ORCPT up to the line's
	// length, go to the next hop and are not kept); it is taken from
	// the memory budget before anything is asked.
	if !s.tx.hold(rcptCost + int64(len(addr))) {
		s.log.Warn("memory budget spent: RCPT refused", "held", s.srv.Memory.Held())
		return reply.InsufficientStorage
	}
	addr = strings.Clone(addr)
	if s.tx.discard {
		// Counted and answered as if accepted; policy is not asked and
		// the next hop never hears of it.
		s.tx.rcpts = append(s.tx.rcpts, addr)
		return reply.RcptOK
	}
	r, v, ok := s.askPolicy(ctx, policyv1.Stage_STAGE_RCPT, s.txFacts(addr), "<"+addr+">")
	if !ok {
		s.tx.unhold(rcptCost + int64(len(addr)))
		return r
	}
	if !s.tx.discard { // the verdict may have been a DISCARD
		if r, ok := s.forward(ctx, addr, p.dsn()); !ok {
			s.tx.unhold(rcptCost + int64(len(addr)))
			return r
		}
		if !s.tx.holdHeaders(v.GetPrepend()) {
			// The recipient is the next hop's already: its headers
			// are dropped rather than the recipient refused.
			s.log.Warn("memory budget spent: policy headers dropped", "queue_id", s.tx.queueID, "held", s.srv.Memory.Held())
		} else {
			s.tx.prepend = append(s.tx.prepend, v.GetPrepend()...)
		}
	}
	s.tx.rcpts = append(s.tx.rcpts, addr)
	if len(s.tx.rcpts) == 1 {
		// Postfix logs this when it creates the queue file, at the
		// first recipient accepted.
		s.mlog.Client(s.tx.queueID, s.peer(), s.sasl.mech, s.sasl.user)
	}
	return reply.RcptOK
}

// forward passes an accepted recipient, with its DSN parameters, to the
// next hop, opening the next hop's transaction at the first one.
func (s *session) forward(ctx context.Context, addr string, dsn handoff.RecipientDSN) (reply.Reply, bool) {
	if s.tx.hand == nil {
		env := handoff.Envelope{Sender: s.tx.sender, Size: s.tx.params.size, Body8Bit: s.tx.params.body8bit, SMTPUTF8: s.tx.params.smtputf8, QueueID: s.tx.queueID, Return: s.tx.params.ret}
		if s.tx.params.envid != nil {
			env.EnvelopeID = *s.tx.params.envid
		}
		start := time.Now()
		hand, err := s.l.NextHop.Begin(ctx, env)
		if err != nil {
			s.logRcptRefused(s.tx, addr, start, err)
			s.srv.Metrics.handoffFailed(s.l.NextHop.String(), err)
			if reply.IsRefusal(err) {
				s.log.InfoContext(ctx, "next hop refused the transaction", "queue_id", s.tx.queueID, "err", err)
			} else {
				s.log.ErrorContext(ctx, "next hop", "queue_id", s.tx.queueID, "err", err)
			}
			return reply.FromHandoff(err), false
		}
		s.tx.hand = hand
	}
	start := time.Now()
	if err := s.tx.hand.Rcpt(ctx, addr, dsn); err != nil {
		s.log.Info("next hop refused recipient", "queue_id", s.tx.queueID, "rcpt", addr, "err", err)
		s.logRcptRefused(s.tx, addr, start, err)
		return reply.FromHandoff(err), false
	}
	return reply.Reply{}, true
}
