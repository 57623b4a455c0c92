package mailname_test

import (
	"fmt"

	"github.com/smtpgate/smtpgate/pkg/mailname"
)

func Example() {
	fmt.Println(mailname.ValidHostname("mail.example.org"), mailname.ValidHostname("192.0.2.1"))
	fmt.Println(mailname.ValidMailhostLiteral("[IPv6:2001:db8::1]"), mailname.ValidMailhostLiteral("[2001:db8::1]"))
	fmt.Println(mailname.Printable("bad\r\nname", '?'), mailname.Neuter("<a@b>"))
	// Output:
	// true false
	// true false
	// bad??name ?a?b?
}
