package importcf

import (
	"fmt"
	"slices"
	"strings"
)

// sasl judges where SASL passwords are checked. Postfix's default
// smtpd_sasl_type is cyrus: the Cyrus SASL library, which asks saslauthd,
// sasldb2 or an auxprop plugin as smtpd.conf says. smtpgate-auth cannot
// ask any of them, so every listener with AUTH on and Cyrus behind it
// cannot be honoured: its users are somewhere smtpgate does not look.
func (r *Report) sasl() {
	mainOn, onSetting := r.effective("smtpd_sasl_auth_enable")
	mainType, typeSetting := r.effective("smtpd_sasl_type")
	var where []string
	var explicit []*Setting
	// enablers are the smtpd_sasl_auth_enable = yes settings, and
	// whether some listener they enable is not behind Cyrus.
	enablers := map[*Setting]bool{}
	check := func(name, on string, onSet *Setting, typ string, typSet *Setting) {
		if !strings.EqualFold(on, "yes") {
			return
		}
		if typ != "cyrus" {
			enablers[onSet] = true
			return
		}
		if _, ok := enablers[onSet]; !ok {
			enablers[onSet] = false
		}
		where = append(where, name)
		if typSet != nil && !slices.Contains(explicit, typSet) {
			explicit = append(explicit, typSet)
		}
	}
	if r.MasterPath == "" {
		check("main.cf", mainOn, onSetting, mainType, typeSetting)
	}
	for _, l := range r.listeners {
		on, onSet, typ, typSet := mainOn, onSetting, mainType, typeSetting
		for _, o := range l.all {
			switch o.Name {
			case "smtpd_sasl_auth_enable":
				on, onSet = o.Value, o
			case "smtpd_sasl_type":
				typ, typSet = o.Value, o
			}
		}
		check("service "+l.entry.Service+" ("+l.entry.Pos.String()+")", on, onSet, typ, typSet)
	}
	if len(where) == 0 {
		return
	}
	// AUTH is not written where only Cyrus would answer it: it would
	// check a passwd-file that does not hold Cyrus's users.
	for s, other := range enablers {
		if s != nil && !other && s.writes() {
			s.Verdict = CannotHonour
			s.Reason = "not written: only Cyrus SASL checks these passwords (see smtpd_sasl_type), and smtpgate cannot ask it; " +
				"AUTH stays off until the users are where smtpgate-auth looks"
		}
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
