package restriction

import (
	"context"
	"strings"

	"github.com/smtpgate/smtpgate/services/policy/internal/address"
	"github.com/smtpgate/smtpgate/services/policy/internal/matchlist"
	"github.com/smtpgate/smtpgate/services/policy/internal/table"
)

// maps is a table-list parameter (local_recipient_maps...): searched in
// order, first match wins.
type maps struct {
	param  string
	tables []table.Table
}

func (m maps) empty() bool { return len(m.tables) == 0 }

// find looks an address up as Postfix's mail_addr_find() does:
// "user+ext@domain", "user@domain", then for a local domain "user+ext" and
// "user", then "@domain". Only the first key goes to pattern tables.
func (m maps) find(ctx context.Context, in *Input, a address.Address, delimiter string, local bool) (string, bool, error) {
	bare := stripExtension(a.Local, delimiter)
	type key struct {
		k       string
		partial bool
	}
	// At most five keys: room for them on the stack.
	keys := make([]key, 0, 5)
	at := func(l string) string {
		if a.HasDomain {
			return l + "@" + a.Domain
		}
		return l
	}
	keys = append(keys, key{at(a.Local), false})
	if bare != a.Local {
		keys = append(keys, key{at(bare), true})
	}
	if local && a.HasDomain {
		keys = append(keys, key{a.Local, true})
		if bare != a.Local {
			keys = append(keys, key{bare, true})
		}
	}
	if a.HasDomain {
		keys = append(keys, key{"@" + a.Domain, true})
	}
	for _, k := range keys {
		for _, t := range m.tables {
			if k.partial && t.Pattern() {
				continue
			}
			v, ok, err := t.Lookup(ctx, k.k)
			in.lookup(Lookup{Table: m.param + " " + t.Name(), Key: k.k, Found: ok, Value: v})
			if err != nil {
				return "", false, err
			}
			if ok {
				return v, true, nil
			}
		}
	}
	return "", false, nil
}

// validRecipients are the tables of valid addresses by address class
// (check_rcpt_maps() in smtpd_check.c, LOCAL_RECIPIENT_README,
// VIRTUAL_README).
type validRecipients struct {
	dest                                       *Destinations
	local, virtualAlias, virtualMailbox, relay maps
	delimiter                                  string
	showTable                                  bool
}

// unlisted is reject_unlisted_recipient and reject_unlisted_sender.
type unlisted struct {
	name   string
	sender bool
	valid  *validRecipients
}

func (r unlisted) Name() string { return r.name }
func (r unlisted) Eval(ctx context.Context, in *Input) (Outcome, error) {
	f := in.Facts
	if r.sender {
		if !f.InTransaction || f.Sender == "" {
			return Outcome{}, nil
		}
		return r.valid.check(ctx, in, f.Sender, true)
	}
	if f.Recipient == "" {
		return Outcome{}, nil
	}
	return r.valid.check(ctx, in, f.Recipient, false)
}

// check refuses an address of a domain this system handles that its
// class's table does not list.
func (v *validRecipients) check(ctx context.Context, in *Input, addr string, sender bool) (Outcome, error) {
	st := in.st
	if st.warnIfReject == 0 {
		if sender {
			st.senderMapsChecked = true
		} else {
			st.rcptMapsChecked = true
		}
	}
	a, err := address.Parse(addr)
	if err != nil || !a.HasDomain || a.Literal {
		return Outcome{}, nil
	}
	class, dsn := classRecipient, "5.1.1"
	if sender {
		class, dsn = classSender, "5.1.0"
	}
	// Addresses that a virtual alias rewrites are valid.
	if _, ok, err := v.virtualAlias.find(ctx, in, a, v.delimiter, false); err != nil || ok {
		return Outcome{}, err
	}
	unknown := func(code int, where string) Outcome {
		suffix := ""
		if v.showTable {
			suffix = " in " + where + " table"
		}
		return in.Refuse(code, dsn, "<%s>: %s rejected: User unknown%s", addr, class, suffix)
	}
	check := func(m maps, local bool, code int, where string) (Outcome, error) {
		if m.empty() {
			return Outcome{}, nil
		}
		_, ok, err := m.find(ctx, in, a, v.delimiter, local)
		if err != nil || ok {
			return Outcome{}, err
		}
		return unknown(code, where), nil
	}
	// Which class the domain is in; a domain list's table that fails
	// fails the check (closed).
	list := -1
	lists := [4]*matchlist.Domains{v.dest.Final[0], v.dest.Final[1], v.dest.Final[2], v.dest.Relay}
	for i, d := range lists {
		ok, err := d.Match(ctx, a.Domain)
		if err != nil {
			return Outcome{}, err
		}
		if ok {
			list = i
			break
		}
	}
	switch list {
	case 0:
		// Postfix's queue manager absorbs these local parts itself.
		switch strings.ToLower(a.Local) {
		case "postmaster", "mailer-daemon", "double-bounce":
			return Outcome{}, nil
		}
		return check(v.local, true, in.codes.UnknownLocal, "local recipient")
	case 1:
		return unknown(in.codes.UnknownVirtualAlias, "virtual alias"), nil
	case 2:
		return check(v.virtualMailbox, false, in.codes.UnknownVirtualMailbox, "virtual mailbox")
	case 3:
		return check(v.relay, false, in.codes.UnknownRelay, "relay recipient")
	}
	return Outcome{}, nil
}

// senderLogin is reject_authenticated_sender_login_mismatch,
// reject_unauthenticated_sender_login_mismatch and
// reject_known_sender_login_mismatch, with smtpd_sender_login_maps
// giving the SASL logins that own a sender address.
type senderLogin struct {
	name string
	// auth checks logged-in clients, unauth the others; allowUnknown lets
	// a logged-in client use an address that has no owner.
	auth, unauth, allowUnknown bool
	owners                     maps
	delimiter                  string
}

func (r senderLogin) Name() string { return r.name }
func (r senderLogin) Eval(ctx context.Context, in *Input) (Outcome, error) {
	f := in.Facts
	if !f.InTransaction || f.Sender == "" || r.owners.empty() {
		return Outcome{}, nil
	}
	a, err := address.Parse(f.Sender)
	if err != nil {
		return Outcome{}, nil
	}
	owners, found, err := r.owners.find(ctx, in, a, r.delimiter, false)
	if err != nil {
		return Outcome{}, err
	}
	switch {
	case f.SASLUsername != "" && r.auth:
		if !found {
			if r.allowUnknown {
				return Outcome{}, nil
			}
		} else {
			for _, o := range strings.FieldsFunc(owners, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' }) {
				if strings.EqualFold(o, f.SASLUsername) {
					return Outcome{}, nil
				}
			}
		}
		return in.Refuse(553, "5.7.1", "<%s>: Sender address rejected: not owned by user %s", f.Sender, f.SASLUsername), nil
	case f.SASLUsername == "" && r.unauth:
		if found {
			return in.Refuse(553, "5.7.1", "<%s>: Sender address rejected: not logged in", f.Sender), nil
		}
	}
	return Outcome{}, nil
}
