package restriction

import (
	"context"
	"errors"
	"time"

	"github.com/smtpgate/smtpgate/services/policy/internal/greylist"
	"github.com/smtpgate/smtpgate/services/policy/internal/matchlist"
)

// checkGreylist is check_greylist: postgrey's greylisting as a
// restriction (put it in smtpd_recipient_restrictions after
// reject_unauth_destination). Clients in mynetworks and authenticated
// clients are not greylisted; a permit_dnswl_client before it lets
// DNS-allow-listed clients through first. Like postgrey, an unknown
// triplet raises defer_if_permit ("450 4.2.0 ... Greylisted"), so a later
// refusal still wins. When the store fails, greylisting is skipped and a
// warning logged.
type checkGreylist struct {
	store greylist.Store
	nets  *matchlist.Networks
	now   func() time.Time
}

func (checkGreylist) Name() string { return "check_greylist" }

func (r checkGreylist) Eval(ctx context.Context, in *Input) (Outcome, error) {
	f := in.Facts
	if f.Stage != Rcpt || f.Recipient == "" || f.SASLUsername != "" || r.nets.Match(f.ClientAddr) {
		return Outcome{}, nil
	}
	a := f.ClientAddr.Unmap()
	if !a.IsValid() {
		return Outcome{}, nil
	}
	bits := 24
	if a.Is6() {
		bits = 64
	}
	network, _ := a.Prefix(bits)
	res, err := r.store.Check(ctx, network.String(), f.Sender, f.Recipient, r.now())
	if err != nil {
		if errors.Is(err, greylist.ErrStore) {
			in.st.warnings = append(in.st.warnings, "greylisting skipped: "+err.Error())
			return Outcome{}, nil
		}
		return Outcome{}, err
	}
	state := "passed"
	if res.Allowlisted {
		state = "client allowlisted"
	}
	if !res.Pass {
		state = "greylisted"
		in.deferIf(&in.st.deferIfPermit, 450, "4.2.0", "<%s>: %s rejected: Greylisted, try again in %d seconds",
			in.Name(), in.Class, int((res.Wait+time.Second-1)/time.Second))
	}
	in.lookup(Lookup{Table: "greylist", Key: network.String() + " " + f.Sender + " " + f.Recipient, Found: res.Pass, Value: state})
	return Outcome{}, nil
}
