package importcf

import (
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name    string
		verdict Verdict
		reason  string // a part of the reason
	}{
		// In smtpgate's catalogue, whichever service reads it.
		{"myhostname", Taken, "edge+policy+auth"},
		{"mynetworks", Taken, "smtpgate-policy"},
		{"smtpd_relay_restrictions", Taken, "smtpgate-policy"},
		{"smtpd_helo_required", Taken, "smtpgate-edge"},
		{"smtpd_tls_cert_file", Taken, "smtpgate-edge"},
		{"smtpd_sasl_security_options", Taken, "smtpgate-auth"},
		// Taken by name; the value cyrus is judged by the report (sasl.go).
		{"smtpd_sasl_type", Taken, "smtpgate-auth"},
		{"smtpd_sasl_path", Taken, "smtpgate-auth"},
		{"local_recipient_maps", Taken, "smtpgate-policy"},
		{"smtpd_sender_login_maps", Taken, "smtpgate-policy"},
		// Postfix parameters that change smtpd's behaviour.
		{"postscreen_dnsbl_sites", CannotHonour, "postscreen"},
		{"smtpd_milters", CannotHonour, "milter"},
		{"milter_default_action", CannotHonour, "milter"},
		{"header_checks", CannotHonour, "content inspection"},
		{"body_checks", CannotHonour, "content inspection"},
		{"mime_header_checks", CannotHonour, "content inspection"},
		{"content_filter", CannotHonour, "smtpgate_next_hop"},
		{"smtpd_tls_mandatory_protocols", CannotHonour, "smtpd_tls_wrappermode"},
		{"smtpd_tls_CAfile", CannotHonour, "TLS"},
		{"tls_high_cipherlist", CannotHonour, "crypto/tls"},
		{"smtpd_client_connection_rate_limit", Taken, "smtpgate-edge"},
		{"smtpd_client_message_rate_limit", CannotHonour, "not implement"},
		{"smtpd_proxy_filter", CannotHonour, "not implement"},
		{"maps_rbl_reject_code", Taken, "smtpgate-policy"},
		{"unknown_client_reject_code", Taken, "smtpgate-policy"},
		{"unverified_recipient_reject_code", CannotHonour, "reply setting"},
		{"strict_rfc821_envelopes", CannotHonour, "not implement"},
		{"permit_mx_backup_networks", CannotHonour, "not implement"},
		// Postfix parameters that do not matter to a front door.
		{"smtpd_tls_session_cache_database", Ignored, "session cache"},
		{"non_smtpd_milters", Ignored, "not received over SMTP"},
		{"queue_directory", Ignored, "queue"},
		{"maximal_queue_lifetime", Ignored, "queue"},
		{"qmgr_message_active_limit", Ignored, "queue"},
		{"default_destination_concurrency_limit", Ignored, "queue"},
		{"alias_maps", Ignored, "local delivery"},
		{"home_mailbox", Ignored, "local delivery"},
		{"mailbox_size_limit", Ignored, "local delivery"},
		{"local_transport", Ignored, "local delivery"},
		{"virtual_mailbox_base", Ignored, "virtual(8)"},
		{"transport_maps", Ignored, "smtpgate_next_hop"},
		{"relayhost", Ignored, "smtpgate_next_hop"},
		{"default_transport", Ignored, "smtpgate_next_hop"},
		{"smtp_tls_security_level", Ignored, "client"},
		{"lmtp_host_lookup", Ignored, "client"},
		{"bounce_queue_lifetime", Ignored, "bounce"},
		{"notify_classes", Ignored, "bounce"},
		{"2bounce_notice_recipient", Ignored, "bounce"},
		{"myorigin", Ignored, "rewriting"},
		{"sender_canonical_maps", Ignored, "rewriting"},
		{"always_bcc", Ignored, "rewriting"},
		{"syslog_name", Taken, "smtpgate-edge"},
		{"debug_peer_level", Ignored, "logging"},
		{"compatibility_level", Ignored, "installation"},
		{"inet_interfaces", Ignored, "master.cf"},
		// Not Postfix parameters at all.
		{"smtpd_helo_restriction", Unknown, "did you mean smtpd_helo_restrictions?"},
		{"mynetwork", Unknown, "did you mean mynetworks?"},
		{"queue_dirctory", Unknown, "did you mean queue_directory?"},
		{"frobnicate_everything", Unknown, "not a Postfix 3.7 parameter"},
	} {
		v, reason := Classify(tc.name)
		if v != tc.verdict || !strings.Contains(reason, tc.reason) {
			t.Errorf("Classify(%q) = %v, %q; want %v, containing %q", tc.name, v, reason, tc.verdict, tc.reason)
		}
	}
}

func TestClassifyEveryPostfixParam(t *testing.T) {
	// Every Postfix parameter gets a verdict other than unknown, and
	// every smtpd_ one that smtpgate lacks is at least not ignored
	// silently unless listed as harmless.
	n := 0
	for name := range postfixParams() {
		n++
		v, reason := Classify(name)
		if v == Unknown || reason == "" {
			t.Errorf("Classify(%q) = %v, %q", name, v, reason)
		}
		if strings.HasPrefix(name, "smtpd_") && v == Ignored && !strings.Contains(reason, "session cache") {
			t.Errorf("Classify(%q) = ignored (%s); smtpd settings change smtpd's behaviour", name, reason)
		}
	}
	if n < 800 {
		t.Errorf("only %d Postfix parameter names embedded", n)
	}
}
