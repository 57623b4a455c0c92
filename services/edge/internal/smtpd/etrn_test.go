package smtpd

import (
	"strings"
	"testing"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

func TestETRN(t *testing.T) {
	etrnRestricted := func(req *policyv1.CheckRequest) (*policyv1.Verdict, error) {
		if req.GetStage() == policyv1.Stage_STAGE_ETRN && req.GetEtrnDomain() == "forbidden.example" {
			return &policyv1.Verdict{Action: policyv1.Action_ACTION_REJECT, Code: 554, EnhancedCode: "5.7.1", Text: "<forbidden.example>: Etrn command rejected: Access denied"}, nil
		}
		return permit(req)
	}
	h := newHarness(t, etrnRestricted, func(l *Listener) { l.HELORequired = true; l.ETRN = true })
	c := h.dial()
	c.reply()
	for _, step := range [][2]string{
		{"ETRN example.org", "503 Error: send HELO/EHLO first"},
		{"EHLO client.example.net", "250-mail.example.org|250-PIPELINING|250-SIZE 10240000|250-ETRN|"},
		{"ETRN", "500 Syntax: ETRN domain"},
		{"ETRN a b", "500 Syntax: ETRN domain"},
		{"ETRN bad..domain", "501 Error: invalid parameter syntax"},
		{"ETRN 1.2.3.4", "501 Error: invalid parameter syntax"},
		{"ETRN example.org", "459 <example.org>: service unavailable"},
		{"ETRN @example.org", "459 <example.org>: service unavailable"},
		{"ETRN #[192.0.2.1]", "459 <[192.0.2.1]>: service unavailable"},
		{"ETRN forbidden.example", "554 5.7.1 <forbidden.example>: Etrn command rejected"},
		{"MAIL FROM:<a@example.net>", "250"},
		{"ETRN example.org", "503 Error: MAIL transaction in progress"},
	} {
		c.do(step[0], step[1])
	}
	var domains []string
	for _, r := range h.requests() {
		if r.GetStage() == policyv1.Stage_STAGE_ETRN {
			domains = append(domains, r.GetEtrnDomain())
		}
	}
	if len(domains) != 4 || domains[0] != "example.org" || domains[2] != "[192.0.2.1]" {
		t.Errorf("etrn_domain sent = %q", domains)
	}
}

func TestETRNNotAdvertised(t *testing.T) {
	h := newHarness(t, permit, nil)
	c := h.dial()
	c.reply()
	if got := c.do("EHLO x", "250"); strings.Contains(got, "ETRN") {
		t.Errorf("ETRN advertised on a listener without it: %q", got)
	}
	c.do("ETRN example.org", "459")
}
