package edge

import (
	"slices"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	authparams "github.com/smtpgate/smtpgate/services/auth/params"
	edgeparams "github.com/smtpgate/smtpgate/services/edge/params"
	policyparams "github.com/smtpgate/smtpgate/services/policy/params"
)

// Catalogue is every parameter smtpgate knows, whichever service owns it
// (each service's params package and maincf.Shared), so that the
// configuration is read the same way by every service and a name nobody
// owns is an error with its file:line.
func Catalogue() *maincf.Catalogue {
	return maincf.NewCatalogue(slices.Concat(maincf.Shared(), edgeparams.Defs(), policyparams.Defs(), authparams.Defs())...)
}
