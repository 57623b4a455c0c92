package importcf

import (
	"fmt"
	"strings"
)

// sasl judges where SASL passwords are checked. Postfix's default
// smtpd_sasl_type is cyrus: the Cyrus SASL library, which asks saslauthd,
// sasldb2 or an auxprop plugin as smtpd.conf says. smtpgate-auth cannot
// ask any of them, so every listener with AUTH on and Cyrus behind it
// cannot be honoured: its users are somewhere smtpgate does not look.
func (r *Report) sasl() {
	mainOn, _ := r.effective("smtpd_sasl_auth_enable")
	mainType, typeSetting := r.effective("smtpd_sasl_type")
	var where []string
	var explicit []*Setting
	check := func(name, on, typ string, typSet *Setting) {
		if !strings.EqualFold(on, "yes") || typ != "cyrus" {
			return
		}
		where = append(where, name)
		if typSet != nil {
			explicit = append(explicit, typSet)
		}
	}
	if r.MasterPath == "" {
		check("main.cf", mainOn, mainType, typeSetting)
	}
	for _, l := range r.listeners {
		on, typ, typSet := mainOn, mainType, typeSetting
		for _, o := range l.all {
			switch o.Name {
			case "smtpd_sasl_auth_enable":
				on = o.Value
			case "smtpd_sasl_type":
				typ, typSet = o.Value, o
			}
		}
		check("service "+l.entry.Service+" ("+l.entry.Pos.String()+")", on, typ, typSet)
	}
	if len(where) == 0 {
		return
	}
	instead := "smtpgate's own passwd-file (smtpgate_passwd_file)"
	if _, ok := catalogue().Def("smtpd_sasl_type"); ok {
		instead += ", or Dovecot (smtpd_sasl_type = dovecot)"
	}
	reason := fmt.Sprintf("AUTH on %s: Postfix checks passwords with Cyrus SASL (saslauthd, sasldb2 or auxprop, as smtpd.conf in cyrus_sasl_config_path says); "+
		"smtpgate-auth cannot ask Cyrus or saslauthd, so the users Cyrus knows cannot log in until they are in %s",
		strings.Join(where, ", "), instead)
	if len(explicit) == 0 {
		r.defaultSetting("smtpd_sasl_type", CannotHonour, reason)
	}
	for _, s := range explicit {
		s.Verdict, s.Reason = CannotHonour, reason
	}
	for _, s := range r.Settings {
		if s.Name == "smtpd_sasl_path" && s.Service == "" {
			if v, _ := r.effective("smtpd_sasl_type"); v == "cyrus" {
				s.Verdict = CannotHonour
				s.Reason = "with smtpd_sasl_type = cyrus it names Cyrus's application configuration (" + s.Value + ".conf), not a socket smtpgate could use"
			}
		}
	}
}
