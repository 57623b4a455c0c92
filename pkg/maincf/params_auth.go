package maincf

// authParams are the parameters smtpgate-auth reads.
func authParams() []Def {
	return []Def{
		// Where to serve the Dovecot auth protocol for an existing Postfix
		// (smtpd_sasl_type = dovecot): host:port and/or unix:/path; empty
		// for none.
		{Name: "smtpgate_dovecot_auth_listen", Default: "", Owner: Auth},
		// Users in Dovecot passwd-file format.
		{Name: "smtpgate_passwd_file", Default: "", Owner: Auth},
		// Mechanisms offered, in order, before the security options filter them.
		{Name: "smtpgate_sasl_mechanisms", Default: "PLAIN LOGIN", Owner: Auth, Listener: true},
		{Name: "smtpd_sasl_security_options", Default: "noanonymous, noplaintext", Owner: Auth, Listener: true},
		// Unlike Postfix, plaintext mechanisms are refused before TLS by default.
		{Name: "smtpd_sasl_tls_security_options", Default: "noanonymous", Owner: Auth, Listener: true},
	}
}
