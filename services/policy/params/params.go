// Package params is smtpgate-policy's parameter catalogue: the main.cf and
// master.cf -o parameters the service owns, with their defaults, value
// checks and whether a listener may override them. The service reads them
// in its settings.go only; every service's command joins the three
// catalogues (and maincf.Shared) so that each rejects a name nobody owns.
// It trusts nothing: the checks here are what `check` reports with
// file:line.
package params

import "github.com/smtpgate/smtpgate/pkg/maincf"

// Defs are the parameters smtpgate-policy reads: their defaults, checks and whether
// a master.cf -o override may set them.
func Defs() []maincf.Def {
	list := func(name, def string) maincf.Def {
		return maincf.Def{Name: name, Default: def, Owner: maincf.Policy, Listener: true}
	}
	return []maincf.Def{
		list("mydestination", "$myhostname, localhost.$mydomain, localhost"),
		list("mynetworks", "127.0.0.0/8 [::1]/128"),
		list("relay_domains", ""),
		list("virtual_mailbox_domains", ""),
		list("virtual_alias_domains", ""),
		{Name: "smtpd_delay_reject", Default: "yes", Owner: maincf.Policy, Listener: true, Check: maincf.CheckBool},
		list("smtpd_client_restrictions", ""),
		list("smtpd_helo_restrictions", ""),
		list("smtpd_sender_restrictions", ""),
		list("smtpd_relay_restrictions", "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"),
		list("smtpd_recipient_restrictions", ""),
		list("smtpd_data_restrictions", ""),
		list("smtpd_end_of_data_restrictions", ""),
		list("smtpd_etrn_restrictions", ""),
		list("smtpd_restriction_classes", ""),
		{Name: "soft_bounce", Default: "no", Owner: maincf.Policy | maincf.Edge, Listener: true, Check: maincf.CheckBool},
		{Name: "reject_code", Default: "554", Owner: maincf.Policy, Listener: true, Check: maincf.CheckReplyCode("5")},
		{Name: "defer_code", Default: "450", Owner: maincf.Policy, Listener: true, Check: maincf.CheckReplyCode("4")},
		{Name: "relay_domains_reject_code", Default: "554", Owner: maincf.Policy, Listener: true, Check: maincf.CheckReplyCode("45")},
		{Name: "access_map_reject_code", Default: "554", Owner: maincf.Policy, Listener: true, Check: maincf.CheckReplyCode("45")},
		{Name: "access_map_defer_code", Default: "450", Owner: maincf.Policy, Listener: true, Check: maincf.CheckReplyCode("45")},
		{Name: "invalid_hostname_reject_code", Default: "501", Owner: maincf.Policy, Listener: true, Check: maincf.CheckReplyCode("45")},
		{Name: "non_fqdn_reject_code", Default: "504", Owner: maincf.Policy, Listener: true, Check: maincf.CheckReplyCode("45")},
		{Name: "unknown_local_recipient_reject_code", Default: "550", Owner: maincf.Policy, Listener: true, Check: maincf.CheckReplyCode("45")},
		{Name: "unknown_virtual_mailbox_reject_code", Default: "550", Owner: maincf.Policy, Listener: true, Check: maincf.CheckReplyCode("45")},
		{Name: "unknown_virtual_alias_reject_code", Default: "550", Owner: maincf.Policy, Listener: true, Check: maincf.CheckReplyCode("45")},
		{Name: "unknown_relay_recipient_reject_code", Default: "550", Owner: maincf.Policy, Listener: true, Check: maincf.CheckReplyCode("45")},
		{Name: "show_user_unknown_table_name", Default: "yes", Owner: maincf.Policy, Listener: true, Check: maincf.CheckBool},
		{Name: "smtpd_reject_unlisted_sender", Default: "no", Owner: maincf.Policy, Listener: true, Check: maincf.CheckBool},
		{Name: "smtpd_reject_unlisted_recipient", Default: "yes", Owner: maincf.Policy, Listener: true, Check: maincf.CheckBool},
		// Postfix's access-table knobs.
		{Name: "smtpd_null_access_lookup_key", Default: "<>", Owner: maincf.Policy, Listener: true},
		list("parent_domain_matches_subdomains", "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,qmqpd_authorized_clients,relay_domains,smtpd_access_maps"),
		{Name: "recipient_delimiter", Default: "", Owner: maincf.Policy, Listener: true},
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
		{Name: "smtpgate_auth_users_cache_time", Default: "0s", Owner: maincf.Policy, Check: maincf.CheckDuration},

		// DNS: one resolver per smtpgate-policy process, for the DNSBL,
		// client name, unknown domain and SPF checks.
		// smtpgate_dns_servers empty: the nameservers of /etc/resolv.conf.
		{Name: "smtpgate_dns_servers", Default: "", Owner: maincf.Policy},
		// smtpd_peername_lookup: resolve the client's names at the
		// session's first check (restriction.Engine.ResolveClient).
		{Name: "smtpd_peername_lookup", Default: "yes", Owner: maincf.Policy, Listener: true, Check: maincf.CheckBool},
		{Name: "smtpgate_dns_timeout", Default: "2s", Owner: maincf.Policy, Check: maincf.CheckDuration},
		// smtpgate_dns_redis is a redis:// URL (it may hold a password);
		// empty: an in-process cache only.
		{Name: "smtpgate_dns_redis", Default: "", Owner: maincf.Policy, Secret: true},
		{Name: "maps_rbl_reject_code", Default: "554", Owner: maincf.Policy, Listener: true, Check: maincf.CheckReplyCode("45")},
		list("rbl_reply_maps", ""),
		{Name: "unknown_client_reject_code", Default: "450", Owner: maincf.Policy, Listener: true, Check: maincf.CheckReplyCode("45")},
		{Name: "unknown_hostname_reject_code", Default: "450", Owner: maincf.Policy, Listener: true, Check: maincf.CheckReplyCode("45")},
		{Name: "unknown_address_reject_code", Default: "450", Owner: maincf.Policy, Listener: true, Check: maincf.CheckReplyCode("45")},
		{Name: "reject_tempfail_action", Default: "defer_if_permit", Owner: maincf.Policy, Listener: true, Check: maincf.CheckOneOf("defer", "defer_if_permit")},
		{Name: "unknown_address_tempfail_action", Default: "$reject_tempfail_action", Owner: maincf.Policy, Listener: true, Check: maincf.CheckOneOf("defer", "defer_if_permit")},
		{Name: "unknown_helo_hostname_tempfail_action", Default: "$reject_tempfail_action", Owner: maincf.Policy, Listener: true, Check: maincf.CheckOneOf("defer", "defer_if_permit")},
		// check_spf, smtpgate's own restriction: what each SPF result does.
		// check_policy_service (Postfix's defaults).
		{Name: "smtpd_policy_service_timeout", Default: "100s", Owner: maincf.Policy, Listener: true, Check: maincf.CheckDuration},
		{Name: "smtpd_policy_service_max_idle", Default: "300s", Owner: maincf.Policy, Listener: true, Check: maincf.CheckDuration},
		{Name: "smtpd_policy_service_max_ttl", Default: "1000s", Owner: maincf.Policy, Listener: true, Check: maincf.CheckDuration},
		{Name: "smtpd_policy_service_try_limit", Default: "2", Owner: maincf.Policy, Listener: true, Check: maincf.CheckInt},
		{Name: "smtpd_policy_service_retry_delay", Default: "1s", Owner: maincf.Policy, Listener: true, Check: maincf.CheckDuration},
		{Name: "smtpd_policy_service_default_action", Default: "451 4.3.5 Server configuration problem", Owner: maincf.Policy, Listener: true},
		{Name: "smtpd_policy_service_policy_context", Default: "", Owner: maincf.Policy, Listener: true},
		// check_rate_limit definitions and where the counts are kept.
		list("smtpgate_rate_limits", ""),
		{Name: "smtpgate_rate_limit_redis", Default: "", Owner: maincf.Policy, Secret: true},
		// check_greylist (postgrey's defaults) and where its state is kept.
		{Name: "smtpgate_greylist_delay", Default: "300s", Owner: maincf.Policy, Check: maincf.CheckDuration},
		{Name: "smtpgate_greylist_retry_window", Default: "2d", Owner: maincf.Policy, Check: maincf.CheckDuration},
		{Name: "smtpgate_greylist_max_age", Default: "35d", Owner: maincf.Policy, Check: maincf.CheckDuration},
		{Name: "smtpgate_greylist_auto_allowlist_clients", Default: "5", Owner: maincf.Policy, Check: maincf.CheckInt},
		{Name: "smtpgate_greylist_redis", Default: "", Owner: maincf.Policy, Secret: true},
		// reject_dnsbl_score: postscreen_dnsbl_sites-style weighted lists.
		list("smtpgate_dnsbl_sites", ""),
		{Name: "smtpgate_dnsbl_threshold", Default: "1", Owner: maincf.Policy, Listener: true, Check: maincf.CheckInt},
		{Name: "smtpgate_spf_fail_action", Default: "reject", Owner: maincf.Policy, Listener: true, Check: maincf.CheckOneOf("reject", "defer", "warn", "ignore")},
		{Name: "smtpgate_spf_softfail_action", Default: "warn", Owner: maincf.Policy, Listener: true, Check: maincf.CheckOneOf("reject", "defer", "warn", "ignore")},
		{Name: "smtpgate_spf_temperror_action", Default: "defer", Owner: maincf.Policy, Listener: true, Check: maincf.CheckOneOf("reject", "defer", "warn", "ignore")},
		{Name: "smtpgate_spf_permerror_action", Default: "ignore", Owner: maincf.Policy, Listener: true, Check: maincf.CheckOneOf("reject", "defer", "warn", "ignore")},
		// smtpgate_spf_helo_identity: when check_spf evaluates the HELO
		// identity (RFC 7208 §2.3): only as the null sender's MAIL FROM
		// identity, or first for every sender.
		{Name: "smtpgate_spf_helo_identity", Default: "null_sender", Owner: maincf.Policy, Listener: true, Check: maincf.CheckOneOf("null_sender", "always")},
		// Where smtpgate-policy serves Postfix's policy delegation protocol
		// (check_policy_service); empty: not served.
		{Name: "smtpgate_policy_delegation_listen", Default: "", Owner: maincf.Policy},
	}
}
