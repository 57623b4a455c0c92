package restriction

import "net/netip"

// Facts are what the edge knows about a session at one stage: everything a
// restriction may look at. All of it comes from the SMTP client (or from
// DNS about it) and is untrusted.
type Facts struct {
	Stage Stage
	// SessionID is the edge's id of the session, for logs.
	SessionID string
	// ClientAddr is the client IP address; the zero Addr means unknown.
	ClientAddr netip.Addr
	// ClientName is the verified client host name; "" or "unknown" when
	// there is none.
	ClientName string
	// ReverseClientName is the unverified PTR name; "" or "unknown".
	ReverseClientName string
	// ClientNameStatus and ReverseClientNameStatus say how the names were
	// found; NameUnresolved when nobody looked them up yet.
	ClientNameStatus, ReverseClientNameStatus NameStatus
	// HELO is the HELO/EHLO argument; "" before HELO/EHLO.
	HELO string
	// SASLUsername is the authenticated user; "" without AUTH.
	SASLUsername string
	// SASLMethod is the AUTH mechanism used, e.g. "PLAIN".
	SASLMethod string
	// UnauthPipelining reports that the client sent commands ahead of a
	// reply where RFC 2920 does not allow it (reject_unauth_pipelining).
	UnauthPipelining bool
	// Stress reports that the edge was under stress (STRESS_README);
	// policy delegation sends it as "stress=yes".
	Stress bool
	// DeferIfPermit is a defer_if_permit raised at an earlier stage
	// (with smtpd_delay_reject = no), carried by the edge: it turns a
	// later permit at RCPT TO or ETRN into this deferral.
	DeferIfPermit *Reply
	// InTransaction reports that MAIL FROM was accepted; Sender is only
	// meaningful then ("" being the null sender).
	InTransaction bool
	Sender        string
	// Recipient is the address checked at RCPT and VRFY; at DATA and
	// END-OF-MESSAGE the only recipient when there is exactly one.
	Recipient      string
	RecipientCount int
	// Size is the message size: the SIZE= of MAIL FROM, the real size at
	// END-OF-MESSAGE (0 when unknown).
	Size int64
	// ETRNDomain is the ETRN argument.
	ETRNDomain string
}

// clientName is the client name as Postfix shows it.
func (f *Facts) clientName() string {
	if f.ClientName == "" {
		return "unknown"
	}
	return f.ClientName
}

// clientAddr is the client address as Postfix shows it.
func (f *Facts) clientAddr() string {
	if !f.ClientAddr.IsValid() {
		return "unknown"
	}
	return f.ClientAddr.Unmap().String()
}

// NameAddr is the client as Postfix names it in replies and logs:
// "name[address]", with "unknown" for a name or address not known.
func (f *Facts) NameAddr() string {
	return f.clientName() + "[" + f.clientAddr() + "]"
}
