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
		{Name: "soft_bounce", Default: "no", Owner: Policy | Edge, Listener: true, Check: CheckBool},
		{Name: "reject_code", Default: "554", Owner: Policy, Listener: true, Check: CheckReplyCode("5")},
		{Name: "defer_code", Default: "450", Owner: Policy, Listener: true, Check: CheckReplyCode("4")},
		{Name: "relay_domains_reject_code", Default: "554", Owner: Policy, Listener: true, Check: CheckReplyCode("45")},
		{Name: "access_map_reject_code", Default: "554", Owner: Policy, Listener: true, Check: CheckReplyCode("45")},
		{Name: "access_map_defer_code", Default: "450", Owner: Policy, Listener: true, Check: CheckReplyCode("45")},
		{Name: "invalid_hostname_reject_code", Default: "501", Owner: Policy, Listener: true, Check: CheckReplyCode("45")},
		{Name: "non_fqdn_reject_code", Default: "504", Owner: Policy, Listener: true, Check: CheckReplyCode("45")},
		{Name: "unknown_local_recipient_reject_code", Default: "550", Owner: Policy, Listener: true, Check: CheckReplyCode("45")},
		{Name: "unknown_virtual_mailbox_reject_code", Default: "550", Owner: Policy, Listener: true, Check: CheckReplyCode("45")},
		{Name: "unknown_virtual_alias_reject_code", Default: "550", Owner: Policy, Listener: true, Check: CheckReplyCode("45")},
		{Name: "unknown_relay_recipient_reject_code", Default: "550", Owner: Policy, Listener: true, Check: CheckReplyCode("45")},
		{Name: "show_user_unknown_table_name", Default: "yes", Owner: Policy, Listener: true, Check: CheckBool},
		{Name: "smtpd_reject_unlisted_sender", Default: "no", Owner: Policy, Listener: true, Check: CheckBool},
		{Name: "smtpd_reject_unlisted_recipient", Default: "yes", Owner: Policy, Listener: true, Check: CheckBool},
		// Postfix's access-table knobs.
		{Name: "smtpd_null_access_lookup_key", Default: "<>", Owner: Policy, Listener: true},
		list("parent_domain_matches_subdomains", "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,qmqpd_authorized_clients,relay_domains,smtpd_access_maps"),
		{Name: "recipient_delimiter", Default: "", Owner: Policy, Listener: true},
		// Valid recipients (reject_unlisted_recipient and
		// smtpd_reject_unlisted_recipient). Postfix's default for
		// local_recipient_maps is the UNIX password file and the alias
		// maps; smtpgate has neither, so the default is empty: every
		// local recipient is valid unless a table is named.
		list("local_recipient_maps", ""),
		list("virtual_alias_maps", ""),
		list("virtual_mailbox_maps", ""),
		list("relay_recipient_maps", ""),
		list("smtpd_sender_login_maps", ""),
		// How long smtpgate-policy remembers that smtpgate-auth said a
		// user exists (auth:users tables); unknown users and failed calls
		// are never remembered. 0: always ask.
		{Name: "smtpgate_auth_users_cache_time", Default: "0s", Owner: Policy, Check: CheckDuration},

		// DNS: one resolver per smtpgate-policy process, for the DNSBL,
		// client name, unknown domain and SPF checks.
		// smtpgate_dns_servers empty: the nameservers of /etc/resolv.conf.
		{Name: "smtpgate_dns_servers", Default: "", Owner: Policy},
		{Name: "smtpgate_dns_timeout", Default: "2s", Owner: Policy, Check: CheckDuration},
		// smtpgate_dns_redis is a redis:// URL (it may hold a password);
		// empty: an in-process cache only.
		{Name: "smtpgate_dns_redis", Default: "", Owner: Policy, Secret: true},
		{Name: "maps_rbl_reject_code", Default: "554", Owner: Policy, Listener: true, Check: CheckReplyCode("45")},
		list("rbl_reply_maps", ""),
		{Name: "unknown_client_reject_code", Default: "450", Owner: Policy, Listener: true, Check: CheckReplyCode("45")},
		{Name: "unknown_hostname_reject_code", Default: "450", Owner: Policy, Listener: true, Check: CheckReplyCode("45")},
		{Name: "unknown_address_reject_code", Default: "450", Owner: Policy, Listener: true, Check: CheckReplyCode("45")},
		{Name: "reject_tempfail_action", Default: "defer_if_permit", Owner: Policy, Listener: true, Check: CheckOneOf("defer", "defer_if_permit")},
		{Name: "unknown_address_tempfail_action", Default: "$reject_tempfail_action", Owner: Policy, Listener: true, Check: CheckOneOf("defer", "defer_if_permit")},
		{Name: "unknown_helo_hostname_tempfail_action", Default: "$reject_tempfail_action", Owner: Policy, Listener: true, Check: CheckOneOf("defer", "defer_if_permit")},
		// check_spf, smtpgate's own restriction: what each SPF result does.
		// check_policy_service (Postfix's defaults).
		{Name: "smtpd_policy_service_timeout", Default: "100s", Owner: Policy, Listener: true, Check: CheckDuration},
		{Name: "smtpd_policy_service_max_idle", Default: "300s", Owner: Policy, Listener: true, Check: CheckDuration},
		{Name: "smtpd_policy_service_max_ttl", Default: "1000s", Owner: Policy, Listener: true, Check: CheckDuration},
		{Name: "smtpd_policy_service_try_limit", Default: "2", Owner: Policy, Listener: true, Check: CheckInt},
		{Name: "smtpd_policy_service_retry_delay", Default: "1s", Owner: Policy, Listener: true, Check: CheckDuration},
		{Name: "smtpd_policy_service_default_action", Default: "451 4.3.5 Server configuration problem", Owner: Policy, Listener: true},
		{Name: "smtpd_policy_service_policy_context", Default: "", Owner: Policy, Listener: true},
		// check_rate_limit definitions and where the counts are kept.
		list("smtpgate_rate_limits", ""),
		{Name: "smtpgate_rate_limit_redis", Default: "", Owner: Policy, Secret: true},
		// check_greylist (postgrey's defaults) and where its state is kept.
		{Name: "smtpgate_greylist_delay", Default: "300s", Owner: Policy, Check: CheckDuration},
		{Name: "smtpgate_greylist_retry_window", Default: "2d", Owner: Policy, Check: CheckDuration},
		{Name: "smtpgate_greylist_max_age", Default: "35d", Owner: Policy, Check: CheckDuration},
		{Name: "smtpgate_greylist_auto_allowlist_clients", Default: "5", Owner: Policy, Check: CheckInt},
		{Name: "smtpgate_greylist_redis", Default: "", Owner: Policy, Secret: true},
		// reject_dnsbl_score: postscreen_dnsbl_sites-style weighted lists.
		list("smtpgate_dnsbl_sites", ""),
		{Name: "smtpgate_dnsbl_threshold", Default: "1", Owner: Policy, Listener: true, Check: CheckInt},
		{Name: "smtpgate_spf_fail_action", Default: "reject", Owner: Policy, Listener: true, Check: CheckOneOf("reject", "defer", "warn", "ignore")},
		{Name: "smtpgate_spf_softfail_action", Default: "warn", Owner: Policy, Listener: true, Check: CheckOneOf("reject", "defer", "warn", "ignore")},
		{Name: "smtpgate_spf_temperror_action", Default: "defer", Owner: Policy, Listener: true, Check: CheckOneOf("reject", "defer", "warn", "ignore")},
		{Name: "smtpgate_spf_permerror_action", Default: "ignore", Owner: Policy, Listener: true, Check: CheckOneOf("reject", "defer", "warn", "ignore")},
	}
}
