package restriction

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"github.com/smtpgate/smtpgate/pkg/mailname"
	"github.com/smtpgate/smtpgate/pkg/resolver"
)

// The weighted DNS list check, after postscreen's postscreen_dnsbl_sites
// and postscreen_dnsbl_threshold: reject_dnsbl_score asks every site of
// smtpgate_dnsbl_sites about the client address at once, adds the weights
// of those that list it (an allow list has a negative weight), and refuses
// when the sum reaches smtpgate_dnsbl_threshold. One listing on a
// trustworthy list can outweigh two on others, and an allow list can
// cancel a listing. A site that does not answer counts zero (the benefit
// of the doubt, as Postfix gives).

// dnsblSite is one "domain[=filter][*weight]" of smtpgate_dnsbl_sites.
type dnsblSite struct {
	spec   string
	domain string
	filter *ipFilter
	weight int
}

// parseDNSBLSite parses one site; the weight defaults to 1.
func parseDNSBLSite(s string) (dnsblSite, error) {
	site := dnsblSite{spec: s, weight: 1}
	rest := s
	if i := strings.LastIndexByte(rest, '*'); i >= 0 {
		w, err := strconv.Atoi(rest[i+1:])
		if err != nil {
			return site, fmt.Errorf("site %q: weight %q is not a number", s, rest[i+1:])
		}
		site.weight, rest = w, rest[:i]
	}
	domain, filter, hasFilter := strings.Cut(rest, "=")
	if domain == "" || !mailname.ValidHostname(strings.TrimSuffix(domain, ".")) {
		return site, fmt.Errorf("site %q: %q is not a domain name", s, domain)
	}
	site.domain = strings.TrimSuffix(domain, ".")
	if hasFilter {
		f, err := parseIPFilter(filter)
		if err != nil {
			return site, fmt.Errorf("site %q: %w", s, err)
		}
		site.filter = f
	}
	return site, nil
}

// dnsblScore is reject_dnsbl_score.
type dnsblScore struct {
	sites     []dnsblSite
	threshold int
	code      int // maps_rbl_reject_code
	dns       *resolver.Resolver
}

func (dnsblScore) Name() string { return "reject_dnsbl_score" }

func (r dnsblScore) Eval(ctx context.Context, in *Input) (Outcome, error) {
	a := in.Facts.ClientAddr.Unmap()
	if !a.IsValid() || len(r.sites) == 0 {
		return Outcome{}, nil
	}
	rev := reverseLabels(a)
	type answer struct {
		addrs []netip.Addr
		err   error
	}
	answers := make([]answer, len(r.sites))
	var wg sync.WaitGroup
	for i, s := range r.sites {
		wg.Go(func() {
			lctx, end := dnsSpan(ctx, rev+s.domain, dns.TypeA)
			addrs, err := r.dns.LookupA(lctx, rev+s.domain)
			end(err)
			answers[i] = answer{addrs, err}
		})
	}
	wg.Wait()
	score := 0
	var listed []string
	for i, s := range r.sites {
		ans := answers[i]
		if in.st.tracingLookups() {
			recs := make([]string, len(ans.addrs))
			for j, x := range ans.addrs {
				recs[j] = x.String()
			}
			traceDNS(in, rev+s.domain, dns.TypeA, recs, ans.err)
		}
		if classify(ans.err) != dnsFound || (s.filter != nil && !s.filter.matchAny(ans.addrs)) {
			continue
		}
		score += s.weight
		if s.weight > 0 {
			listed = append(listed, s.domain)
		}
	}
	if score < r.threshold || len(listed) == 0 {
		return Outcome{}, nil
	}
	return in.Refuse(r.code, "5.7.1", "Service unavailable; %s [%s] blocked using %s (score %d)",
		classClient, a, strings.Join(listed, ", "), score), nil
}

// compileDNSBLScore builds reject_dnsbl_score from its parameters.
func (c *compiler) compileDNSBLScore(errorf func(string, ...any)) Restriction {
	if c.opts.DNS == nil {
		errorf("%s", needsResolver("reject_dnsbl_score"))
		return nil
	}
	r := dnsblScore{dns: c.opts.DNS, code: c.code("maps_rbl_reject_code")}
	for _, s := range c.cfg.List("smtpgate_dnsbl_sites") {
		site, err := parseDNSBLSite(s)
		if err != nil {
			c.errs = append(c.errs, c.cfg.Errorf("smtpgate_dnsbl_sites", "%v", err))
			continue
		}
		r.sites = append(r.sites, site)
	}
	if len(r.sites) == 0 {
		errorf("reject_dnsbl_score needs smtpgate_dnsbl_sites")
		return nil
	}
	n, err := strconv.Atoi(c.cfg.Get("smtpgate_dnsbl_threshold"))
	if err != nil || n < 1 {
		c.errs = append(c.errs, c.cfg.Errorf("smtpgate_dnsbl_threshold", "want a whole number of at least 1"))
		return nil
	}
	r.threshold = n
	return r
}
