package resolver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// query asks the servers for k: Attempts rounds over the servers, the
// first NOERROR or NXDOMAIN reply wins. Anything else (timeouts, SERVFAIL,
// REFUSED, replies that do not match the question) moves on to the next
// server and, when all fail, becomes a temporary entry.
func (r *Resolver) query(ctx context.Context, k key) *entry {
	q := new(dns.Msg)
	q.SetQuestion(k.name, k.qtype)
	q.RecursionDesired = true
	q.SetEdns0(ednsSize, false)
	var (
		last  error
		rcode = dns.RcodeServerFailure
	)
	for range r.attempts {
		for _, srv := range r.servers {
			resp, err := r.exchange(ctx, q, srv)
			if err != nil {
				last = fmt.Errorf("%s: %w", srv, err)
				continue
			}
			switch resp.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
				e, err := r.interpret(k, resp)
				if err != nil {
					last = fmt.Errorf("%s: %w", srv, err)
					continue
				}
				return e
			}
			rcode = resp.Rcode
			last = fmt.Errorf("%s answered %s", srv, dns.RcodeToString[resp.Rcode])
		}
	}
	if last == nil {
		last = errors.New("no server to ask")
	}
	return &entry{kind: temporary, rcode: rcode, final: k.name, cause: last.Error(), expires: r.now().Add(r.errorTTL)}
}

// exchange sends q to srv over UDP, and again over TCP when the reply is
// truncated, each with its own timeout.
func (r *Resolver) exchange(ctx context.Context, q *dns.Msg, srv string) (*dns.Msg, error) {
	resp, err := r.exchangeOnce(ctx, r.udp, q, srv)
	if resp != nil && resp.Truncated {
		// A truncated reply may not even unpack: it is asked again
		// whatever err says (RFC 7766 §5).
		r.stats.tcpRetries.Add(1)
		resp, err = r.exchangeOnce(ctx, r.tcp, q, srv)
		if err == nil && resp.Truncated {
			err = errors.New("truncated reply over TCP")
		}
	}
	if err != nil {
		return nil, err
	}
	if !resp.Response || resp.Opcode != dns.OpcodeQuery {
		return nil, errors.New("reply is not a query response")
	}
	if resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError {
		want := q.Question[0]
		if len(resp.Question) != 1 || resp.Question[0].Qtype != want.Qtype ||
			resp.Question[0].Qclass != want.Qclass || !strings.EqualFold(resp.Question[0].Name, want.Name) {
			return nil, errors.New("reply to another question")
		}
	}
	return resp, nil
}

func (r *Resolver) exchangeOnce(ctx context.Context, c *dns.Client, q *dns.Msg, srv string) (*dns.Msg, error) {
	m := q.Copy()
	m.Id = dns.Id()
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	r.stats.queries.Add(1)
	resp, _, err := c.ExchangeContext(ctx, m, srv)
	return resp, err
}

// interpret reads a NOERROR or NXDOMAIN reply: it follows the CNAME chain
// from the name asked within the answer section and keeps the final
// name's records of the asked type (RFC 1034 §4.3.2, RFC 2308 §2).
func (r *Resolver) interpret(k key, resp *dns.Msg) (*entry, error) {
	final := k.name
	ttl := uint32(math.MaxUint32)
	var records []string
	for hops := 0; ; hops++ {
		for _, rr := range resp.Answer {
			h := rr.Header()
			if h.Rrtype == k.qtype && h.Class == dns.ClassINET && strings.EqualFold(h.Name, final) {
				records = append(records, rdata(rr))
				ttl = min(ttl, h.Ttl)
			}
		}
		if len(records) > 0 || k.qtype == dns.TypeCNAME {
			break
		}
		next := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && c.Hdr.Class == dns.ClassINET && strings.EqualFold(c.Hdr.Name, final) {
				next = strings.ToLower(c.Target)
				ttl = min(ttl, c.Hdr.Ttl)
				break
			}
		}
		if next == "" {
			break
		}
		if hops == maxCNAMEs {
			return nil, fmt.Errorf("CNAME chain longer than %d", maxCNAMEs)
		}
		final = next
	}
	now := r.now()
	e := &entry{final: final, rcode: resp.Rcode}
	if len(records) > 0 {
		// NXDOMAIN with records of the final name would be a broken
		// server; the records are believed, as stub resolvers do.
		e.kind, e.rcode, e.records = positive, dns.RcodeSuccess, records
		e.expires = now.Add(min(max(time.Duration(ttl)*time.Second, r.minTTL), r.maxTTL))
		return e, nil
	}
	e.kind = noData
	if resp.Rcode == dns.RcodeNameError {
		e.kind = notFound
	}
	neg := noSOATTL
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			// RFC 2308 §5: the smaller of the SOA's TTL and MINIMUM.
			neg = time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
			break
		}
	}
	if final != k.name {
		neg = min(neg, time.Duration(ttl)*time.Second)
	}
	e.expires = now.Add(min(neg, r.negMaxTTL))
	return e, nil
}

// rdata renders rr's data in presentation form: addresses as such, domain
// names lower-cased, TXT unescaped and joined, others as dns prints them.
func rdata(rr dns.RR) string {
	switch v := rr.(type) {
	case *dns.A:
		return v.A.String()
	case *dns.AAAA:
		return v.AAAA.String()
	case *dns.MX:
		return fmt.Sprintf("%d %s", v.Preference, strings.ToLower(v.Mx))
	case *dns.PTR:
		return strings.ToLower(v.Ptr)
	case *dns.CNAME:
		return strings.ToLower(v.Target)
	case *dns.NS:
		return strings.ToLower(v.Ns)
	case *dns.TXT:
		var b strings.Builder
		for _, s := range v.Txt {
			b.WriteString(unescapeTXT(s))
		}
		return b.String()
	}
	return strings.TrimPrefix(rr.String(), rr.Header().String())
}

// unescapeTXT undoes the escaping the dns package applies to a
// character-string it unpacks: \X for '"' and '\', \DDD for other bytes
// outside printable ASCII.
func unescapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b = append(b, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			n := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if n <= 255 {
				b = append(b, byte(n))
				i += 3
				continue
			}
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
