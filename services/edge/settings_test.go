package edge

import "github.com/smtpgate/smtpgate/pkg/maincf"

// validate is check: Load with the settings dropped.
func validate(main *maincf.Config, services []maincf.Service) error {
	_, err := Load(main, services)
	return err
}
