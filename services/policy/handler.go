package policy

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/smtpgate/smtpgate/pkg/resolver"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/policy/internal/restriction"
)

// handler is the gRPC face of the restriction lists: it implements
// policyv1.PolicyServiceServer by converting each request (convert.go),
// evaluating the listener's lists and converting the verdict back. It
// opens nothing and closes nothing: the lists and metrics are handed to
// it, and its only state is the scratch buffers of Check's trace.
type handler struct {
	policyv1.UnimplementedPolicyServiceServer
	log *slog.Logger
	// listeners are Settings.listeners: "" is main.cf alone.
	listeners map[string]listener
	// metrics are never nil (unregistered without Config.Metrics).
	metrics *metrics
	// steps holds *[]restriction.Step buffers for Check's trace, which
	// is only read before Check returns.
	steps sync.Pool
}

var _ policyv1.PolicyServiceServer = (*handler)(nil)

// Check implements PolicyService.Check.
func (h *handler) Check(ctx context.Context, req *policyv1.CheckRequest) (*policyv1.CheckResponse, error) {
	start := time.Now()
	f, l, err := h.prepare(req)
	if err != nil {
		return nil, err
	}
	ctx = dnsBudget(ctx, time.Now())
	resolved := resolveNames(ctx, l.engine, f)
	buf, _ := h.steps.Get().(*[]restriction.Step)
	if buf == nil {
		buf = &[]restriction.Step{}
	}
	defer func() {
		// Drop the strings and lookups of this check, also those of a
		// failed one (whose steps are not returned).
		clear((*buf)[:cap(*buf)])
		*buf = (*buf)[:0]
		h.steps.Put(buf)
	}()
	v, steps, err := h.evaluate(ctx, l.engine, f, *buf)
	*buf = steps
	if err != nil {
		h.metrics.failed(f.Stage)
		return nil, err
	}
	h.metrics.checked(f.Stage, v, time.Since(start))
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.String("smtpgate.stage", f.Stage.String()), attribute.String("smtpgate.action", v.Action.String()))
		if v.Action != restriction.ActionPermit {
			span.SetAttributes(attribute.String("smtpgate.restriction", v.Restriction), attribute.String("smtpgate.restriction.list", v.List),
				attribute.Int("smtpgate.reply.code", v.Reply.Code))
		}
	}
	h.logVerdict(ctx, req, f, v, steps)
	resp := &policyv1.CheckResponse{Verdict: verdict(v), PermitStages: l.permits}
	if resolved {
		resp.ClientNames = clientNames(factsNames(f))
	}
	return resp, nil
}

// Explain implements PolicyService.Explain: Check with the trace of every
// restriction evaluated.
func (h *handler) Explain(ctx context.Context, req *policyv1.ExplainRequest) (*policyv1.ExplainResponse, error) {
	f, l, err := h.prepare(req.GetCheck())
	if err != nil {
		return nil, err
	}
	ctx = dnsBudget(ctx, time.Now())
	resolveNames(ctx, l.engine, f)
	lists, err := l.engine.Lists(f)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	v, steps, err := h.evaluate(ctx, l.engine, f, []restriction.Step{})
	if err != nil {
		return nil, err
	}
	out := &policyv1.ExplainResponse{Verdict: verdict(v), ClientNames: clientNames(factsNames(f))}
	for _, l := range lists {
		out.Lists = append(out.Lists, string(l))
	}
	for _, st := range steps {
		out.Steps = append(out.Steps, step(st))
	}
	return out, nil
}

// dnsBudget gives the check's DNS lookups what is left of the caller's
// deadline (the edge's smtpgate_policy_timeout) minus a margin for
// evaluating the rest and answering: a tenth of what is left, between
// minDNSMargin and maxDNSMargin. A lookup still running then ends as a
// temporary failure, so that the DNS restriction gives its own reply
// (Postfix's) instead of the call running out (the edge's 451 4.3.0).
func dnsBudget(ctx context.Context, now time.Time) context.Context {
	d, ok := ctx.Deadline()
	if !ok {
		return ctx
	}
	margin := min(max(d.Sub(now)/10, minDNSMargin), maxDNSMargin)
	return resolver.WithDeadline(ctx, d.Add(-margin))
}

// The bounds of dnsBudget's margin.
const (
	minDNSMargin = 200 * time.Millisecond
	maxDNSMargin = time.Second
)

// resolveNames gives the facts the client's names when the request has
// none (the session's first check: Postfix's smtpd resolves them once,
// at connect, and the edge carries them since); resolved says it did.
// A client name the request gives without a status (e.g. an older edge
// behind XCLIENT NAME=) is taken as verified.
func resolveNames(ctx context.Context, e *restriction.Engine, f *restriction.Facts) (resolved bool) {
	if f.ClientNameStatus != restriction.NameUnresolved || (f.ClientName != "" && !strings.EqualFold(f.ClientName, "unknown")) {
		return false
	}
	c := e.ResolveClient(ctx, f.ClientAddr)
	f.ClientName, f.ReverseClientName, f.ClientNameStatus, f.ReverseClientNameStatus = c.Name, c.ReverseName, c.NameStatus, c.ReverseNameStatus
	return true
}

// prepare checks a request and picks the listener's lists.
func (h *handler) prepare(req *policyv1.CheckRequest) (*restriction.Facts, listener, error) {
	f, err := facts(req)
	if err != nil {
		return nil, listener{}, status.Error(codes.InvalidArgument, err.Error())
	}
	name := req.GetSession().GetListener()
	l, ok := h.listeners[name]
	if !ok {
		return nil, listener{}, status.Errorf(codes.InvalidArgument, "unknown listener %q: no such service in master.cf", name)
	}
	return f, l, nil
}

// evaluate runs the engine, traced, so that the log says how a refusal
// was reached; the steps are appended to buf.
func (h *handler) evaluate(ctx context.Context, e *restriction.Engine, f *restriction.Facts, buf []restriction.Step) (restriction.Verdict, []restriction.Step, error) {
	// Always traced, once: a refusal is logged with its trace, and
	// evaluating a second time for the log would repeat what restrictions
	// do (count a rate limit, ask a policy server, greylist).
	v, steps, err := e.ExplainAppend(ctx, f, buf)
	if err != nil {
		h.log.ErrorContext(ctx, "check failed", "session", f.SessionID, "stage", f.Stage.String(), "err", err)
		return v, steps[:0], status.Error(codes.Unavailable, "restriction evaluation failed")
	}
	return v, steps, nil
}

// logVerdict logs refusals with their trace, and warnings, in the words
// Postfix uses (reject, reject_warning, warn, discard).
func (h *handler) logVerdict(ctx context.Context, req *policyv1.CheckRequest, f *restriction.Facts, v restriction.Verdict, steps []restriction.Step) {
	listener := req.GetSession().GetListener()
	for _, w := range v.Warnings {
		h.log.WarnContext(ctx, w, "session", f.SessionID, "listener", listener, "stage", f.Stage.String(), "client", f.NameAddr(),
			"from", f.Sender, "to", f.Recipient, "helo", f.HELO)
	}
	if v.Action == restriction.ActionPermit {
		return
	}
	var trace []string
	for _, st := range steps {
		trace = append(trace, traceLine(st))
	}
	h.log.InfoContext(ctx, "refused", "session", f.SessionID, "listener", listener, "stage", f.Stage.String(),
		"client", f.NameAddr(), "from", f.Sender, "to", f.Recipient, "helo", f.HELO,
		"action", v.Action.String(), "restriction", v.Restriction, "list", v.List, "reply", v.Reply.String(), "trace", trace)
}

// traceLine writes one step for the log: "smtpd_recipient_restrictions:
// check_sender_access hash:/x [a@b.c=REJECT] -> REFUSE 554 5.7.1 ...".
func traceLine(st restriction.Step) string {
	var b strings.Builder
	b.WriteString(strings.Repeat("  ", st.Depth))
	b.WriteString(st.List + ": " + st.Restriction)
	for _, l := range st.Lookups {
		if l.Found {
			fmt.Fprintf(&b, " [%s=%s]", l.Key, l.Value)
		} else {
			fmt.Fprintf(&b, " [%s?]", l.Key)
		}
	}
	b.WriteString(" -> " + st.Result.String())
	if st.Warned {
		b.WriteString(" (warned)")
	}
	if st.Reply.Code != 0 {
		b.WriteString(" " + st.Reply.String())
	}
	return b.String()
}
