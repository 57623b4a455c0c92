package restriction

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/smtpgate/smtpgate/services/policy/internal/table"

	"github.com/smtpgate/smtpgate/pkg/mailname"
)

// The open-relay check. Postfix refuses to start when neither the relay
// nor the recipient list holds a restriction that refuses by default
// (see Compile). smtpgate goes further: it evaluates the two lists in the
// abstract, for a stranger (an address outside mynetworks, no AUTH, no
// verified name of its choosing) who sends to a domain this system does not
// serve and chooses everything else: HELO name, sender address, recipient
// local part, and its reverse DNS name. If both lists can end without
// refusing that mail, the configuration is an open relay and is refused,
// with the entry that lets the stranger through. This catches the
// classic mistakes: "check_helo_access" with "localhost.localdomain OK"
// before reject_unauth_destination, sender access tables that whitelist
// the sender's own domain (which anyone can claim), "permit" too early.

// passage is how a stranger's mail to a foreign domain fares in a list.
type passage struct {
	// refused: some restriction always refuses it before anything lets it
	// through.
	refused bool
	// why says what lets it through ("" when it reaches the end of the
	// list): the restriction and, for tables, the entry.
	why string
}

// relayCheck returns an error when a stranger can relay; it starts with
// the position (from pos) of the list that holds what lets it through.
func (e *Engine) relayCheck(pos func(ListKind) string) error {
	relay := e.passage(e.lists[RelayList], 0)
	if relay.refused {
		return nil
	}
	rcpt := e.passage(e.lists[RecipientList], 0)
	if rcpt.refused {
		return nil
	}
	why := func(kind ListKind, p passage) string {
		if p.why == "" {
			return fmt.Sprintf("%s lets it through (no restriction there refuses it)", kind)
		}
		return fmt.Sprintf("%s lets it through: %s", kind, p.why)
	}
	where := RelayList
	if relay.why == "" && rcpt.why != "" {
		where = RecipientList
	}
	return fmt.Errorf("%s: open relay: a client outside mynetworks that does not authenticate can send mail to any domain: %s; %s. "+
		"Put reject_unauth_destination (or defer_unauth_destination) before it", pos(where), why(RelayList, relay), why(RecipientList, rcpt))
}

// passage evaluates l in the abstract.
func (e *Engine) passage(l *List, depth int) passage {
	if l == nil || depth > 20 {
		return passage{}
	}
	warn := false
	for _, r := range l.Items {
		if _, ok := r.(warnIfReject); ok {
			warn = true
			continue
		}
		refuses, opens := e.strangerOutcome(r, depth)
		if opens != "" {
			return passage{why: l.Name + ": " + opens}
		}
		if refuses && !warn {
			return passage{refused: true}
		}
		warn = false
	}
	return passage{}
}

// strangerOutcome says whether r always refuses the stranger's relay
// attempt, or can let it through (and why).
func (e *Engine) strangerOutcome(r Restriction, depth int) (refuses bool, opens string) {
	switch r := r.(type) {
	case fixed:
		switch r.name {
		case "permit":
			return false, "permit"
		case "reject", "defer":
			return true, ""
		}
	case authDestination:
		return r.onUnauth != nil, ""
	case deferIfRestriction:
		// A later permit becomes a deferral: nothing can relay after it.
		return r.permit, ""
	case class:
		p := e.passage(r.list, depth+1)
		if p.refused {
			return true, ""
		}
		if p.why != "" {
			return false, "restriction class " + p.why
		}
		return false, ""
	case *policyService:
		// What a policy server answers cannot be known here; Postfix's
		// documentation says to put it after reject_unauth_destination.
		return false, r.Name() + " (a policy server may answer OK; put it after reject_unauth_destination)"
	case accessMap:
		return false, e.openingEntry(r.name, r.target, r, depth)
	case bareTable:
		// In the relay and recipient lists a bare table is
		// check_recipient_access.
		return false, e.openingEntry("check_recipient_access", targetRecipient, accessMap{name: "check_recipient_access", spec: r.spec, tbl: r.tbl, target: targetRecipient, env: r.env}, depth)
	}
	return false, ""
}

// openingEntry returns the first entry of an access table that a
// stranger can trigger and that permits, or "".
func (e *Engine) openingEntry(name string, target accessTarget, m accessMap, depth int) string {
	found := ""
	table.Range(m.tbl, func(entryKey, entryValue string, at table.At) bool {
		key := strings.ToLower(entryKey)
		switch target {
		case targetHELO, targetSender:
			// The client says what it likes.
		case targetClient:
			// Addresses cannot be forged and names are verified, but
			// "unknown" is the name of every client without one.
			if m.tbl.Pattern() || key != "unknown" {
				return true
			}
		case targetRecipient:
			// Domains and addresses name the destinations the postmaster
			// chose to relay to; "user@" lets a local part go anywhere.
			if m.tbl.Pattern() || !strings.HasSuffix(key, "@") {
				return true
			}
		default:
			return true
		}
		if e.valuePermits(entryValue, depth) {
			found = fmt.Sprintf("%s %s at %s: %q lets any client that gives %s relay",
				name, m.spec, at, entryKey+" "+entryValue, targetWhat(target, entryKey, m.tbl.Pattern()))
			return false
		}
		return true
	})
	return found
}

func targetWhat(t accessTarget, key string, pattern bool) string {
	what := map[accessTarget]string{targetHELO: "HELO", targetSender: "sender", targetClient: "client name", targetRecipient: "recipient"}[t]
	if pattern {
		return "a " + what + " matching " + key
	}
	return what + " " + key
}

// valuePermits reports an access table value that permits (OK, RELAY,
// all digits) or names restrictions that can let a stranger through.
func (e *Engine) valuePermits(value string, depth int) bool {
	v := strings.TrimSpace(value)
	if v == "" {
		return true // an empty value is OK in Postfix
	}
	first := v
	if i := strings.IndexFunc(v, unicode.IsSpace); i >= 0 {
		first = v[:i]
	}
	upper := strings.ToUpper(first)
	switch {
	case upper == "OK" || upper == "RELAY" || mailname.AllDigits(v):
		return true
	case knownAction(upper, v):
		return false
	case strings.ContainsAny(v, "$:"):
		return false
	}
	l, ok := e.values.get(v)
	if !ok {
		return false
	}
	p := e.passage(l, depth+1)
	return !p.refused && p.why != ""
}
