package restriction_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/services/policy/internal/restriction"
	policyparams "github.com/smtpgate/smtpgate/services/policy/params"
)

func Example() {
	file, err := maincf.Parse("main.cf", strings.NewReader(`
mydestination = example.org
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
`))
	if err != nil {
		panic(err)
	}
	engine, err := restriction.Compile(maincf.New(maincf.NewCatalogue(append(maincf.Shared(), policyparams.Defs()...)...), file, "/etc/smtpgate"))
	if err != nil {
		panic(err)
	}
	for _, rcpt := range []string{"john@example.org", "lisa@example.com", "lisa%example.com@example.org"} {
		v, err := engine.Check(context.Background(), &restriction.Facts{
			Stage:         restriction.Rcpt,
			ClientAddr:    netip.MustParseAddr("203.0.113.5"),
			InTransaction: true,
			Sender:        "someone@example.net",
			Recipient:     rcpt,
		})
		if err != nil {
			panic(err)
		}
		if v.Action == restriction.ActionPermit {
			fmt.Println(rcpt, v.Action)
			continue
		}
		fmt.Println(rcpt, v.Action, v.Reply)
	}
	// Output:
	// john@example.org PERMIT
	// lisa@example.com REJECT 554 5.7.1 <lisa@example.com>: Relay access denied
	// lisa%example.com@example.org REJECT 554 5.7.1 <lisa%example.com@example.org>: Relay access denied
}
