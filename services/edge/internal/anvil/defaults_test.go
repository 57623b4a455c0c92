package anvil

import (
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	edgeparams "github.com/smtpgate/smtpgate/services/edge/params"
)

// TestRateUnit: a limit without a unit counts per anvil_rate_time_unit's
// catalogued default; a unit given is kept.
func TestRateUnit(t *testing.T) {
	def, ok := maincf.NewCatalogue(edgeparams.Defs()...).Def("anvil_rate_time_unit")
	if !ok {
		t.Fatal("anvil_rate_time_unit is not in the catalogue")
	}
	want, err := maincf.ParseDuration(def.Default)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ unit, want time.Duration }{
		{0, want},
		{-time.Second, want},
		{10 * time.Second, 10 * time.Second},
		{time.Hour, time.Hour},
	} {
		if got := RateUnit(c.unit); got != c.want {
			t.Errorf("RateUnit(%v) = %v, want %v", c.unit, got, c.want)
		}
	}
}
