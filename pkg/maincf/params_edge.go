package maincf

// edgeParams are the parameters smtpgate-edge reads.
func edgeParams() []Def {
	return []Def{
		{Name: "smtpd_banner", Default: "$myhostname ESMTP $mail_name", Owner: Edge, Listener: true},
		{Name: "smtpd_tls_cert_file", Default: "", Owner: Edge, Listener: true},
		{Name: "smtpd_tls_key_file", Default: "$smtpd_tls_cert_file", Owner: Edge, Listener: true},
		// none, may (STARTTLS offered) or encrypt (STARTTLS required).
		{Name: "smtpd_tls_security_level", Default: "", Owner: Edge, Listener: true, Check: CheckOneOf("", "none", "may", "encrypt")},
		// Implicit TLS from the first byte (port 465, "submissions").
		{Name: "smtpd_tls_wrappermode", Default: "no", Owner: Edge, Listener: true, Check: CheckBool},
		// Offer AUTH only after STARTTLS.
		{Name: "smtpd_tls_auth_only", Default: "no", Owner: Edge, Listener: true, Check: CheckBool},
		{Name: "smtpd_sasl_auth_enable", Default: "no", Owner: Edge, Listener: true, Check: CheckBool},
		{Name: "message_size_limit", Default: "10240000", Owner: Edge, Listener: true, Check: CheckInt},
		{Name: "smtpd_recipient_limit", Default: "1000", Owner: Edge, Listener: true, Check: CheckInt},
		{Name: "smtpd_timeout", Default: "300s", Owner: Edge, Listener: true, Check: CheckDuration},
		// Longest command line accepted (Postfix: line_length_limit).
		{Name: "line_length_limit", Default: "2048", Owner: Edge, Listener: true, Check: CheckInt},
		{Name: "smtpd_hard_error_limit", Default: "20", Owner: Edge, Listener: true, Check: CheckInt},
		{Name: "smtpd_helo_required", Default: "no", Owner: Edge, Listener: true, Check: CheckBool},
		{Name: "disable_vrfy_command", Default: "yes", Owner: Edge, Listener: true, Check: CheckBool},
		// Where accepted mail goes: maildir:PATH, smtp://host:port,
		// lmtp://host:port or lmtp+unix:///path.
		{Name: "smtpgate_next_hop", Default: "maildir:var/maildir", Owner: Edge, Listener: true},
		{Name: "smtpgate_next_hop_timeout", Default: "300s", Owner: Edge, Listener: true, Check: CheckDuration},
		// PROXY protocol (v1 and v2) from a load balancer before the
		// first SMTP byte: "" (off) or "haproxy", as Postfix.
		{Name: "smtpd_upstream_proxy_protocol", Default: "", Owner: Edge, Listener: true, Check: CheckOneOf("", "haproxy")},
		// How long to wait for the PROXY header.
		{Name: "smtpd_upstream_proxy_timeout", Default: "5s", Owner: Edge, Listener: true, Check: CheckDuration},
		// The load balancers whose PROXY headers are believed, a
		// mynetworks-style list of addresses and networks (no host names
		// or tables). Empty: nobody, so a listener with the protocol on
		// drops every connection. Not a Postfix parameter: Postfix
		// believes any peer of such a listener.
		{Name: "smtpgate_proxy_networks", Default: "", Owner: Edge, Listener: true},
		// The clients that may use XCLIENT, a mynetworks-style list as
		// above. Empty: nobody.
		{Name: "smtpd_authorized_xclient_hosts", Default: "", Owner: Edge, Listener: true},
	}
}
