package maincf

// policyParams are the parameters smtpgate-policy reads.
func policyParams() []Def {
	list := func(name, def string) Def {
		return Def{Name: name, Default: def, Owner: Policy, Listener: true}
	}
	return []Def{
		list("mydestination", "$myhostname, localhost.$mydomain, localhost"),
		list("mynetworks", "127.0.0.0/8 [::1]/128"),
		list("relay_domains", ""),
		list("virtual_mailbox_domains", ""),
		list("virtual_alias_domains", ""),
		{Name: "smtpd_delay_reject", Default: "yes", Owner: Policy, Listener: true, Check: CheckBool},
		list("smtpd_client_restrictions", ""),
		list("smtpd_helo_restrictions", ""),
		list("smtpd_sender_restrictions", ""),
		list("smtpd_relay_restrictions", "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"),
		list("smtpd_recipient_restrictions", ""),
		list("smtpd_data_restrictions", ""),
		list("smtpd_end_of_data_restrictions", ""),
		list("smtpd_etrn_restrictions", ""),
		list("smtpd_restriction_classes", ""),
		{Name: "soft_bounce", Default: "no", Owner: Policy, Listener: true, Check: CheckBool},
		{Name: "reject_code", Default: "554", Owner: Policy, Listener: true, Check: CheckReplyCode("5")},
		{Name: "defer_code", Default: "450", Owner: Policy, Listener: true, Check: CheckReplyCode("4")},
		{Name: "relay_domains_reject_code", Default: "554", Owner: Policy, Listener: true, Check: CheckReplyCode("45")},
	}
}
