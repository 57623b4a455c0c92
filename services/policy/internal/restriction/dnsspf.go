package restriction

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/smtpgate/smtpgate/pkg/mailname"
	"github.com/smtpgate/smtpgate/pkg/resolver"
	"github.com/smtpgate/smtpgate/services/policy/internal/spf"
)

// check_spf is smtpgate's own restriction (Postfix has none built in; it
// is what a policy service such as postfix-policyd-spf-python adds):
// at RCPT TO it evaluates SPF (RFC 7208) for the MAIL FROM identity, or
// the HELO identity for the null sender, prepends a Received-SPF header
// field (§9.1), and acts on the result as the smtpgate_spf_*_action
// parameters say. It never permits: a pass is DUNNO.
//
// With smtpgate_spf_helo_identity = always (RFC 7208 §2.3: checking the
// HELO identity separately is RECOMMENDED; postfix-policyd-spf-python's
// HELO_reject), the HELO identity is evaluated first for every sender,
// with its own Received-SPF field (identity=helo) and the same actions,
// the refusal naming the HELO command; the MAIL FROM identity follows
// unless that refused.

// spfAction is what check_spf does with one result.
type spfAction int

const (
	spfIgnore spfAction = iota // header only
	spfWarn                    // header and a logged warning
	spfDefer                   // 451
	spfReject                  // 550
)

func parseSPFAction(s string) (spfAction, error) {
	switch s {
	case "ignore":
		return spfIgnore, nil
	case "warn":
		return spfWarn, nil
	case "defer":
		return spfDefer, nil
	case "reject":
		return spfReject, nil
	}
	return 0, fmt.Errorf("want reject, defer, warn or ignore, got %q", s)
}

// checkSPF is check_spf.
type checkSPF struct {
	dns      *resolver.Resolver
	receiver string // myhostname
	// fail, softfail, temperror, permerror: the configured actions.
	fail, softFail, tempError, permError spfAction
	// heloAlways: smtpgate_spf_helo_identity = always.
	heloAlways bool
}

func (checkSPF) Name() string { return "check_spf" }

func (r checkSPF) Eval(ctx context.Context, in *Input) (Outcome, error) {
	f := in.Facts
	if f.Stage != Rcpt || !f.InTransaction || !f.ClientAddr.IsValid() {
		return Outcome{}, nil
	}
	s := stateOf(in)
	if s.spfDone {
		return Outcome{}, nil
	}
	s.spfDone = true
	req := spf.Request{IP: f.ClientAddr.Unmap(), Sender: f.Sender, HELO: f.HELO, Receiver: r.receiver}
	if f.Sender == "" && f.HELO == "" {
		return Outcome{}, nil
	}
	if r.heloAlways && f.Sender != "" && f.HELO != "" && !mailname.ValidHostAddr(f.HELO) && !strings.HasPrefix(f.HELO, "[") {
		hreq := req
		hreq.Identity = spf.HELO
		hresp := spf.Check(ctx, spfDNS{r.dns, in}, hreq)
		in.st.prepend = append(in.st.prepend, "Received-SPF: "+spf.ReceivedSPF(hreq, hresp))
		if o := r.act(in, hresp, f.HELO, classHELO); o.Result != Dunno {
			return o, nil
		}
	}
	resp := spf.Check(ctx, spfDNS{r.dns, in}, req)
	in.st.prepend = append(in.st.prepend, "Received-SPF: "+spf.ReceivedSPF(req, resp))
	return r.act(in, resp, f.Sender, classSender), nil
}

// act applies the configured action to one identity's result: a refusal
// naming name of class, a warning, or nothing.
func (r checkSPF) act(in *Input, resp spf.Response, name, class string) Outcome {
	f := in.Facts
	var (
		action spfAction
		detail string
		dsn    = "7.23" // RFC 7372 §3.2: SPF validation failed
	)
	switch resp.Result {
	case spf.Fail:
		action, detail = r.fail, "SPF fail - not authorized"
	case spf.SoftFail:
		action, detail = r.softFail, "SPF softfail - not authorized"
	case spf.TempError:
		action, detail, dsn = r.tempError, "SPF temporary error", "7.24"
	case spf.PermError:
		action, detail, dsn = r.permError, "SPF permanent error", "7.24"
	default: // none, neutral, pass
		return Outcome{}
	}
	switch action {
	case spfReject:
		return in.Refuse(550, "5."+dsn, "<%s>: %s rejected: %s", name, class, detail)
	case spfDefer:
		return in.Refuse(451, "4."+dsn, "<%s>: %s rejected: %s", name, class, detail)
	case spfWarn:
		in.st.warnings = append(in.st.warnings, fmt.Sprintf("warn: <%s>: %s: %s (%s)", name, class, detail, f.clientAddr()))
	}
	return Outcome{}
}

// spfDNS is the resolver as the SPF evaluator wants it, recording each
// lookup for Explain.
type spfDNS struct {
	r  *resolver.Resolver
	in *Input
}

// spfErr maps the resolver's permanent errors to the evaluator's.
func spfErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, resolver.ErrNotFound), errors.Is(err, resolver.ErrInvalidName):
		return fmt.Errorf("%w: %w", spf.ErrNotFound, err)
	case errors.Is(err, resolver.ErrNoData):
		return fmt.Errorf("%w: %w", spf.ErrNoData, err)
	}
	return err
}

func (d spfDNS) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txt, err := lookupTXT(ctx, d.in, d.r, name)
	return txt, spfErr(err)
}

func (d spfDNS) LookupA(ctx context.Context, name string) ([]netip.Addr, error) {
	a, err := lookupAddrs(ctx, d.in, d.r, name, dns.TypeA)
	return a, spfErr(err)
}

func (d spfDNS) LookupAAAA(ctx context.Context, name string) ([]netip.Addr, error) {
	a, err := lookupAddrs(ctx, d.in, d.r, name, dns.TypeAAAA)
	return a, spfErr(err)
}

func (d spfDNS) LookupMX(ctx context.Context, name string) ([]spf.MX, error) {
	mx, err := lookupMX(ctx, d.in, d.r, name)
	out := make([]spf.MX, len(mx))
	for i, m := range mx {
		out[i] = spf.MX{Pref: m.Pref, Host: m.Host}
	}
	return out, spfErr(err)
}

func (d spfDNS) LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error) {
	rev, rerr := resolver.ReverseName(addr)
	ctx, end := dnsSpan(ctx, rev, dns.TypePTR)
	names, err := d.r.LookupPTR(ctx, addr)
	end(err)
	if rerr == nil {
		traceDNS(d.in, rev, dns.TypePTR, names, err)
	}
	return names, spfErr(err)
}
